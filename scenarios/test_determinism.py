"""The determinism drill as pytest scenarios: one test per scenario file in `determinism/`.

Each test builds its subject twice (A: control, B: every variation) in builder containers,
compares the artifacts and searches the culprits, writing `determinism/` into the test's
evidence bundle; it passes when the drill finds what the scenario's `expect` says.

Run with `tox -e determinism`, or `pytest scenarios/test_determinism.py` (Docker needed; the
builder images are built on first use). `-k tarball` picks one scenario.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from harness.determinism import load_scenario, result_lines, run_determinism
from harness.evidence import EvidenceBundle

_logger = logging.getLogger(__name__)

SCENARIO_FILES = sorted((Path(__file__).parent / "determinism").glob("*.yaml"))

pytestmark = pytest.mark.integration


@pytest.mark.evidence(kind="dual-build", required=["determinism/"])
@pytest.mark.parametrize("scenario_file", SCENARIO_FILES, ids=lambda p: p.stem)
def test_determinism(scenario_file: Path, evidence: EvidenceBundle) -> None:
    scenario = load_scenario(scenario_file)
    result = run_determinism(scenario, evidence, progress=_logger.info)
    for line in result_lines(result):
        _logger.info("%s", line)
    problems = result.expectation_problems()
    assert not problems, f"{scenario.name}: " + "; ".join(problems)
