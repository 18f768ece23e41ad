"""A Chaos Toolkit control that stops the method at its first failed activity.

chaostoolkit-lib records a failed action and goes on with the next one, so a method could go on
faulting a lab whose workload already broke. The safe runner adds this control to the copy of
the experiment it runs; raising `InterruptExecution` ends the method, and the rollbacks (strategy
`always`) are still played. Hypothesis probes and rollbacks are left alone: a failed probe is an
unmet hypothesis, and every rollback must be tried.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chaoslib.exceptions import InterruptExecution  # type: ignore[import-untyped]

CONTROL_NAME = "cihub-fail-fast"
CONTROL = {
    "name": CONTROL_NAME,
    "provider": {"type": "python", "module": __name__},
}
"""The control declaration the safe runner adds to an experiment's top-level controls."""


def after_activity_control(
    context: Mapping[str, Any],
    state: Mapping[str, Any] | None = None,
    experiment: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    """Interrupt the run when a method activity failed."""
    if not state or state.get("status") != "failed" or experiment is None:
        return
    method = experiment.get("method") or []
    if any(activity is context for activity in method):
        raise InterruptExecution(
            f"activity {context.get('name')!r} failed: stopping the method (fail fast)"
        )
