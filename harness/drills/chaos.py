"""The chaos drill as a `Drill`: one Chaos Toolkit experiment through the safe runner.

Steps, in the order they run:
1. `chaos`: the experiment (hypothesis, method, hypothesis, rollbacks always, the lab swept) by
   `harness.chaos.SafeRunner` against the lab given as configuration;
2. the journal written to `chaos/journal.json`, whatever happened (also on a signal).
The finding: `steady-state-held` (or, for a negative twin, `steady-state-failed`) when every
phase met the expectation; the pipeline_run record carries the `chaos` object (schema v1.4).
A signal is re-raised as `DrillCancelled` once the rollbacks were played and the journal kept.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.chaos.experiment import Experiment
from harness.chaos.runner import ChaosOutcome, SafeRunner
from harness.drills.runner import DrillCancelled, DrillFinding, Progress
from harness.evidence import EvidenceBundle
from harness.telemetry import ScenarioKind

_logger = logging.getLogger(__name__)

CHECK = "chaos"
SCENARIO_KIND: ScenarioKind = "chaos"
JOURNAL = "chaos/journal.json"
REQUIRED_EVIDENCE = (JOURNAL,)


class ChaosDrill:
    """Run one experiment against a lab and judge it.

    Args:
        experiment: a validated experiment (`harness.chaos.load_experiment`).
        configuration: the lab variables (`harness.chaos.lab_vars`).
        runner: the safe runner (default: one over `configuration`).

    Example:
        >>> drill = ChaosDrill(load_experiment(path), lab_vars(lab.endpoints))
        >>> run_drill(drill, settings).finding.observed
        'steady-state-held'
    """

    check = CHECK

    def __init__(
        self,
        experiment: Experiment,
        configuration: Mapping[str, Any],
        runner: SafeRunner | None = None,
    ) -> None:
        self.experiment = experiment
        self._runner = runner or SafeRunner(configuration)
        self.outcome: ChaosOutcome | None = None

    @property
    def kind(self) -> ScenarioKind:
        return SCENARIO_KIND

    @property
    def name(self) -> str:
        return self.experiment.name

    @property
    def subject(self) -> Path | None:
        return None

    @property
    def required(self) -> Sequence[str]:
        return REQUIRED_EVIDENCE

    def run(self, bundle: EvidenceBundle, progress: Progress | None) -> DrillFinding:
        if progress is not None:
            progress(f"chaos: {self.experiment.title}")
        with bundle.step("chaos") as step:
            outcome = self._runner.run(
                self.experiment, lambda journal: bundle.write_json(JOURNAL, _jsonable(journal))
            )
            step.detail = f"{outcome.observed}; status {outcome.status}"
            if outcome.signal is not None:
                step.result = "cancellation"
        self.outcome = outcome
        if outcome.signal is not None:
            raise DrillCancelled(outcome.signal)
        return finding_of(outcome)

    def cancel(self) -> None:
        # Reached only on a signal outside the experiment: the runner's own guard handles the
        # method and the rollbacks. Restore the lab all the same.
        self._runner.cancel()


def finding_of(outcome: ChaosOutcome) -> DrillFinding:
    """The drill's finding: what the steady state did, against the experiment's expectation."""
    expected = (
        "steady-state-held"
        if outcome.experiment.expect == "steady-state-holds"
        else "steady-state-failed"
    )
    problems = outcome.problems
    detail = f"{outcome.experiment.title}: {outcome.observed}"
    detail += " (as expected)" if outcome.met else f"; expected {expected}"
    lines = [
        f"before hypothesis: {outcome.hypothesis_before}; fault verified: "
        f"{outcome.fault_verified}; method ran: {outcome.method_ran}; after hypothesis: "
        f"{outcome.hypothesis_after}",
        f"rollbacks: {outcome.rollbacks_played} played, {outcome.rollbacks_failed} failed; "
        f"faults: {', '.join(outcome.faults) or 'none'}",
        *(f"problem: {p}" for p in problems),
    ]
    return DrillFinding(
        observed=outcome.observed,
        expected=expected,
        met=outcome.met,
        detail=detail,
        lines=tuple(lines),
        record={"chaos": outcome.record_json(JOURNAL)},
        problems=problems,
    )


def _jsonable(value: Any) -> Any:
    """The journal through JSON (chaoslib leaves exceptions and other objects in outputs)."""
    return json.loads(json.dumps(value, default=repr))
