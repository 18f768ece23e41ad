"""A drill's steps as they run: what the live progress table of `cihub run release` shows.

Each row is a step or a sub-step (the dual build's prepare, build A, build B, compare and
culprit search) with its state (`waiting`, `running`, then the verdict) and wall time. The
drill writes it; the table reads `rows()` whenever a progress line arrives and at the end.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from harness.build import BuildOutput
from harness.evidence.manifest import StepEntry

WAITING = "waiting"
RUNNING = "running"
SKIPPED = "skipped"
STOPPED = "stopped"

DUAL_BUILD = "dual-build"
# The dual build's sub-steps, and the bundle step each one is recorded as.
DUAL_BUILD_STEPS = ("prepare", "build A", "build B", "compare", "culprit search")
_BUNDLE_STEP = {"prepare": "prepare", "compare": "compare", "culprit search": "culprits"}
# Lines `run_determinism` says when a sub-step starts (its progress lines are for people, so
# this is a display hint only: the verdicts and times come from the bundle and the builds).
_STARTS = (
    ("preparing builder image", ("prepare",)),
    ("building A", ("build A", "build B")),
    ("comparing the artifacts", ("compare",)),
    ("culprit search", ("culprit search",)),
)


@dataclass(frozen=True)
class StepRow:
    """One row: `parent` names the step a sub-step belongs to."""

    name: str
    state: str
    seconds: float | None = None
    parent: str | None = None


class StepBoard:
    """The steps of one drill run, in order; sub-steps follow their step.

    Args:
        steps: the top-level step names, in the order they run.
        children: sub-step names per step.
    """

    def __init__(self, steps: Sequence[str], children: dict[str, Sequence[str]]) -> None:
        self._order: list[tuple[str, str | None]] = []
        for step in steps:
            self._order.append((step, None))
            self._order += [(child, step) for child in children.get(step, ())]
        self._rows = {key: StepRow(key[0], WAITING, None, key[1]) for key in self._order}
        self._started: dict[tuple[str, str | None], float] = {}

    def rows(self) -> tuple[StepRow, ...]:
        return tuple(self._rows[key] for key in self._order)

    def start(self, name: str, parent: str | None = None) -> None:
        key = (name, parent)
        self._started[key] = time.perf_counter()
        self._rows[key] = StepRow(name, RUNNING, None, parent)

    def finish(
        self, name: str, state: str, seconds: float | None = None, parent: str | None = None
    ) -> None:
        key = (name, parent)
        if seconds is None and key in self._started:
            seconds = time.perf_counter() - self._started[key]
        self._rows[key] = StepRow(name, state, seconds, parent)

    def stop_running(self) -> None:
        """Mark what was still running as stopped (the drill left early)."""
        for key, row in self._rows.items():
            if row.state == RUNNING:
                self.finish(key[0], STOPPED, None, key[1])

    # -- the dual build's sub-steps ---------------------------------------------------------

    def dual_build_said(self, message: str) -> None:
        """Follow `run_determinism`'s progress lines: mark the sub-step that starts."""
        for prefix, names in _STARTS:
            if message.startswith(prefix):
                self._finish_running_children()
                for name in names:
                    self.start(name, DUAL_BUILD)
                return

    def dual_build_done(self, steps: Iterable[StepEntry], builds: Iterable[BuildOutput]) -> None:
        """Each sub-step's verdict and time, from the bundle's steps and the two builds."""
        recorded = {entry.name: entry for entry in steps}
        for name in DUAL_BUILD_STEPS:
            entry = recorded.get(_BUNDLE_STEP.get(name, ""))
            if entry is not None:
                self.finish(name, entry.result, entry.duration_s, DUAL_BUILD)
        for build in builds:
            name = f"build {build.label}"
            if (name, DUAL_BUILD) in self._rows:
                verdict = "success" if build.ok else "timeout" if build.timed_out else "failure"
                self.finish(name, verdict, build.duration_s, DUAL_BUILD)
        for name in DUAL_BUILD_STEPS:
            if self._rows[(name, DUAL_BUILD)].state == WAITING:
                self.finish(name, SKIPPED, None, DUAL_BUILD)

    def _finish_running_children(self) -> None:
        for (name, parent), row in self._rows.items():
            if parent == DUAL_BUILD and row.state == RUNNING:
                self.finish(name, "done", None, parent)
