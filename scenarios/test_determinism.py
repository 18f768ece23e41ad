"""The determinism drill as pytest scenarios: one test per scenario file in `determinism/`.

Each test runs the drill through the same runner as `cihub run determinism`: it builds the
subject twice (A: control, B: every variation) in builder containers, compares the artifacts,
searches the culprits, signs the evidence keylessly through the lab and appends the same
pipeline_run record. It passes when the drill finds what the scenario's `expect` says.

Run with `tox -e determinism`, or `pytest scenarios/test_determinism.py` (Docker needed; the
builder images are built on first use). `-k tarball` picks one scenario.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.determinism import load_scenario
from harness.drills import DeterminismDrill, RunSettings, run_drill

SCENARIO_FILES = sorted((Path(__file__).parent / "determinism").glob("*.yaml"))

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("scenario_file", SCENARIO_FILES, ids=lambda p: p.stem)
def test_determinism(scenario_file: Path, drill_settings: RunSettings) -> None:
    run = run_drill(DeterminismDrill(load_scenario(scenario_file)), drill_settings)
    assert run.passed, "\n".join(run.lines())
