"""The plan shipped with cihub: a lock file of what dbt compiles `models/` to today, replayed
by a first report to marts identical to dbt's, and never used where dbt must run."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness import _exit
from harness._cli import main
from harness.errors import InfraError
from harness.insight import build, dbt, replay, reuse, shipped
from harness.insight.build import Report, build_report

from .conftest import sample_records, write_ndjson
from .test_marts import _history


class _DbtStarted(Exception):
    """dbt was asked to run (raised instead of running it)."""


@pytest.fixture
def no_dbt(monkeypatch: pytest.MonkeyPatch) -> None:
    """dbt raises `_DbtStarted` instead of running: a report that needs it stops there."""

    def started(args: list[str]) -> None:
        raise _DbtStarted(args[0])

    monkeypatch.setattr(build.dbt, "run_dbt", started)
    monkeypatch.setattr(build.dbt, "preload", lambda: None)


def _key(root: Path) -> str:
    return shipped.plan_key(dbt.Workspace(root))


def _marts(report: Report) -> dict[str, object]:
    return dict(report.to_json()["marts"])


def test_the_shipped_plan_has_the_key_of_the_models_here(tmp_path: Path) -> None:
    """The lock is current (cheap half): `cihub report --compile-plan` after changing
    models/, dbt-core or dbt-duckdb."""
    plan = replay.load(shipped.SHIPPED_PLAN, _key(tmp_path / "a"))
    assert plan is not None, "run `cihub report --compile-plan` and commit the plan"
    assert len(plan.models) == 8


@pytest.mark.slow  # dbt compiles the project in-process
def test_the_shipped_plan_is_what_dbt_compiles_the_models_to_today() -> None:
    """The lock is current (whole): the same SQL, relations and order as dbt compiles now."""
    loaded = replay.load(shipped.SHIPPED_PLAN, _key(Path("/nowhere")))
    assert loaded == shipped.compile_plan(), "run `cihub report --compile-plan`"


def test_the_plan_key_holds_in_any_workspace(tmp_path: Path) -> None:
    assert _key(tmp_path / "a") == _key(tmp_path / "b" / "deeper")
    text = shipped.SHIPPED_PLAN.read_text()
    assert "cihub-plan-" not in text and "/tmp" not in text  # no workspace folder in the SQL
    other = dbt.Workspace(tmp_path / "c")
    profiles = dbt.plan_profiles_text(other.database).replace("threads: 4", "threads: 1")
    assert reuse.plan_key(dbt.project_dir(), profiles) != _key(tmp_path / "c")


@pytest.mark.slow  # dbt runs in-process
def test_a_first_report_replays_the_shipped_plan_to_the_marts_dbt_builds(tmp_path: Path) -> None:
    history = write_ndjson(tmp_path / "h.ndjson", _history())  # chaos, DR, flaky, incomplete
    for window in (None, datetime(2026, 1, 1, tzinfo=UTC)):
        first = build_report([history], window, workspace_root=tmp_path / f"first-{window}")
        by_dbt = build_report(
            [history], window, workspace_root=tmp_path / f"dbt-{window}", shipped_plan=None
        )
        assert (first.dbt, by_dbt.dbt) == ("replayed", "ran")
        assert (first.records, first.in_window) == (by_dbt.records, by_dbt.in_window)
        assert _marts(first) == _marts(by_dbt)
        assert all(mart.rows for mart in first.marts)


def test_dbt_runs_with_the_tests_asked_for(tmp_path: Path, no_dbt: None) -> None:
    history = write_ndjson(tmp_path / "h.ndjson", sample_records())
    with pytest.raises(_DbtStarted, match="build"):
        build_report([history], workspace_root=tmp_path / "w", dbt_tests=True)


def test_dbt_runs_for_other_models(
    tmp_path: Path, no_dbt: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "models"
    shutil.copytree(dbt.project_dir(), project)
    monkeypatch.setattr(dbt, "project_dir", lambda: project)
    history = write_ndjson(tmp_path / "h.ndjson", sample_records())
    assert build_report([history], workspace_root=tmp_path / "same").dbt == "replayed"
    model = project / "marts" / "mart_dr_trend.sql"
    model.write_text(model.read_text() + "\n-- a user's change\n")
    with pytest.raises(_DbtStarted, match="run"):
        build_report([history], workspace_root=tmp_path / "edited")


def test_dbt_runs_under_another_dbt_version(
    tmp_path: Path, no_dbt: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = reuse.metadata.version
    monkeypatch.setattr(
        reuse.metadata, "version", lambda d: "1.10.99" if d == "dbt-core" else real(d)
    )
    history = write_ndjson(tmp_path / "h.ndjson", sample_records())
    with pytest.raises(_DbtStarted, match="run"):
        build_report([history], workspace_root=tmp_path / "w")


@pytest.mark.parametrize("forgery", ["sql", "key", "materialized", "mart left out"])
def test_a_forged_or_broken_shipped_plan_leaves_the_word_to_dbt(
    tmp_path: Path, no_dbt: None, forgery: str
) -> None:
    value = json.loads(shipped.SHIPPED_PLAN.read_text())
    if forgery == "sql":  # the key is right, the SQL fails: rolled back, dbt runs
        value["models"][-1]["sql"] = "select * from no_such_table"
    elif forgery == "key":
        value["key"] = "0" * 64
    elif forgery == "materialized":  # an incremental model is never replayed
        value["models"][0]["materialized"] = "incremental"
    else:  # the key is right but a mart is missing: it would keep its old rows
        value["models"] = [
            m for m in value["models"] if "mart_step_time_shares" not in m["relation"]
        ]
    forged = tmp_path / "plan.json"
    forged.write_text(json.dumps(value))
    history = write_ndjson(tmp_path / "h.ndjson", sample_records())
    space = tmp_path / "w"
    with pytest.raises(_DbtStarted, match="run"):
        build_report([history], workspace_root=space, shipped_plan=forged)
    assert reuse.stored_key(space / "insight.duckdb", "build") is None  # nothing half-built kept


def test_compile_plan_takes_no_report_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--compile-plan", str(tmp_path / "h.ndjson")]) == _exit.ERROR
    assert "--compile-plan takes no NDJSON" in capsys.readouterr().err


@pytest.mark.slow  # dbt compiles the project in-process
def test_compile_plan_writes_the_plan_a_report_replays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "shipped.json"
    monkeypatch.setattr(shipped, "SHIPPED_PLAN", target)
    monkeypatch.setenv("CIHUB_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["report", "--compile-plan"]) == _exit.SUCCESS
    assert str(target) in capsys.readouterr().err
    written = replay.load(target, _key(tmp_path / "x"))
    assert written is not None
    assert written == replay.load(
        Path(shipped.__file__).with_name("shipped_plan.json"), _key(tmp_path / "y")
    )
    history = write_ndjson(tmp_path / "h.ndjson", sample_records())
    report = build_report([history], workspace_root=tmp_path / "w", shipped_plan=target)
    assert report.dbt == "replayed"


def test_a_failing_dbt_after_a_failed_replay_is_one_infra_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(args: list[str]) -> None:
        raise InfraError("dbt run failed: stg_pipeline_runs: error")

    monkeypatch.setattr(build.dbt, "run_dbt", broken)
    monkeypatch.setattr(build.dbt, "preload", lambda: None)
    value = json.loads(shipped.SHIPPED_PLAN.read_text())
    value["models"][0]["sql"] = "select nonsense"
    forged = tmp_path / "plan.json"
    forged.write_text(json.dumps(value))
    history = write_ndjson(tmp_path / "h.ndjson", sample_records())
    with pytest.raises(InfraError, match="stg_pipeline_runs"):
        build_report([history], workspace_root=tmp_path / "w", shipped_plan=forged)
