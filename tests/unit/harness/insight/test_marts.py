"""The marts, built by dbt (with its schema tests) on DuckDB over the sample history plus
records derived from it for the cases the sample lacks. Expected values are computed here from
the records themselves, not copied from a previous run."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from harness.errors import InfraError
from harness.insight import Report, build_report, warehouse
from harness.insight import dbt as insight_dbt
from harness.insight.marts import by_name

from .conftest import Record, derived, first, sample_records, write_ndjson

pytestmark = pytest.mark.slow  # dbt runs in-process: a few seconds per build

GOLDEN = Path(__file__).resolve().parents[3] / "data" / "pipeline_run.sample.ndjson"


def _flaky_rerun() -> Record:
    base = first("dual-build", "c-hello")
    determinism = {**base["determinism"], "verdict": "reproducible", "culprits": []}
    expectation = {**base["expectation"], "observed": "reproducible", "met": False}
    return derived(
        base, "c-hello-rerun", determinism=determinism, expectation=expectation, result="failure"
    )


def _chaos(run_id: str, recovery: float | None, result: str = "success") -> Record:
    base = first("dual-build", "py-reproducible")
    record = derived(base, run_id, scenario={"kind": "chaos", "name": "registry-latency"})
    for key in ("determinism", "expectation"):
        record.pop(key, None)
    record["result"] = result
    record["steps"] = [{"name": "chaos", "result": result, "duration_s": 12.5}]
    record["chaos"] = {"experiment": "registry latency", "recovery_s": recovery}
    return record


def _dr(run_id: str, rto: float, lost: int) -> Record:
    record = _chaos(run_id, None)
    record.pop("chaos")
    record["scenario"] = {"kind": "dr", "name": "registry-restore"}
    record["dr"] = {
        "drill": "registry-restore",
        "rto_s": rto,
        "rpo": {"items_lost": lost, "seconds_since_backup": 30.0},
        "consistent": True,
    }
    return record


def _evidence(record: Record, run_id: str, complete: bool, digest: bool) -> Record:
    evidence = {"bundle_path": run_id, "complete": complete}
    if digest:
        evidence["manifest_digest"] = record["evidence"]["manifest_digest"]
    return derived(record, run_id, evidence=evidence)


def _history() -> list[Record]:
    sample = sample_records()
    release = first("release")
    return [
        *sample,
        sample[0],  # the same run twice (a history file given twice): counted once
        _flaky_rerun(),
        _chaos("chaos-1", 1.5),
        _chaos("chaos-2", 2.5),
        _chaos("chaos-3", None, result="failure"),
        _dr("dr-1", 10.0, 0),
        _dr("dr-2", 20.0, 3),
        _evidence(release, "release-incomplete", complete=False, digest=True),
        _evidence(release, "release-unfinalized", complete=False, digest=False),
    ]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Report, list[Record]]:
    tmp = tmp_path_factory.mktemp("marts")
    records = _history()
    files = [write_ndjson(tmp / "history.ndjson", records), GOLDEN]
    report = build_report(files, workspace_root=tmp / "dbt", dbt_tests=True)
    unique = {r["run_id"]: r for r in records}
    golden = [json.loads(line) for line in GOLDEN.read_text().splitlines()]
    unique.update({r["run_id"]: r for r in golden})
    return report, list(unique.values())


def _rows(report: Report, name: str) -> list[dict[str, Any]]:
    return by_name(report.marts)[name].records()


def _day(record: Record) -> str:
    return record["started_at"][:10]


def test_counts(built: tuple[Report, list[Record]]) -> None:
    report, _ = built
    assert report.records == len(_history()) + 3
    assert report.in_window == report.records
    assert not report.empty


def test_determinism_rate_per_subject_and_day(built: tuple[Report, list[Record]]) -> None:
    report, records = built
    verdicts: dict[tuple[str, str], Counter[str]] = {}
    for r in records:
        if "determinism" in r and "verdict" in r["determinism"]:
            key = (r["scenario"]["name"], _day(r))
            verdicts.setdefault(key, Counter())[r["determinism"]["verdict"]] += 1
    rows = {
        (row["subject"], row["run_day"]): row for row in _rows(report, "mart_determinism_daily")
    }
    assert set(rows) == set(verdicts)
    for key, seen in verdicts.items():
        judged = seen["reproducible"] + seen["not-reproducible"]
        assert rows[key]["runs"] == sum(seen.values())
        assert rows[key]["reproducible"] == seen["reproducible"]
        expected = round(seen["reproducible"] / judged, 4) if judged else None
        assert rows[key]["determinism_rate"] == expected
    hello = [row for key, row in rows.items() if key[0] == "c-hello"]
    assert sum(row["reproducible"] for row in hello) == 1  # the derived rerun only


def test_flaky_drills_are_reruns_on_the_same_inputs(built: tuple[Report, list[Record]]) -> None:
    report, _ = built
    rows = _rows(report, "mart_flaky_drills")
    hello = [row for row in rows if row["scenario_name"] == "c-hello"]
    assert len(hello) == 1, rows
    assert hello[0]["verdicts"] == "not-reproducible, reproducible"
    assert hello[0]["results"] == "failure, success"
    assert (
        hello[0]["subject_revision"] == first("dual-build", "c-hello")["subject"]["vcs"]["revision"]
    )
    # chaos-3 failed where chaos-1/2 succeeded on the same inputs: flaky too
    assert {row["scenario_name"] for row in rows} == {"c-hello", "registry-latency"}


def test_chaos_recovery_per_experiment(built: tuple[Report, list[Record]]) -> None:
    report, _ = built
    (row,) = _rows(report, "mart_chaos_recovery")
    assert row["experiment"] == "registry latency"
    assert (row["runs"], row["measured"], row["failed"]) == (3, 2, 1)
    assert row["recovery_median_s"] == statistics.median([1.5, 2.5])
    assert (row["recovery_min_s"], row["recovery_max_s"]) == (1.5, 2.5)


def test_dr_trend(built: tuple[Report, list[Record]]) -> None:
    report, _ = built
    (row,) = _rows(report, "mart_dr_trend")
    assert row["drill"] == "registry-restore"
    assert (row["runs"], row["rto_avg_s"], row["rto_max_s"]) == (2, 15.0, 20.0)
    assert (row["rpo_items_lost_max"], row["consistent_runs"]) == (3, 2)


def test_step_time_shares(built: tuple[Report, list[Record]]) -> None:
    report, records = built
    rows = _rows(report, "mart_step_time_shares")
    totals: Counter[tuple[str, str]] = Counter()
    for r in records:
        for step in r["steps"]:
            totals[(r["scenario"]["kind"], step["name"])] += step["duration_s"]
    assert {(row["scenario_kind"], row["step_name"]) for row in rows} == set(totals)
    for kind in {k for k, _ in totals}:
        shares = [row["share"] for row in rows if row["scenario_kind"] == kind]
        assert sum(shares) == pytest.approx(1.0, abs=0.001 * len(shares))
        kind_total = sum(v for (k, _), v in totals.items() if k == kind)
        for row in (row for row in rows if row["scenario_kind"] == kind):
            expected = totals[(kind, row["step_name"])] / kind_total
            assert row["share"] == pytest.approx(expected, abs=0.0001)


def test_evidence_completeness(built: tuple[Report, list[Record]]) -> None:
    report, records = built
    rows = _rows(report, "mart_evidence_completeness")
    expected: Counter[str] = Counter()
    for r in records:
        ev = r["evidence"]
        status = (
            "unfinalized"
            if "manifest_digest" not in ev
            else "complete"
            if ev["complete"]
            else "incomplete"
        )
        expected[status] += 1
    for status in ("complete", "incomplete", "unfinalized"):
        assert sum(row[status] for row in rows) == expected[status], status
    assert expected["incomplete"] >= 1 and expected["unfinalized"] >= 1


def test_since_leaves_older_runs_out(tmp_path: Path) -> None:
    history = write_ndjson(tmp_path / "h.ndjson", sample_records())
    report = build_report(
        [history, GOLDEN], datetime(2026, 1, 1, tzinfo=UTC), workspace_root=tmp_path / "dbt"
    )
    assert report.in_window == len(sample_records())
    assert report.records == len(sample_records()) + 3
    days = {row["run_day"] for row in _rows(report, "mart_evidence_completeness")}
    assert all(day >= "2026-01-01" for day in days)


def test_a_window_with_nothing_in_it_gives_empty_marts(tmp_path: Path) -> None:
    report = build_report(
        [GOLDEN], datetime(2030, 1, 1, tzinfo=UTC), workspace_root=tmp_path / "dbt"
    )
    assert (report.records, report.in_window, report.empty) == (3, 0, True)
    assert all(not mart.rows for mart in report.marts)


def test_a_failing_model_is_named(tmp_path: Path) -> None:
    with insight_dbt.workspace(tmp_path / "dbt") as space:
        warehouse.load_history(space.fresh_database(), [GOLDEN], None)
        with duckdb.connect(str(space.database)) as con:
            con.execute(f"alter table {warehouse.ALL_RECORDS} drop column chaos")
        with pytest.raises(InfraError, match=r"dbt run failed: stg_pipeline_runs: error"):
            insight_dbt.run_dbt(space.args("run"))


def test_dbt_wrote_nothing_into_the_source_tree(built: tuple[Report, list[Record]]) -> None:
    project = insight_dbt.project_dir()
    written = [
        p.relative_to(project)
        for p in project.rglob("*")
        if p.name in {"target", "logs", "dbt_packages", ".user.yml"} or p.suffix == ".duckdb"
    ]
    assert written == []
