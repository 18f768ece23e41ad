"""Marts built from the SQL dbt compiled (replayed) are the marts dbt builds, and the history
takes in appended lines without a whole load; plans only for what can be replayed."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import pytest

from harness.errors import ConfigError
from harness.insight import dbt, replay, warehouse
from harness.insight.build import Report, build_report

from .conftest import Record, sample_records, write_ndjson
from .test_marts import _history


def _node(
    name: str,
    depends_on: list[str],
    *,
    kind: str = "model",
    materialized: str = "table",
    post_hook: list[str] | None = None,
) -> SimpleNamespace:
    node = SimpleNamespace(
        unique_id=f"{kind}.p.{name}",
        resource_type=kind,
        database="insight",
        schema="marts",
        relation_name=f'"insight"."marts"."{name}"',
        compiled_code=f"select 1 as x -- {name}",
        depends_on=SimpleNamespace(nodes=depends_on),
        config=SimpleNamespace(materialized=materialized, pre_hook=[], post_hook=post_hook or []),
    )
    return SimpleNamespace(node=node)


def _result(*items: SimpleNamespace) -> SimpleNamespace:
    return SimpleNamespace(results=list(items))


def test_a_plan_builds_what_a_model_depends_on_first() -> None:
    result = _result(
        _node("mart", ["model.p.stg"]),
        _node("not_null_stg_x", ["model.p.stg"], kind="test"),
        _node("stg", ["source.p.raw.pipeline_run"], materialized="view"),
        _node("top", ["model.p.mart", "model.p.stg"]),
    )
    plan = replay.plan_from_result(result, "k")
    assert plan is not None and plan.key == "k"
    assert [m.unique_id for m in plan.models] == ["model.p.stg", "model.p.mart", "model.p.top"]
    statements = replay.statements(plan.models)
    assert statements[0] == 'create schema if not exists "insight"."marts"'
    assert statements[1].startswith('create or replace view "insight"."marts"."stg" as (\n')
    assert statements[1].endswith("-- stg\n)")  # a trailing comment can't eat the parenthesis
    assert len(statements) == 4


@pytest.mark.parametrize(
    "odd",
    [
        _node("inc", [], materialized="incremental"),
        _node("eph", [], materialized="ephemeral"),
        _node("hooked", [], post_hook=["grant select on {{ this }} to reporter"]),
        _node("seeded", [], kind="seed"),
    ],
    ids=["incremental", "ephemeral", "hook", "seed"],
)
def test_no_plan_when_a_node_cannot_be_replayed(odd: SimpleNamespace) -> None:
    assert replay.plan_from_result(_result(_node("fine", []), odd), "k") is None


def test_a_plan_is_read_back_only_with_its_key(tmp_path: Path) -> None:
    plan = replay.plan_from_result(_result(_node("a", []), _node("b", ["model.p.a"])), "k1")
    assert plan is not None
    path = tmp_path / "plan.json"
    replay.save(plan, path)
    assert replay.load(path, "k1") == plan
    assert replay.load(path, "k2") is None
    path.write_text("{not json")
    assert replay.load(path, "k1") is None
    value: dict[str, Any] = {"key": "k1", "models": [{"unique_id": "x"}]}
    path.write_text(json.dumps(value))
    assert replay.load(path, "k1") is None


def test_the_models_compile_the_same_whatever_the_data() -> None:
    """Replaying compiled SQL is sound only while no model or macro asks the warehouse
    anything at compile time, and no hook runs."""
    project = dbt.project_dir()
    introspective = re.compile(
        r"run_query|statement\(|load_result|is_incremental|adapter\.get_|get_columns_in|"
        r"dbt_utils\.get_|on-run-(start|end)|pre[-_]hook|post[-_]hook"
    )
    comment = re.compile(r"\{#.*?#\}|--[^\n]*|^\s*#[^\n]*", re.DOTALL | re.MULTILINE)
    texts = {
        path: comment.sub("", path.read_text())
        for path in sorted(project.rglob("*"))
        if path.suffix in {".sql", ".yml"}
    }
    assert any("ref(" in text for text in texts.values())  # the comments alone are gone
    found = [
        f"{path.relative_to(project)}: {match.group(0)}"
        for path, text in texts.items()
        for match in introspective.finditer(text)
    ]
    assert found == []


def _marts(report: Report) -> dict[str, object]:
    return dict(report.to_json()["marts"])


def _later(records: list[Record]) -> list[Record]:
    """The records again as new runs (other run ids): what a night of drills appends."""
    return [{**r, "run_id": r["run_id"] + "-later"} for r in records]


@pytest.mark.slow  # dbt runs in-process: a few seconds per build
def test_replayed_marts_are_the_marts_dbt_builds(tmp_path: Path) -> None:
    space = tmp_path / "replay"
    history = write_ndjson(tmp_path / "h.ndjson", sample_records()[:4])
    assert build_report([history], workspace_root=space, shipped_plan=None).dbt == "ran"
    assert (space / "plan.json").is_file()

    richer = write_ndjson(tmp_path / "h.ndjson", _history())  # chaos, DR, flaky, incomplete
    since = datetime(2026, 1, 1, tzinfo=UTC)
    for window in (None, since):
        replayed = build_report([richer], window, workspace_root=space)
        by_dbt = build_report(
            [richer], window, workspace_root=tmp_path / f"dbt-{window}", shipped_plan=None
        )
        assert (replayed.dbt, by_dbt.dbt) == ("replayed", "ran")
        assert replayed.in_window == by_dbt.in_window
        assert _marts(replayed) == _marts(by_dbt)
        assert all(mart.rows for mart in replayed.marts)


@pytest.mark.slow
def test_appended_lines_are_added_to_the_history_not_loaded_anew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[list[bytes]] = []
    real = warehouse.load_history

    def spy(database: Path, files: list[Path], since: datetime | None) -> int:
        loads.append([file.read_bytes() for file in files])
        return real(database, files, since)

    monkeypatch.setattr(warehouse, "load_history", spy)
    space = tmp_path / "dbt"
    records = _history()
    first, rest = records[:5], records[5:]
    history = write_ndjson(tmp_path / "h.ndjson", first)
    other = write_ndjson(tmp_path / "other.ndjson", sample_records()[:2])
    assert build_report([history, other], workspace_root=space, shipped_plan=None).dbt == "ran"
    assert len(loads) == 1

    with history.open("a") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in rest)
    grown = build_report([history, other], workspace_root=space)
    assert (grown.dbt, grown.records, len(loads)) == ("replayed", len(records) + 2, 1)
    fresh = build_report([history, other], workspace_root=tmp_path / "fresh")
    assert _marts(grown) == _marts(fresh) and grown.in_window == fresh.in_window
    loads.clear()  # the fresh workspace's load

    # a bad appended line stops the report and is never added: the next report, the line
    # replaced by a good one, holds exactly the good records
    good = history.read_bytes()
    with history.open("a") as handle:
        handle.write('{"run_id": "half a record"}\n')
    with pytest.raises(ConfigError, match=rf"^{history}:{len(records) + 1}: "):
        build_report([history, other], workspace_root=space)
    later = _later(records[:1])
    history.write_bytes(good + "".join(json.dumps(r) + "\n" for r in later).encode())
    fixed = build_report([history, other], workspace_root=space)
    assert (fixed.dbt, loads) == ("replayed", [])
    with duckdb.connect(str(space / "insight.duckdb"), read_only=True) as con:
        rows = con.execute(f"select count(*) from {warehouse.ALL_RECORDS}").fetchone()
    assert rows == (len(records) + 1 + 2,)

    # another file order is another history: loaded anew
    assert build_report([other, history], workspace_root=space).dbt == "replayed"
    assert loads == [[other.read_bytes(), history.read_bytes()]]


@pytest.mark.slow
def test_a_record_appended_while_the_history_loads_is_loaded_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = _history()
    history = write_ndjson(tmp_path / "h.ndjson", records[:-1])
    real = warehouse.load_history

    appended: list[bool] = []

    def drill_appends_meanwhile(database: Path, files: list[Path], since: datetime | None) -> int:
        if not appended:  # after the digest, before DuckDB reads
            with history.open("a") as handle:
                handle.write(json.dumps(records[-1]) + "\n")
            appended.append(True)
        return real(database, files, since)

    monkeypatch.setattr(warehouse, "load_history", drill_appends_meanwhile)
    space = tmp_path / "dbt"
    first = build_report([history], workspace_root=space)
    assert first.records == len(records) - 1, "the record appended meanwhile waits its turn"
    second = build_report([history], workspace_root=space)
    assert second.records == len(records)
    with duckdb.connect(str(space / "insight.duckdb"), read_only=True) as con:
        rows = con.execute(f"select count(*) from {warehouse.ALL_RECORDS}").fetchone()
    assert rows == (len(records),), "loaded once, not again as a tail"


@pytest.mark.slow
def test_a_failing_replay_leaves_the_word_to_dbt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    space = tmp_path / "dbt"
    history = write_ndjson(tmp_path / "h.ndjson", sample_records())
    assert build_report([history], workspace_root=space, shipped_plan=None).dbt == "ran"
    plan = json.loads((space / "plan.json").read_text())
    plan["models"][-1]["sql"] = "select * from no_such_table"
    (space / "plan.json").write_text(json.dumps(plan))
    write_ndjson(history, _later(sample_records()))
    report = build_report([history], workspace_root=space)
    assert report.dbt == "ran"  # the replay failed, rolled back, and dbt built the marts
    again = replay.load(space / "plan.json", plan["key"])  # dbt's plan replaced the broken one
    assert again is not None and "no_such_table" not in again.models[-1].sql
    assert build_report([history], workspace_root=space).dbt == "reused"
