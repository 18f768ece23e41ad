from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import _exit
from harness._cli import main
from harness.records import cdevents, otel

from .conftest import SAMPLE

Capsys = pytest.CaptureFixture[str]


def test_cdevents_export_writes_valid_events(tmp_path: Path, capsys: Capsys) -> None:
    out = tmp_path / "events.ndjson"
    assert main(["export", "cdevents", str(SAMPLE), "-o", str(out)]) == _exit.SUCCESS
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(events) == 9  # three finished runs, three events each
    assert all(cdevents.event_errors(e) == [] for e in events)
    assert f"{out}: 9 lines" in capsys.readouterr().err


def test_otel_export_to_stdout_parses_as_otlp(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert main(["export", "otel", str(SAMPLE)]) == _exit.SUCCESS
    lines = capsysbinary.readouterr().out.decode().splitlines()
    assert len(lines) == 3
    names = [
        otel.parse_otlp_json(line).resource_spans[0].scope_spans[0].spans[0].name for line in lines
    ]
    assert names == ["RUN cihub-nightly"] * 3


def _with_bad_line(tmp_path: Path, bad: bytes) -> Path:
    good = SAMPLE.read_bytes().splitlines()[0]
    path = tmp_path / "runs.ndjson"
    path.write_bytes(good + b"\n" + good + b"\n" + bad + b"\n" + good + b"\n")
    return path


@pytest.mark.parametrize(
    ("bad", "where"),
    [
        (b"{not json", "$: not valid JSON"),
        (b"", "$: empty line"),
        (b"[]", "$: "),
        (b"\xff\xfe garbage", "$: not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "$: not valid JSON"),
        (b'{"schema_version": NaN}', "$: not valid JSON"),
        (b'{"run_id": "x"}', "$: "),
    ],
)
@pytest.mark.parametrize("fmt", ["cdevents", "otel"])
def test_a_bad_line_is_named_and_exits_2(
    tmp_path: Path, capsys: Capsys, bad: bytes, where: str, fmt: str
) -> None:
    path = _with_bad_line(tmp_path, bad)
    out = tmp_path / "out.ndjson"
    out.write_text("previous export\n")
    assert main(["export", fmt, str(path), "-o", str(out)]) == _exit.ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert f"{path}:3: {where}" in err[0]
    # The earlier output is kept whole, never half replaced.
    assert out.read_text() == "previous export\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.ndjson")]


def test_a_record_failing_the_schema_names_the_json_path(tmp_path: Path, capsys: Capsys) -> None:
    record = json.loads(SAMPLE.read_text().splitlines()[0])
    record["steps"][1]["result"] = "meh"
    path = _with_bad_line(tmp_path, json.dumps(record).encode())
    assert main(["export", "otel", str(path)]) == _exit.ERROR
    assert f"{path}:3: $.steps[1].result: 'meh' is not one of" in capsys.readouterr().err


def test_a_missing_file_exits_2(tmp_path: Path, capsys: Capsys) -> None:
    assert main(["export", "cdevents", str(tmp_path / "nope.ndjson")]) == _exit.ERROR
    assert "nope.ndjson: no such file" in capsys.readouterr().err
