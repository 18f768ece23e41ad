"""Drills per hour on one machine: the determinism scenarios under pytest-xdist, -n 1 vs -n 2.

Each measurement runs `pytest scenarios/test_determinism.py -n N` in a fresh evidence folder
(every worker brings up its own lab, as `tox -e determinism` or a CI shard would), counts the
drills that finished from the pipeline_run records they appended, and divides by the wall time,
lab start-ups included. `--repeat K` runs each scenario K times in the one session (pytest's
`--keep-duplicates`), as a nightly run of many drills does: the lab start-ups and the longest
scenario then weigh less on the figure. Prints drills per hour per worker count and the ratio
against the first (target on a 2-core machine: -n 2 at least 1.7x -n 1), with the machine's
cores, its load average at the start of each run and how busy its cores were during the run
(from /proc/stat: the share of all cores' time not idle). A second worker can only add what
the first left idle: with the cores busy B of the time at -n 1, -n 2 gains at most 1/B.

Then it times `cihub report` over a 100k-record history (target: under 5 s) with
bench/report.py's own code; `--report-only` runs just that part, without Docker, and
`--report-records`, `--report-runs`, `--report-first-runs`, `--report-new`, `--report-days`
are bench/report.py's options. With `--json` each part prints a JSON document of its own.

Timings are never asserted (bench/, not tests/).

Usage: python bench/scale.py [--workers 1 2] [--rounds N] [--repeat K] [--json] [--report-only]
Needs: Docker (labs and builder images are built on first use and cached), except for
`--report-only`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = "scenarios/test_determinism.py"


def count_drills(ndjson: Path) -> tuple[int, int]:
    """(drills with a record, of which passed) from a pipeline_run NDJSON file."""
    if not ndjson.is_file():
        return 0, 0
    total = passed = 0
    for line in ndjson.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("scenario", {}).get("kind") == "dual-build":
            total += 1
            passed += record.get("result") == "success"
    return total, passed


def cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all cores since boot, from /proc/stat (None off Linux)."""
    try:
        fields = Path("/proc/stat").read_text(encoding="ascii").splitlines()[0].split()[1:]
    except OSError:
        return None
    values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def busy_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share of all cores' time that was not idle between two `cpu_times()` readings."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def run_once(workers: int, extra: Sequence[str], repeat: int = 1) -> dict[str, Any]:
    """One pytest run of the determinism scenarios (each `repeat` times) on `workers` xdist
    workers."""
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        evidence = Path(tmp) / "evidence"
        argv = [
            sys.executable,
            "-m",
            "pytest",
            *([SCENARIOS] * repeat),
            "--keep-duplicates",
            "-p",
            "no:cacheprovider",
            "-q",
            "-n",
            str(workers),
            "--evidence-dir",
            str(evidence),
            *extra,
        ]
        load = os.getloadavg()[0]
        cpu_before = cpu_times()
        started = time.monotonic()
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
        wall = time.monotonic() - started
        busy = busy_share(cpu_before, cpu_times())
        drills, passed = count_drills(evidence / "pipeline_run.ndjson")
    tail = (proc.stdout.strip().splitlines() or [""])[-1]
    return {
        "workers": workers,
        "exit_code": proc.returncode,
        "summary": tail,
        "drills": drills,
        "passed": passed,
        "wall_s": round(wall, 2),
        "load_at_start": round(load, 2),
        "cores_busy": round(busy, 3) if busy is not None else None,
    }


def _at_least_one(text: str) -> int:
    """An argparse type: a whole number of 1 or more (0 would leave pytest no path, and it would
    run every test it finds)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def weighted_busy(runs: Sequence[dict[str, Any]]) -> float | None:
    """The cores' busy share over all `runs` together (each weighted by its wall time)."""
    measured = [(r["cores_busy"], r["wall_s"]) for r in runs if r.get("cores_busy") is not None]
    wall = sum(w for _, w in measured)
    return sum(b * w for b, w in measured) / wall if wall > 0 else None


