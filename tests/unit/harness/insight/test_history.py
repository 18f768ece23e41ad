from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.insight import check_history, history_files, parse_since

from .conftest import HISTORY, Record, sample_records

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_the_sample_history_is_valid_and_counted() -> None:
    assert check_history([HISTORY]) == len(sample_records()) >= 7


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7d", NOW - timedelta(days=7)),
        ("36h", NOW - timedelta(hours=36)),
        ("90m", NOW - timedelta(minutes=90)),
        ("2w", NOW - timedelta(weeks=2)),
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01T08:00:00+02:00", datetime(2026, 11, 1, 6, tzinfo=UTC)),
    ],
)
def test_since_takes_spans_and_dates(value: str, expected: datetime) -> None:
    assert parse_since(value, NOW) == expected


@pytest.mark.parametrize("value", ["", "7", "d7", "-7d", "7 days", "yesterday", "7y"])
def test_since_refuses_anything_else(value: str) -> None:
    with pytest.raises(ConfigError, match="--since"):
        parse_since(value, NOW)


def test_history_files_of_an_evidence_folder(tmp_path: Path) -> None:
    (tmp_path / "pipeline_run.ndjson").write_text("")
    (tmp_path / "pipeline_run.gw1.ndjson").write_text("")
    (tmp_path / "other.ndjson").write_text("")
    (tmp_path / "bundle").mkdir()
    assert [p.name for p in history_files(tmp_path)] == [
        "pipeline_run.gw1.ndjson",
        "pipeline_run.ndjson",
    ]
    with pytest.raises(ConfigError, match="no such evidence folder"):
        history_files(tmp_path / "missing")


def _lines(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_the_first_bad_line_is_named_file_line_and_field(tmp_path: Path) -> None:
    good = HISTORY.read_text().splitlines()[0]
    bad = json.loads(good)
    bad["evidence"]["complete"] = "yes"
    path = _lines(tmp_path / "h.ndjson", good, good, json.dumps(bad), "{not json")
    with pytest.raises(ConfigError) as info:
        check_history([HISTORY, path])
    message = str(info.value)
    assert message.startswith(f"{path}:3: $.evidence.complete: ")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("{not json", "$: not valid JSON"),
        ("", "$: empty line"),
        ("[]", "$: "),
        ('{"run_id": "x"}', "$: "),
        ('"\\ud800"', "$: "),
    ],
)
def test_hostile_lines_stop_the_check(tmp_path: Path, line: str, field: str) -> None:
    good = HISTORY.read_text().splitlines()[0]
    path = _lines(tmp_path / "h.ndjson", good, line)
    with pytest.raises(ConfigError) as info:
        check_history([path])
    assert str(info.value).startswith(f"{path}:2: {field}")


def test_a_record_with_an_unknown_schema_major_is_refused(
    ndjson: Callable[[list[Record]], Path],
) -> None:
    record = sample_records()[0]
    record["schema_version"] = "2.0"
    path = ndjson([record])
    with pytest.raises(ConfigError, match=rf"^{path}:1: \$.schema_version: "):
        check_history([path])


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing.ndjson: cannot read it"):
        check_history([tmp_path / "missing.ndjson"])
    with pytest.raises(ConfigError, match=r"cannot read it"):
        check_history([tmp_path])


def test_an_empty_file_holds_no_records(tmp_path: Path) -> None:
    assert check_history([_lines(tmp_path / "e.ndjson")]) == 0


def test_a_lone_surrogate_in_a_valid_record_is_named(tmp_path: Path) -> None:
    record = json.loads(HISTORY.read_text().splitlines()[0])
    record["pipeline"]["name"] = "drill \ud800"
    path = _lines(tmp_path / "h.ndjson", HISTORY.read_text().splitlines()[0], json.dumps(record))
    with pytest.raises(ConfigError, match=rf"^{path}:2: \$\.pipeline\.name: .*not valid Unicode"):
        check_history([path])
