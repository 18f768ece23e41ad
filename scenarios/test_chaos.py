"""The chaos drills as pytest scenarios: one test per experiment in `chaos/`.

Each test runs the experiment through the same runner as `cihub run chaos`, against the
session's lab, and passes when the experiment met its expectation: the steady state held under
a verified fault, or, for a negative twin (`*.twin.*`), the steady state failed as it must. After
each one the lab carries no toxic and no paused or stopped container.

Run with `tox -e chaos`, or `pytest scenarios/test_chaos.py` (Docker needed).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.chaos import lab_faults, lab_vars, load_experiment
from harness.drills import RunSettings, run_drill
from harness.drills.chaos import JOURNAL, ChaosDrill
from harness.evidence import IdentityPin, TrustPins, pack_bundle, verify_bundle
from lab import Lab

EXPERIMENTS = sorted(
    p for p in (Path(__file__).parent / "chaos").iterdir() if p.suffix in (".json", ".yaml")
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("experiment_file", EXPERIMENTS, ids=lambda p: p.stem)
def test_chaos(experiment_file: Path, lab: Lab, drill_settings: RunSettings) -> None:
    experiment = load_experiment(experiment_file)
    configuration = lab_vars(lab.endpoints)
    drill = ChaosDrill(experiment, configuration)
    run = run_drill(drill, drill_settings)
    assert run.passed, "\n".join(run.lines())
    assert (run.bundle / JOURNAL).is_file()
    outcome = drill.outcome
    assert outcome is not None
    assert outcome.hypothesis_before == "met" and outcome.fault_verified and outcome.method_ran
    assert outcome.rollbacks_failed == 0 and not outcome.left_behind
    if experiment.expect == "steady-state-fails":
        # The negative twin shows the drill CAN fail: its steady state broke under the fault.
        assert outcome.hypothesis_after == "not-met"
        assert run.record["chaos"]["hypothesis_after"] == "not-met"
    else:
        assert outcome.hypothesis_after == "met"
    assert lab_faults(configuration) == ()

    # Offline, against the pinned trust root: both bundles verify; a twin's passes the chaos
    # check only as the deviation its signed outcome and its journal's experiment expect.
    assert lab.endpoints.trust_config is not None
    pins = TrustPins(
        trust_config=lab.endpoints.trust_config,
        identity=IdentityPin(identity=lab.config.identity, issuer=lab.config.issuer),
    )
    report = verify_bundle(pack_bundle(run.bundle), pins=pins)
    failed = {c.name: c.detail for c in report.checks if not c.passed}
    assert report.passed, failed
    chaos = report.check("chaos")
    if experiment.expect == "steady-state-fails":
        assert "negative twin" in chaos.detail, chaos
    else:
        assert "steady state held" in chaos.detail, chaos
