"""Histories for the Insight tests: the sample history of real drill runs, and records derived
from it where a mart needs a case the sample does not hold (a flaky rerun, a chaos or DR run)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

HISTORY = Path(__file__).resolve().parents[3] / "data" / "history" / "pipeline_run.ndjson"

Record = dict[str, Any]


def sample_records() -> list[Record]:
    return [json.loads(line) for line in HISTORY.read_text().splitlines()]


def first(kind: str, name: str | None = None) -> Record:
    for record in sample_records():
        scenario = record["scenario"]
        if scenario["kind"] == kind and name in (None, scenario["name"]):
            return record
    raise AssertionError(f"the sample history has no {kind} {name or ''} run")


def derived(base: Record, run_id: str, **changes: Any) -> Record:
    """A copy of `base` with a new run id and `changes` (nested dicts replace whole keys)."""
    record = copy.deepcopy(base)
    record["run_id"] = run_id
    record.update(changes)
    return record


def write_ndjson(path: Path, records: list[Record]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def ndjson(tmp_path: Path) -> Callable[[list[Record]], Path]:
    """Write records to a fresh NDJSON file in tmp_path and return its path."""
    count = iter(range(1000))

    def make(records: list[Record]) -> Path:
        return write_ndjson(tmp_path / f"history-{next(count)}.ndjson", records)

    return make
