"""The marts a report shows: which dbt models, which of their columns, in what order."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any


@dataclass(frozen=True)
class MartSpec:
    """One mart as the report reads it (`marts.<name>` in the warehouse)."""

    name: str
    title: str
    columns: tuple[str, ...]
    order_by: str

    @property
    def relation(self) -> str:
        return f"marts.{self.name}"


DETERMINISM = MartSpec(
    "mart_determinism_daily",
    "Determinism rate per subject and day",
    (
        "subject",
        "run_day",
        "runs",
        "reproducible",
        "not_reproducible",
        "build_failed",
        "determinism_rate",
    ),
    "run_day, subject",
)
FLAKY = MartSpec(
    "mart_flaky_drills",
    "Flaky drills: same scenario and inputs, different verdicts",
    (
        "scenario_kind",
        "scenario_name",
        "subject_revision",
        "runs",
        "verdicts",
        "results",
        "last_seen",
    ),
    "last_seen desc, input_key",
)
CHAOS = MartSpec(
    "mart_chaos_recovery",
    "Chaos recovery per experiment",
    (
        "experiment",
        "runs",
        "measured",
        "failed",
        "recovery_min_s",
        "recovery_median_s",
        "recovery_max_s",
        "last_run",
    ),
    "experiment",
)
DR = MartSpec(
    "mart_dr_trend",
    "Disaster recovery: RTO and RPO per drill and day",
    (
        "drill",
        "run_day",
        "runs",
        "rto_avg_s",
        "rto_max_s",
        "rpo_items_lost_max",
        "rpo_seconds_max",
        "consistent_runs",
    ),
    "run_day, drill",
)
STEPS = MartSpec(
    "mart_step_time_shares",
    "Step time shares per kind of drill",
    ("scenario_kind", "step_name", "runs", "total_s", "avg_s", "share"),
    "scenario_kind, share desc, step_name",
)
EVIDENCE = MartSpec(
    "mart_evidence_completeness",
    "Evidence completeness per day and kind",
    ("run_day", "scenario_kind", "runs", "complete", "incomplete", "unfinalized", "complete_rate"),
    "run_day, scenario_kind",
)
MARTS: tuple[MartSpec, ...] = (DETERMINISM, FLAKY, CHAOS, DR, STEPS, EVIDENCE)
"""Every mart, in the order the report shows them."""


@dataclass(frozen=True)
class Mart:
    """A mart's rows, each a tuple in `spec.columns` order."""

    spec: MartSpec
    rows: tuple[tuple[Any, ...], ...] = ()

    def records(self) -> list[dict[str, Any]]:
        """The rows as JSON-ready mappings (dates and times as ISO 8601 strings)."""
        return [
            {c: _plain(v) for c, v in zip(self.spec.columns, row, strict=True)} for row in self.rows
        ]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def by_name(marts: tuple[Mart, ...]) -> Mapping[str, Mart]:
    """The marts keyed by model name."""
    return {m.spec.name: m for m in marts}
