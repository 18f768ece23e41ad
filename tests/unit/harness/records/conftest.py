from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).resolve().parents[3] / "data"
SAMPLE = DATA / "pipeline_run.sample.ndjson"


@pytest.fixture
def sample_records() -> list[dict[str, Any]]:
    """The three sample records (release success, dual-build failure, chaos)."""
    return [json.loads(line) for line in SAMPLE.read_text().splitlines()]


@pytest.fixture
def record(sample_records: list[dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """A copy of the first sample record with the given top-level fields replaced."""

    def make(**changes: Any) -> dict[str, Any]:
        value = copy.deepcopy(sample_records[0])
        value.update(changes)
        return value

    return make
