"""Drills: one runner (`runner.py`) and one module of steps per drill.

Public API: `run_drill`, `RunSettings`, `DrillRun`, `DrillFinding`, `Drill`, `DrillCancelled`,
`DeterminismDrill` (the dual-build drill) and `ReleaseDrill` (the release drill).
"""

from __future__ import annotations

from harness.drills.chaos import ChaosDrill
from harness.drills.determinism import DeterminismDrill
from harness.drills.release import ReleaseDrill, ReleaseScenario, ReleaseServices
from harness.drills.runner import (
    Drill,
    DrillCancelled,
    DrillFinding,
    DrillRun,
    RunSettings,
    run_drill,
)

__all__ = [
    "ChaosDrill",
    "DeterminismDrill",
    "Drill",
    "DrillCancelled",
    "DrillFinding",
    "DrillRun",
    "ReleaseDrill",
    "ReleaseScenario",
    "ReleaseServices",
    "RunSettings",
    "run_drill",
]
