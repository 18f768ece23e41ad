"""`cihub report` time over a large pipeline_run history (target: under 5 s for 100k records).

The history is the sample history (`tests/data/history/pipeline_run.ndjson`, records of real
drill runs) replicated to `--records` lines, each copy with a fresh run id and its times moved
back so the copies spread over `--days` days. Each run is the whole command in a fresh process
(`cihub report FILE --json`, stdout discarded): interpreter start, imports, schema check of
every line, the DuckDB load, dbt and reading the marts. Wall time and CPU time (user + system)
are both printed: on a shared machine the wall time includes waiting for a core, and
`cihub --help` gives the start-up floor every cihub command pays. dbt's workspace lives in a
temporary cache folder, so the first run checks, loads and builds everything from scratch
("cold"); later runs over the same files ("warm") reuse the check, the loaded table and dbt's
build, as a user's second report over unchanged history does. "new records" runs append one
record to the history before each run, so the file is checked and loaded again and dbt runs
(with its partial parsing): a report after every drill. With `--html`, the warm runs again
with the HTML page written. Timings are printed, never asserted.

Usage: python bench/report.py [--records N] [--runs N] [--days N] [--html] [--json]
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
from datetime import datetime, timedelta
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
    and what `--json` said of dbt ("ran", "reused"; "" without `--json`)."""
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


def _append_one(history: Path, i: int) -> None:
    with history.open("rb") as handle:
        record = orjson.loads(handle.readline())
    record["run_id"] = f"{record['run_id']}-new{i:03d}"
    with history.open("ab") as handle:
        handle.write(orjson.dumps(record) + b"\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3, help="warm runs after the cold one")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--sample", type=Path, default=SAMPLE)
    parser.add_argument("--html", action="store_true", help="also time with --html")
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    results: dict[str, Any] = {"records": opts.records, "target_s": TARGET_S}
    with tempfile.TemporaryDirectory(prefix="cihub-bench-report-") as tmp:
        history = Path(tmp) / "pipeline_run.ndjson"
        replicate(opts.sample, history, opts.records, opts.days)
        results["history_mb"] = round(history.stat().st_size / 1e6, 1)
        env = {**os.environ, "CIHUB_CACHE_DIR": str(Path(tmp) / "cache")}
        # the floor under any cihub command: interpreter start and the CLI's imports
        floor = [time_cihub(["--help"], env) for _ in range(opts.runs)]
        results["cihub --help"] = {
            "wall_median_s": round(statistics.median(w for w, _, _ in floor), 2),
            "cpu_median_s": round(statistics.median(c for _, c, _ in floor), 2),
        }
        variants = [("report", ["--json"]), ("new records", ["--json"])]
        if opts.html:
            variants.append(("report --html", ["--json", "--html", str(Path(tmp) / "r.html")]))
        for name, extra in variants:
            args = ["report", str(history), *extra]
            cold = time_cihub(args, env)[0] if name == "report" else None
            warm = []
            for i in range(opts.runs):
                if name == "new records":
                    _append_one(history, i)
                warm.append(time_cihub(args, env))
            median = statistics.median(w for w, _, _ in warm)
            results[name] = {
                "cold_s": None if cold is None else round(cold, 2),
                "warm_median_s": round(median, 2),
                "warm_runs_s": [round(w, 2) for w, _, _ in warm],
                "cpu_median_s": round(statistics.median(c for _, c, _ in warm), 2),
                "dbt": sorted({d for _, _, d in warm}),
                "ratio_to_target": round(median / TARGET_S, 2),
            }
    if opts.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"cihub report over {opts.records} records ({results['history_mb']} MB NDJSON)")
    floor_row = results["cihub --help"]
    print(
        f"  {'cihub --help':<14} wall median {floor_row['wall_median_s']:.2f} s, "
        f"CPU {floor_row['cpu_median_s']:.2f} s (the start-up floor of every cihub command)"
    )
    for name, _ in variants:
        row = results[name]
        first = f"cold {row['cold_s']:.2f} s, " if row["cold_s"] is not None else ""
        print(
            f"  {name:<14} {first}warm median {row['warm_median_s']:.2f} s "
            f"(runs {row['warm_runs_s']}), CPU {row['cpu_median_s']:.2f} s, "
            f"dbt {'/'.join(row['dbt']) or '-'}: "
            f"{row['ratio_to_target']:.2f}x the {TARGET_S:.0f} s target"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
