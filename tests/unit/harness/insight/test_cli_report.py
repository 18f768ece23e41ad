"""`cihub report` as a user runs it: exit codes, the one error line, empty histories, JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import _exit
from harness._cli import main

from .conftest import HISTORY

Capsys = pytest.CaptureFixture[str]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIHUB_CACHE_DIR", str(tmp_path / "cache"))


def _err_lines(capsys: Capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_an_invalid_line_is_one_error_line_naming_file_and_line(
    tmp_path: Path, capsys: Capsys
) -> None:
    lines = HISTORY.read_text().splitlines()
    path = tmp_path / "h.ndjson"
    path.write_text("\n".join([lines[0], lines[1][:-20], lines[2]]) + "\n")
    assert main(["report", str(path)]) == _exit.ERROR
    err = _err_lines(capsys)
    assert len(err) == 1, err
    assert err[0].startswith(f"error: {path}:2: $: not valid JSON")


def test_an_unreadable_file_exits_2(tmp_path: Path, capsys: Capsys) -> None:
    assert main(["report", str(tmp_path / "nope.ndjson")]) == _exit.ERROR
    (line,) = _err_lines(capsys)
    assert "nope.ndjson: cannot read it" in line


def test_an_empty_history_says_so_and_exits_0(tmp_path: Path, capsys: Capsys) -> None:
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    assert main(["report", "--evidence-dir", str(evidence), "--json"]) == _exit.SUCCESS
    captured = capsys.readouterr()
    assert "no pipeline_run records" in captured.err
    value = json.loads(captured.out)
    assert value["records"] == 0
    assert set(value["marts"]) == {
        "mart_determinism_daily",
        "mart_flaky_drills",
        "mart_chaos_recovery",
        "mart_dr_trend",
        "mart_step_time_shares",
        "mart_evidence_completeness",
    }
    assert all(rows == [] for rows in value["marts"].values())


def test_an_empty_history_prints_empty_tables(tmp_path: Path, capsys: Capsys) -> None:
    empty = tmp_path / "pipeline_run.ndjson"
    empty.write_text("")
    assert main(["report", str(empty)]) == _exit.SUCCESS
    out = capsys.readouterr().out
    assert "0 of 0 pipeline_run records" in out
    assert out.count("no rows in this history") == 6


def test_a_missing_evidence_folder_exits_2(tmp_path: Path, capsys: Capsys) -> None:
    assert main(["report", "--evidence-dir", str(tmp_path / "none")]) == _exit.ERROR
    assert "no such evidence folder" in capsys.readouterr().err


def test_evidence_dir_and_files_together_exit_2(tmp_path: Path, capsys: Capsys) -> None:
    assert main(["report", "--evidence-dir", str(tmp_path), str(HISTORY)]) == _exit.ERROR
    assert "not both" in capsys.readouterr().err


def test_a_bad_since_exits_2(capsys: Capsys) -> None:
    assert main(["report", "--since", "last tuesday", str(HISTORY)]) == _exit.ERROR
    assert "--since 'last tuesday'" in capsys.readouterr().err


@pytest.mark.slow
def test_the_sample_history_as_json_and_tables(tmp_path: Path, capsys: Capsys) -> None:
    assert main(["report", str(HISTORY), "--json"]) == _exit.SUCCESS
    value = json.loads(capsys.readouterr().out)
    records = len(HISTORY.read_text().splitlines())
    assert value["records"] == value["in_window"] == records
    subjects = {row["subject"] for row in value["marts"]["mart_determinism_daily"]}
    assert {"c-hello", "py-reproducible"} <= subjects
    assert sum(r["runs"] for r in value["marts"]["mart_evidence_completeness"]) == records
    assert main(["report", str(HISTORY)]) == _exit.SUCCESS
    out = capsys.readouterr().out
    assert f"{records} of {records} pipeline_run records" in out
    assert "Determinism rate per subject and day" in out and "c-hello" in out


def test_an_unwritable_page_exits_2(tmp_path: Path, capsys: Capsys) -> None:
    empty = tmp_path / "pipeline_run.ndjson"
    empty.write_text("")
    folder = tmp_path / "page"
    folder.mkdir()
    assert main(["report", str(empty), "--html", str(folder)]) == _exit.ERROR
    assert f"{folder}: cannot write the page" in capsys.readouterr().err
