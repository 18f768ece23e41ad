"""The determinism drill as a `Drill`: dual builds, compare, culprits (`harness.determinism`).

The steps live in `harness.determinism.run_determinism`; this module only says what the drill
observed against what its scenario expects. A scenario without `expect` expects a reproducible
build.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import docker

from harness.determinism import (
    CHECK,
    DEFAULT_EXPECTATION,
    REQUIRED_EVIDENCE,
    SCENARIO_KIND,
    DeterminismResult,
    DeterminismScenario,
    DrillOptions,
    describe_expectation,
    result_lines,
)
from harness.drills._session import DualBuildDrill
from harness.drills.runner import DrillFinding, Progress
from harness.evidence import EvidenceBundle
from harness.telemetry import ScenarioKind

_logger = logging.getLogger(__name__)


class DeterminismDrill(DualBuildDrill):
    """Build a subject twice with varied environments and judge it against `scenario.expect`.

    Args:
        scenario: what to build and what to expect.
        options: how to run it (image mode, workers, ...).
        client: the Docker client (default: from the environment).

    Example:
        >>> run = run_drill(DeterminismDrill(load_scenario(path)), settings)
        >>> run.result, run.finding.observed
        ('success', 'not-reproducible')
    """

    check = CHECK

    def __init__(
        self,
        scenario: DeterminismScenario,
        options: DrillOptions | None = None,
        client: docker.DockerClient | None = None,
    ) -> None:
        super().__init__(options, client)
        self.scenario = scenario
        self.result: DeterminismResult | None = None

    @property
    def kind(self) -> ScenarioKind:
        return SCENARIO_KIND

    @property
    def name(self) -> str:
        return self.scenario.name

    @property
    def subject(self) -> Path | None:
        return self.scenario.subject

    @property
    def required(self) -> Sequence[str]:
        return REQUIRED_EVIDENCE

    def run(self, bundle: EvidenceBundle, progress: Progress | None) -> DrillFinding:
        result = self._dual_build(self.scenario, bundle, progress)
        self.result = result
        return finding_of(result)


def finding_of(result: DeterminismResult) -> DrillFinding:
    """The drill's finding: the verdict observed against the scenario's expectation."""
    expect = result.scenario.expect or DEFAULT_EXPECTATION
    problems = tuple(result.expectation_problems())
    met = not problems
    # A failed build judges nothing unless the scenario expected exactly that.
    judged = result.verdict != "build-failed" or expect.verdict == "build-failed"
    expected = describe_expectation(expect)
    detail = result.detail + (" (as expected)" if met else f"; expected {expected}")
    return DrillFinding(
        observed=result.verdict,
        expected=expected,
        met=met,
        detail=detail,
        judged=judged,
        lines=tuple(result_lines(result)[1:]),
        record={"determinism": result.record_json()},
        problems=problems,
    )
