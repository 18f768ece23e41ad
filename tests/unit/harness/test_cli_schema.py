from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import _exit
from harness._cli import main

DATA = Path(__file__).resolve().parents[2] / "data"
Capsys = pytest.CaptureFixture[str]


def test_a_valid_file_exits_0(capsys: Capsys) -> None:
    assert main(["schema", "validate", str(DATA / "pipeline_run.sample.ndjson")]) == _exit.SUCCESS
    assert "3 valid line(s)" in capsys.readouterr().err


def _mixed(tmp_path: Path) -> Path:
    good = (DATA / "pipeline_run.sample.ndjson").read_text().splitlines()[0]
    bad = json.loads(good)
    bad["steps"][2]["result"] = "meh"
    path = tmp_path / "runs.ndjson"
    path.write_text("\n".join([good, json.dumps(bad), "[]", good]) + "\n")
    return path


def test_invalid_lines_exit_1_each_named_by_line_and_path(tmp_path: Path, capsys: Capsys) -> None:
    path = _mixed(tmp_path)
    assert main(["schema", "validate", str(path)]) == _exit.FAILED
    err = capsys.readouterr().err.splitlines()
    assert any(
        line.startswith(f"{path}:2: $.steps[2].result: 'meh' is not one of") for line in err
    ), err
    assert any(line.startswith(f"{path}:3: $: ") for line in err), err
    assert "2 of 4 line(s) invalid" in err[-1]


def test_json_report(tmp_path: Path, capsys: Capsys) -> None:
    assert main(["schema", "validate", str(_mixed(tmp_path)), "--json"]) == _exit.FAILED
    report = json.loads(capsys.readouterr().out)
    assert (report["lines"], report["invalid_lines"], report["valid"]) == (4, 2, False)
    assert [e["line"] for e in report["errors"]] == [2, 3]
    assert report["errors"][0]["path"] == "$.steps[2].result"
    assert main(["schema", "validate", str(DATA / "pipeline_run.sample.ndjson"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["errors"] == []


def test_a_missing_file_exits_2(tmp_path: Path, capsys: Capsys) -> None:
    assert main(["schema", "validate", str(tmp_path / "none.ndjson")]) == _exit.ERROR
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "none.ndjson" in err


@pytest.mark.parametrize(
    "line", ['"\\ud800"', '{"x": "\\ud800"}', '{"\\udfff": 1}', '["ok", "\\ud800"]']
)
def test_a_lone_surrogate_is_one_invalid_line_not_a_traceback(
    tmp_path: Path, capsys: Capsys, line: str
) -> None:
    good = (DATA / "pipeline_run.sample.ndjson").read_text().splitlines()[0]
    path = tmp_path / "runs.ndjson"
    path.write_text(f"{good}\n{line}\n{good}\n")
    assert main(["schema", "validate", str(path)]) == _exit.FAILED
    err = capsys.readouterr().err
    assert "Traceback" not in err
    named = [row for row in err.splitlines() if row.startswith(f"{path}:")]
    assert named and all(row.startswith(f"{path}:2: $") for row in named), err
    assert "1 of 3 line(s) invalid" in err
    assert main(["schema", "validate", str(path), "--json"]) == _exit.FAILED
    report = json.loads(capsys.readouterr().out)
    assert [e["line"] for e in report["errors"]] == [2] * len(report["errors"])
