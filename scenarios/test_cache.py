"""The cache-poisoning drill as pytest scenarios: `dr/cache-*.yaml`, through the one runner.

A real pip wheel cache (pip wheel of `subjects/cache-sample`, offline) is recorded by the cache
sentinel, signed keylessly through the session's lab; one wheel is swapped; the install is gated
by the sentinel. The poisoned scenario passes only when the swap was caught and nothing was
installed; its negative twin (no sentinel) must fail with the poison installed; the genuine
control must install the genuine wheel.

Run with `tox -e cache`, or `pytest scenarios/test_cache.py` (Docker needed).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.dr.scenario import load_scenario
from harness.drills import RunSettings, run_drill
from harness.drills.dr import REPORT, DrDrill
from harness.evidence import IdentityPin, TrustPins, verify_bundle
from lab import Lab

SCENARIO_FILES = sorted((Path(__file__).parent / "dr").glob("cache-*.yaml"))
OUTCOMES = {
    "cache-poisoning": ("caught", None, "poisoned"),
    "cache-poisoning-unguarded": ("poison-installed", "poisoned", "unverified"),
    "cache-genuine": ("intact-installed", "genuine", "intact"),
}
"""Per scenario: the finding, what got installed, and the record's cache verdict."""

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("scenario_file", SCENARIO_FILES, ids=lambda p: p.stem)
def test_cache(scenario_file: Path, lab: Lab, drill_settings: RunSettings) -> None:
    scenario = load_scenario(scenario_file)
    run = run_drill(DrDrill(scenario, lab), drill_settings)
    observed, origin, verdict = OUTCOMES[scenario_file.stem]
    assert run.finding is not None and run.finding.observed == observed, run.lines()
    report = json.loads((run.bundle / REPORT).read_text())
    assert report["install"]["origin"] == origin
    assert run.record["cache"]["verdict"] == verdict
    if scenario_file.stem == "cache-poisoning-unguarded":
        assert not run.passed, "the negative twin must fail"
        return
    assert run.passed, "\n".join(run.lines())
    if scenario.poison:
        # The swapped wheel is named, and it never reached the install.
        assert report["install"]["ran"] is False
        assert run.record["cache"]["changed"] == [report["poisoned"]]
        assert run.record["cache"]["signature_verified"] is True
    # The bundle verifies, its cache manifest signature included, against the pinned root.
    pins = TrustPins(
        trust_config=lab.endpoints.trust_config,
        identity=IdentityPin(identity=lab.config.identity, issuer=lab.config.issuer),
    )
    verified = verify_bundle(run.bundle, pins=pins)
    assert verified.passed, [c for c in verified.checks if not c.passed]
    assert verified.check("cache-signature").status == "ok"