def per_hour(drills: int, wall_s: float) -> float:
    return round(drills * 3600.0 / wall_s, 1) if wall_s > 0 else 0.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], metavar="N")
    parser.add_argument("--rounds", type=int, default=1, help="runs per worker count (summed)")
    parser.add_argument(
        "--repeat", type=_at_least_one, default=1, metavar="K", help="run each scenario K times"
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments, after --")
    args = parser.parse_args(argv)
    print(f"cores: {os.cpu_count()}; scenarios: {SCENARIOS}", file=sys.stderr)
    rows = []
    for workers in args.workers:
        runs = []
        for round_no in range(1, args.rounds + 1):
            print(f"-n {workers}, round {round_no} ...", file=sys.stderr)
            runs.append(run_once(workers, args.pytest_args, args.repeat))
        drills = sum(r["drills"] for r in runs)
        wall = sum(r["wall_s"] for r in runs)
        rows.append(
            {
                "workers": workers,
                "drills": drills,
                "passed": sum(r["passed"] for r in runs),
                "wall_s": round(wall, 2),
                "drills_per_hour": per_hour(drills, wall),
                "load_at_start": [r["load_at_start"] for r in runs],
                "cores_busy": [r["cores_busy"] for r in runs],
                "cores_busy_all": weighted_busy(runs),
                "failed_runs": [r["summary"] for r in runs if r["exit_code"] != 0],
            }
        )
    base = rows[0]["drills_per_hour"] if rows else 0.0
    for row in rows:
        row["ratio"] = round(row["drills_per_hour"] / base, 2) if base else None
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        f"{'workers':>7} {'drills':>6} {'passed':>6} {'wall':>9} {'drills/h':>9} {'ratio':>6}  "
        "load  cores busy"
    )
    for row in rows:
        ratio = f"{row['ratio']:5.2f}x" if row["ratio"] is not None else "   n/a"
        load = ", ".join(f"{v:.1f}" for v in row["load_at_start"])
        busy = ", ".join("n/a" if v is None else f"{v:.0%}" for v in row["cores_busy"])
        print(
            f"{row['workers']:>7} {row['drills']:>6} {row['passed']:>6} {row['wall_s']:8.1f}s "
            f"{row['drills_per_hour']:9.1f} {ratio}  {load}  {busy}"
        )
        for failed in row["failed_runs"]:
            print(f"{'':7} a run failed: {failed}")
    print("target: -n 2 at least 1.7x -n 1 (2 cores); a load above the core count skews it")
    first_busy: float | None = rows[0]["cores_busy_all"] if rows else None
    if first_busy:
        print(
            f"bound: at -n {rows[0]['workers']} the machine's cores (all processes, not only "
            f"the drills') were busy {first_busy:.0%} of the time, so more workers gain at most "
            f"{1 / first_busy:.2f}x"
        )
    return 0


def _report_bench() -> ModuleType:
    """bench/report.py, loaded from beside this file (bench/ is no package)."""
    spec = importlib.util.spec_from_file_location(
        "bench_report", Path(__file__).with_name("report.py")
    )
    if spec is None or spec.loader is None:
        raise SystemExit("bench/report.py: cannot load it")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main_with_report(argv: Sequence[str] | None = None) -> int:
    """Drills per hour (`main`, unless `--report-only`), then the `cihub report` time."""
    report_bench = _report_bench()
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--report-only", action="store_true")
    report_bench.add_arguments(parser, prefix="report-")
    opts, rest = parser.parse_known_args(argv)
    code = 0 if opts.report_only else main(rest)
    if {"-h", "--help"}.intersection(rest):
        return code
    report = report_bench.measure(
        records=opts.report_records,
        runs=opts.report_runs,
        first_runs=opts.report_first_runs,
        new=opts.report_new,
        days=opts.report_days,
    )
    if "--json" in rest:
        print(json.dumps({"cihub report": report}, indent=2))
    else:
        report_bench.print_results(report)
    return code


if __name__ == "__main__":
    raise SystemExit(main_with_report())
