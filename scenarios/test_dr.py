"""The DR drills as pytest scenarios: one test per scenario file in `dr/`.

Each runs through the same runner as `cihub run dr`. `registry-restore*` run against the
session's lab (its registry is put back after the drill, twin included); `log-rollback*` run on a
lab of their own on a private trust domain, since they restore stale logs. A negative twin must
fail, with the finding named here.

Run with `tox -e dr`, or `pytest scenarios/test_dr.py` (Docker needed).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.dr.scenario import load_scenario
from harness.drills import RunSettings, run_drill
from harness.drills.dr import REPORT, DrDrill
from harness.evidence import IdentityPin, TrustPins, verify_bundle
from lab import Lab, LabConfig

SCENARIO_FILES = sorted(
    p for p in (Path(__file__).parent / "dr").glob("*.yaml") if not p.stem.startswith("cache-")
)
"""The cache-poisoning scenarios (`cache-*.yaml`) run in `test_cache.py`."""
TWINS = {
    "registry-restore-skipped": "digests-missing",
    "log-rollback-unwatched": "rollback-undetected",
    "log-key-rotation-careless": "old-entries-unverifiable",
}
"""Negative twins and the finding that makes each fail."""

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def private_lab(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[Lab]:
    """A lab on a trust domain of its own: the log drills roll its logs back."""
    folder = tmp_path_factory.mktemp("dr-private")
    config = LabConfig(
        evidence_dir=folder / "evidence",
        trust_domain=folder / "trust-domain",
        images=pytestconfig.getoption("lab_images"),
    )
    with Lab(config) as lab:
        yield lab


@pytest.mark.parametrize("scenario_file", SCENARIO_FILES, ids=lambda p: p.stem)
def test_dr(
    scenario_file: Path, request: pytest.FixtureRequest, drill_settings: RunSettings
) -> None:
    scenario = load_scenario(scenario_file)
    lab: Lab = request.getfixturevalue(
        "lab" if scenario.drill == "registry-restore" else "private_lab"
    )
    drill = DrDrill(scenario, lab)
    run = run_drill(drill, drill_settings)
    record = run.record["dr"]
    report = json.loads((run.bundle / REPORT).read_text())
    assert record["drill"] == scenario.drill
    assert record["rto_s"] is not None and record["rto_s"] > 0
    if scenario_file.stem in TWINS:
        assert not run.passed, "a negative twin must fail:\n" + "\n".join(run.lines())
        assert run.finding is not None and run.finding.observed == TWINS[scenario_file.stem]
        assert report["passed"] is False
        return
    assert run.passed, "\n".join(run.lines())
    assert report["passed"] is True and all(c["ok"] for c in report["checks"])
    if scenario.drill == "registry-restore":
        assert record["rpo"]["items_lost"] == scenario.items_after_backup
        assert record["replay"]["missing"] == record["rpo"]["lost"], "only post-backup items lost"
        assert record["replay"]["checked"] >= scenario.items_before_backup
    elif scenario.drill == "log-key-rotation":
        entries = report["entries"]
        assert entries["before"]["log_id"] != entries["after"]["log_id"]
        assert report["old_key_valid_for"]["end"] == report["rotated_at"]
        assert record["consistent"] is True
    else:
        assert record["rollback_detected"] is True and record["consistent"] is True
        assert set(report["alarms"]) == {"v1", "v2"}
        assert all("ROLLBACK" in text for text in report["alarms"].values())
    session_lab: Lab = request.getfixturevalue("lab")
    pins = TrustPins(
        trust_config=session_lab.endpoints.trust_config,
        identity=IdentityPin(
            identity=session_lab.config.identity, issuer=session_lab.config.issuer
        ),
    )
    verified = verify_bundle(run.bundle, pins=pins)
    assert verified.passed, [c for c in verified.checks if not c.passed]
