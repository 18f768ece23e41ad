from __future__ import annotations

import json
import multiprocessing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from harness import telemetry
from harness.errors import ConfigError
from harness.evidence.manifest import StepEntry
from harness.telemetry import LineError

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def _record(run_id: str = "r-1", **extra: Any) -> dict[str, Any]:
    return telemetry.build_record(
        run_id=run_id,
        pipeline="cihub",
        scenario="dual-build",
        scenario_kind="dual-build",
        started_at=T0,
        finished_at=T0 + timedelta(seconds=3),
        result="success",
        bundle_path=run_id,
        manifest_digest="sha256:" + "b" * 64,
        complete=True,
        steps=[
            StepEntry("build", "success", 2.5),
            StepEntry("compare", "success", 0.5),
        ],
        vcs={"revision": "abc", "ref_name": "main", "ref_type": "branch"},
        artifacts=[{"name": "hello", "digest": "sha256:" + "c" * 64}],
        **extra,
    )


def test_a_built_record_is_valid_and_carries_the_facts() -> None:
    record = _record(lab={"images": {"registry": {"tag": "t", "id": None}}, "services": {}})
    telemetry.validate_record(record)
    assert record["schema_version"] == "1.4"
    assert record["duration_s"] == 3.0
    assert record["started_at"] == "2025-01-01T12:00:00.000Z"
    assert record["runner"]["python_version"]
    assert record["subject"]["vcs"]["revision"] == "abc"


def test_unknown_fields_are_allowed_for_minor_versions() -> None:
    record = _record()
    record["schema_version"] = "1.7"
    record["new_optional_field"] = {"anything": True}
    telemetry.validate_record(record)


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda r: r.pop("run_id"), "$"),
        (lambda r: r["steps"][1].update(result="maybe"), "$.steps[1].result"),
        (
            lambda r: r["evidence"].update(manifest_digest="not a digest"),
            "$.evidence.manifest_digest",
        ),
        (lambda r: r.update(started_at="yesterday"), "$.started_at"),
        (lambda r: r["scenario"].update(kind="party"), "$.scenario.kind"),
    ],
)
def test_invalid_records_name_the_json_path(mutate: Any, path: str) -> None:
    record = _record()
    mutate(record)
    with pytest.raises(ConfigError) as info:
        telemetry.validate_record(record)
    assert str(info.value).startswith(f"pipeline_run record is invalid: {path}: ")


def test_an_invalid_record_is_not_appended(tmp_path: Path) -> None:
    record = _record()
    record["result"] = "great"
    with pytest.raises(ConfigError):
        telemetry.append_record(record, tmp_path)
    assert (
        not (tmp_path / telemetry.NDJSON_NAME).exists()
        or (tmp_path / telemetry.NDJSON_NAME).read_text() == ""
    )


def test_append_writes_whole_lines_and_repairs_a_torn_tail(tmp_path: Path) -> None:
    path = telemetry.append_record(_record("a"), tmp_path)
    with path.open("ab") as handle:
        handle.write(b'{"torn": ')  # a crash in the middle of someone's write
    telemetry.append_record(_record("b"), tmp_path)
    lines = path.read_bytes().split(b"\n")
    assert json.loads(lines[0])["run_id"] == "a"
    assert lines[1] == b'{"torn": '
    assert json.loads(lines[2])["run_id"] == "b"
    found: list[LineError] = []
    report = telemetry.validate_ndjson(path, found.append)
    assert (report.lines, report.invalid) == (3, 1)
    assert [e.line for e in found] == [2]


def _append_many(evidence_dir: str, worker: int, count: int) -> None:
    padding = "x" * (20_000 + worker * 997)  # long lines: torn if not locked and written whole
    for i in range(count):
        record = _record(f"w{worker}-{i}")
        record["steps"][0]["detail"] = padding
        telemetry.append_record(record, Path(evidence_dir))


def test_eight_processes_append_without_torn_or_lost_lines(tmp_path: Path) -> None:
    workers, count = 8, 25
    context = multiprocessing.get_context("fork")
    procs = [
        context.Process(target=_append_many, args=(str(tmp_path), w, count)) for w in range(workers)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    path = tmp_path / telemetry.NDJSON_NAME
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""  # ends with a newline
    ids = [json.loads(line)["run_id"] for line in lines[:-1]]
    assert sorted(ids) == sorted(f"w{w}-{i}" for w in range(workers) for i in range(count))
    report = telemetry.validate_ndjson(path)
    assert report.valid and report.lines == workers * count


def test_validate_ndjson_reports_each_invalid_line_with_number_and_path(tmp_path: Path) -> None:
    good = json.dumps(_record())
    missing = _record()
    del missing["pipeline"]["name"]
    bad_step = _record()
    bad_step["steps"][0]["duration_s"] = -1
    path = tmp_path / "runs.ndjson"
    path.write_text(
        "\n".join([good, "{not json", json.dumps(missing), "", json.dumps(bad_step), good]) + "\n"
    )
    errors: list[LineError] = []
    report = telemetry.validate_ndjson(path, errors.append)
    assert (report.lines, report.invalid, report.valid) == (6, 4, False)
    by_line = {e.line: e for e in errors}
    assert sorted(by_line) == [2, 3, 4, 5]
    assert by_line[2].json_path == "$" and "not valid JSON" in by_line[2].message
    assert (
        by_line[3].json_path == "$.pipeline"
        and "'name' is a required property" in by_line[3].message
    )
    assert by_line[4].message == "empty line"
    assert by_line[5].json_path == "$.steps[0].duration_s"
    assert str(by_line[5]).startswith("line 5: $.steps[0].duration_s:")


def test_validate_ndjson_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"absent\.ndjson"):
        telemetry.validate_ndjson(tmp_path / "absent.ndjson")


def test_vcs_facts_strip_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (
        telemetry._strip_credentials("https://user:tok@github.com/o/r.git")
        == "https://github.com/o/r.git"
    )
    monkeypatch.setenv("CIHUB_VCS_REVISION", "feedface")
    monkeypatch.setenv("CIHUB_VCS_REF", "release-1")
    facts = telemetry.vcs_facts(tmp_path)
    assert (
        facts is not None and facts["revision"] == "feedface" and facts["ref_name"] == "release-1"
    )


def test_validation_streams_in_constant_memory(tmp_path: Path) -> None:
    import tracemalloc

    line = json.dumps(_record()).encode() + b"\n"
    path = tmp_path / "big.ndjson"
    with path.open("wb") as handle:
        for _ in range(4000):  # about 10 MB
            handle.write(line)
    tracemalloc.start()
    try:
        report = telemetry.validate_ndjson(path)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.valid and report.lines == 4000
    assert peak < 3 * 1024 * 1024, peak  # the read buffer and one record, not the file


def test_numbers_orjson_refuses_are_judged_by_the_schema(tmp_path: Path) -> None:
    record = _record()
    record["extra_counter"] = 2**70  # valid JSON; orjson alone would reject it
    path = tmp_path / "r.ndjson"
    path.write_text(json.dumps(record) + "\n" + '{"run_id": 1e999999}\n')
    found: list[LineError] = []
    report = telemetry.validate_ndjson(path, found.append)
    assert (report.lines, report.invalid) == (2, 1)
    assert {e.line for e in found} == {2}
