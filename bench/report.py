"""`cihub report` time over a large pipeline_run history (target: under 5 s for 100k records).

The history is the sample history (`tests/data/history/pipeline_run.ndjson`, records of real
drill runs) replicated to `--records` lines, each copy with a fresh run id and its times moved
back so the copies spread over `--days` days. Each run is the whole command in a fresh process
(`cihub report FILE --json`, stdout discarded): interpreter start, imports, schema check,
loading into DuckDB, building the marts and reading them. Wall time and CPU time (user +
system, threads included) are both printed: on a shared machine the wall time includes waiting
for a core, and `cihub --help` gives the start-up floor every cihub command pays. dbt's
workspace lives in a temporary cache folder. Three cases:

- first report: an empty workspace: every line checked, the history loaded, the marts built
  from the plan cihub ships (`harness/insight/shipped_plan.json`, no dbt; dbt runs, with its
  imports and a full parse, when the plan's key is not the project's). Each run gets a
  workspace of its own.
- new records: `--new` records (default 300, a night of drills) appended to the history before
  each run, as a user's report the morning after: the new lines are checked and loaded, the
  marts built anew (from the SQL dbt compiled the unchanged models to, or by dbt).
- unchanged: the same history again: everything of the previous report reused.

`--html` adds the unchanged case with the HTML page written. `bench/scale.py --report-only`
runs this same code. Timings are printed, never asserted.

Usage: python bench/report.py [--records N] [--runs N] [--first-runs N] [--new N] [--html]
    [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "data" / "history" / "pipeline_run.ndjson"
TARGET_S = 5.0


def _shift(stamp: str, back: timedelta) -> str:
    when = datetime.fromisoformat(stamp.replace("Z", "+00:00")) - back
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def replicate(sample: Path, out: Path, records: int, days: int) -> None:
    """Write `records` lines to `out`: the sample's records over and over, each copy with a
    fresh run id and its times moved back by up to `days` days."""
    base = [orjson.loads(line) for line in sample.read_bytes().splitlines() if line.strip()]
    if not base:
        raise SystemExit(f"{sample}: no records to replicate")
    step = timedelta(days=days) / records
    with out.open("wb") as handle:
        for i in range(records):
            record: dict[str, Any] = dict(base[i % len(base)])
            back = step * (records - i)
            record["run_id"] = f"{record['run_id']}-bench{i:06d}"
            record["started_at"] = _shift(record["started_at"], back)
            record["finished_at"] = _shift(record["finished_at"], back)
            handle.write(orjson.dumps(record) + b"\n")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_cihub(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall and CPU seconds (user + system, threads included) of one `cihub ARGS` process,
    and what `--json` said of dbt ("ran", "replayed", "reused"; "" without `--json`)."""
    cihub = Path(sys.executable).with_name("cihub")
    cpu = _children_cpu()
    started = time.perf_counter()
    proc = subprocess.run(
        [str(cihub), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"cihub {args[0]} exited {proc.returncode}: {proc.stderr.strip()}")
    dbt = str(json.loads(proc.stdout).get("dbt") or "") if "--json" in args else ""
    return took, _children_cpu() - cpu, dbt


def append_new(history: Path, count: int, tag: str) -> None:
    """Append `count` copies of the history's first record, each with a fresh run id and
    started now: the records of drills that ran since the last report."""
    with history.open("rb") as handle:
        first = orjson.loads(handle.readline())
    now = datetime.now(UTC)
    with history.open("ab") as handle:
        for i in range(count):
            record = dict(first)
            record["run_id"] = f"{first['run_id']}-new{tag}-{i:05d}"
            started = now - timedelta(minutes=count - i)
            took = timedelta(seconds=float(first.get("duration_s") or 1.0))
            record["started_at"] = started.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            record["finished_at"] = (
                (started + took).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            )
            handle.write(orjson.dumps(record) + b"\n")


def _row(runs: list[tuple[float, float, str]]) -> dict[str, Any]:
    walls = [w for w, _, _ in runs]
    median = statistics.median(walls)
    return {
        "wall_median_s": round(median, 2),
        "runs_s": [round(w, 2) for w in walls],
        "cpu_median_s": round(statistics.median(c for _, c, _ in runs), 2),
        "dbt": sorted({d for _, _, d in runs if d}),
        "ratio_to_target": round(median / TARGET_S, 2),
    }


def measure(
    *,
    records: int = 100_000,
    runs: int = 3,
    first_runs: int = 1,
    new: int = 300,
    days: int = 30,
    sample: Path = SAMPLE,
    html: bool = False,
) -> dict[str, Any]:
    """Time `cihub report` over a replicated history of `records` records; see the module."""
    results: dict[str, Any] = {"records": records, "new": new, "target_s": TARGET_S}
    with tempfile.TemporaryDirectory(prefix="cihub-bench-report-") as tmp:
        history = Path(tmp) / "pipeline_run.ndjson"
        replicate(sample, history, records, days)
        results["history_mb"] = round(history.stat().st_size / 1e6, 1)
        env = {**os.environ, "CIHUB_CACHE_DIR": str(Path(tmp) / "cache")}
        # the floor under any cihub command: interpreter start and the CLI's imports
        results["cihub --help"] = _row([time_cihub(["--help"], env) for _ in range(runs)])
        args = ["report", str(history), "--json"]
        first = []
        for i in range(first_runs):
            fresh = {**env, "CIHUB_CACHE_DIR": str(Path(tmp) / f"first-{i}")}
            first.append(time_cihub(args, fresh))
        if first:
            results["first report"] = _row(first)
        time_cihub(args, env)  # this workspace's own first report, not timed
        after_new = []
        for i in range(runs):
            append_new(history, new, str(i))
            after_new.append(time_cihub(args, env))
        results["new records"] = _row(after_new)
        results["unchanged"] = _row([time_cihub(args, env) for _ in range(runs)])
        if html:
            page = ["--html", str(Path(tmp) / "r.html")]
            time_cihub([*args, *page], env)  # the page's first write imports Altair's caches
            results["unchanged --html"] = _row(
                [time_cihub([*args, *page], env) for _ in range(runs)]
            )
    return results


CASES = ("cihub --help", "first report", "new records", "unchanged", "unchanged --html")


def print_results(results: dict[str, Any]) -> None:
    print(
        f"cihub report over {results['records']} records ({results['history_mb']} MB NDJSON), "
        f"new records: {results['new']} per run"
    )
    for name in CASES:
        row = results.get(name)
        if row is None:
            continue
        target = (
            "the start-up floor of every cihub command"
            if name == "cihub --help"
            else f"{row['ratio_to_target']:.2f}x the {TARGET_S:.0f} s target"
        )
        print(
            f"  {name:<16} wall median {row['wall_median_s']:5.2f} s (runs {row['runs_s']}), "
            f"CPU {row['cpu_median_s']:5.2f} s, dbt {'/'.join(row['dbt']) or '-'}: {target}"
        )


def add_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """The options of `measure`, named `--{prefix}records` etc."""
    parser.add_argument(f"--{prefix}records", type=int, default=100_000)
    parser.add_argument(f"--{prefix}runs", type=int, default=3, help="runs per case")
    parser.add_argument(
        f"--{prefix}first-runs",
        type=int,
        default=1,
        help="first reports (each ~3 s; ~10-30 s when dbt runs)",
    )
    parser.add_argument(
        f"--{prefix}new", type=int, default=300, help="records appended before each run"
    )
    parser.add_argument(f"--{prefix}days", type=int, default=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_arguments(parser)
    parser.add_argument("--sample", type=Path, default=SAMPLE)
    parser.add_argument("--html", action="store_true", help="also time with --html")
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    results = measure(
        records=opts.records,
        runs=opts.runs,
        first_runs=opts.first_runs,
        new=opts.new,
        days=opts.days,
        sample=opts.sample,
        html=opts.html,
    )
    if opts.json:
        print(json.dumps(results, indent=2))
    else:
        print_results(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
