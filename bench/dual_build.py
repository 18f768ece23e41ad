"""Dual builds against one build, and our drill against reprotest, per sample subject.

For each sample scenario in `scenarios/determinism/` (all by default), over `--runs` runs each:

  - one build: the subject built once in one builder container (control environment);
  - our dual build: A and B built in parallel (the drill's `build` step);
    target: dual build <= 1.3x one build;
  - our drill, without culprit search: prepare, dual build, compare (diffoscope on a mismatch),
    evidence; as `cihub run determinism --no-culprits` does, minus the process start;
  - reprotest on the host (its `null` virtual server), control + one experiment with the same
    variations where this host allows them and the same SOURCE_DATE_EPOCH, then diffoscope;
    target: our drill not slower than reprotest, with the same verdict.

With `--culprits`, also our culprit search against `reprotest --auto-build`. With `--baseline`,
the drill and the culprit search also run the former way (a container per build, each variation
alone), right after the default way, so the two are compared under the same load.

Medians are printed; timings are never asserted (bench/, not tests/). When reprotest is not
installed, or fails to run, no ratio against it is printed: the bench says so instead
(`make bench` installs it from Debian with disorderfs and faketime).

Usage: python bench/dual_build.py [--runs N] [--subjects NAME ...] [--culprits] [--baseline]
                                  [--json]
Needs: Docker; reprotest, disorderfs and faketime (apt) for the peer, and on the host the
subjects' toolchains: python3-build python3-setuptools python3-wheel, gcc, make.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.build import BuildSession, BuildSpec, run_build, run_pair, session_builder_image
from harness.determinism import (
    DeterminismScenario,
    DrillOptions,
    load_scenario,
    prepare_image,
    run_determinism,
    source_date_epoch,
)
from harness.evidence import EvidenceBundle
from harness.variations import DEFAULT_VARIATIONS, VariationSpec, plan_variations
from lab._internal.docker import docker_client
from lab.resources import resource_path

HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PEER_INSTALL = "apt-get install reprotest disorderfs faketime (or: make bench)"


def peer_missing() -> str | None:
    """Why reprotest cannot be compared against on this host, or None when it can."""
    if shutil.which("reprotest", path=HOST_PATH) is None:
        return f"reprotest is not installed on {HOST_PATH}; install it: {PEER_INSTALL}"
    return None


def ratio(ours: float, theirs: float | None, their_verdict: str) -> float | None:
    """ours/theirs, or None when the peer gave no comparable run (missing, failed, no time)."""
    if theirs is None or theirs <= 0 or their_verdict in ("missing", "error"):
        return None
    return round(ours / theirs, 2)


def shown(value: float | None, unit: str, width: int, why: str = "n/a") -> str:
    """A measured figure, or `why` when there is none (never a made-up ratio)."""
    return f"{value:{width - len(unit)}.2f}{unit}" if value is not None else f"{why:>{width}}"


def reprotest_variations() -> tuple[str, ...]:
    """Our default variations that reprotest's null server can apply on this host."""
    missing: set[str] = set()
    if shutil.which("sudo") is None:
        missing.add("user_group")  # needs sudo and a second user
    if shutil.which("disorderfs") is None or not os.path.exists("/dev/fuse"):
        missing.add("fileordering")
    if shutil.which("faketime") is None:
        missing.add("time")
    return tuple(v for v in DEFAULT_VARIATIONS if v not in missing)


def median_time(runs: int, action: Callable[[], Any]) -> tuple[float, Any]:
    """The median wall time of `runs` calls, and the last call's value."""
    times, values = timed_runs(runs, action)
    return statistics.median(times), values[-1]


def timed_runs(runs: int, action: Callable[[], Any]) -> tuple[list[float], list[Any]]:
    times, values = [], []
    for _ in range(runs):
        started = time.monotonic()
        values.append(action())
        times.append(time.monotonic() - started)
    return times, values


def verdict_of(values: Sequence[str]) -> str:
    """The verdict, or each verdict with its count when the runs disagree."""
    counts = {v: values.count(v) for v in dict.fromkeys(values)}
    if len(counts) == 1:
        return values[0]
    return " or ".join(f"{v} ({n}/{len(values)})" for v, n in counts.items())


def run_reprotest(
    scenario: DeterminismScenario, variations: Sequence[str], sde: int, auto: bool
) -> tuple[str, list[str]]:
    """reprotest's verdict (reproducible, not-reproducible or error) and, with `auto`, the
    variations its `--auto-build` blames."""
    if peer_missing():
        return "missing", []
    vary = ",".join(["-all", *(f"+{v}" for v in variations)])
    argv = ["reprotest", f"--vary={vary}", "--min-cpus=1"]
    if auto:
        argv.append("--auto-build")
    argv += [
        "-c",
        f"export SOURCE_DATE_EPOCH={sde}; {scenario.build}",
        str(scenario.subject),
        " ".join(scenario.artifacts),
    ]
    with tempfile.TemporaryDirectory(prefix="bench-reprotest-") as tmp:
        proc = subprocess.run(
            argv,
            cwd=tmp,
            env={**os.environ, "PATH": HOST_PATH},
            capture_output=True,
            text=True,
            check=False,
        )
    verdict = {0: "reproducible", 1: "not-reproducible"}.get(proc.returncode, "error")
    blamed: list[str] = []
    lines = proc.stdout.splitlines()
    marker = "Observed unreproducibility when varying each of the following:"
    if marker in lines:
        for line in lines[lines.index(marker) + 1 :]:
            if not line.strip() or line.startswith("The build is"):
                break
            blamed += [word.strip(",") for word in line.split()]
    return verdict, blamed


FORMER = DrillOptions(warm=False, culprit_strategy="singles")
"""How the drill ran before warm containers and the group search (for `--baseline`)."""


def bench_subject(
    path: Path,
    runs: int,
    culprits: bool,
    variations: Sequence[str],
    peer: bool = True,
    baseline: bool = False,
) -> dict[str, Any]:
    client = docker_client()
    spec_variations = VariationSpec(
        disable=frozenset(v for v in DEFAULT_VARIATIONS if v not in variations)
    )
    scenario = load_scenario(path)
    scenario = DeterminismScenario(
        **{**scenario.__dict__, "variations": spec_variations, "culprits": False}
    )
    sde = source_date_epoch(scenario.subject, scenario.source_date_epoch).value
    tag = prepare_image(client, scenario.image, "offline", None)
    with tempfile.TemporaryDirectory(prefix="bench-dual-") as tmp:
        session = BuildSession(client, Path(tmp))
        try:
            image = session_builder_image(session, tag)
            plan = plan_variations(spec_variations, image.capabilities)
            spec = BuildSpec(
                scenario.subject.resolve(), scenario.build, image, scenario.artifacts, sde
            )
            run_build(session, spec, plan.control, "warmup", keep=False)  # page cache, layers
            single, _ = median_time(
                runs, lambda: run_build(session, spec, plan.control, "single", keep=False)
            )
            dual, pair = median_time(
                runs,
                lambda: run_pair(
                    session, spec, plan.control, plan.experiment(), labels_ab=("dA", "dB")
                ),
            )
        finally:
            session.close()

    def drill(with_culprits: bool, options: DrillOptions | None = None) -> Any:
        with tempfile.TemporaryDirectory(prefix="bench-drill-") as folder:
            bundle = EvidenceBundle.create(Path(folder) / "b", run_id="bench")
            chosen = DeterminismScenario(**{**scenario.__dict__, "culprits": with_culprits})
            return run_determinism(chosen, bundle, client=client, options=options or DrillOptions())

    our_times, results = timed_runs(runs, lambda: drill(False))
    ours = statistics.median(our_times)
    former: float | None = None
    if baseline:
        former, _ = median_time(runs, lambda: drill(False, FORMER))
    our_verdict = verdict_of([r.verdict for r in results])
    theirs: float | None = None
    their_verdict = "missing"
    if peer:
        their_times, answers = timed_runs(
            runs, lambda: run_reprotest(scenario, variations, sde, auto=False)
        )
        theirs = statistics.median(their_times)
        their_verdict = verdict_of([verdict for verdict, _ in answers])
    row: dict[str, Any] = {
        "subject": scenario.name,
        "single_s": round(single, 2),
        "dual_s": round(dual, 2),
        "dual_over_single": round(dual / single, 2),
        "dual_identical": pair.identical,
        "drill_s": round(ours, 2),
        "drill_former_s": round(former, 2) if former is not None else None,
        "reprotest_s": round(theirs, 2) if theirs is not None else None,
        "drill_over_reprotest": ratio(ours, theirs, their_verdict),
        "verdict": our_verdict,
        "reprotest_verdict": their_verdict,
        "same_verdict": our_verdict == their_verdict if peer else None,
    }
    if culprits:
        search, found = median_time(runs, lambda: drill(True))
        if baseline:
            old, old_found = median_time(runs, lambda: drill(True, FORMER))
            row.update(
                culprit_former_s=round(old, 2),
                culprit_former_builds=old_found.culprit_report.builds
                if old_found.culprit_report
                else 0,
                culprits_former=list(old_found.culprits),
            )
        report = found.culprit_report
        row.update(
            culprits=list(found.culprits),
            culprit_drill_s=round(search, 2),
            culprit_builds=report.builds if report else 0,
            culprit_mode=f"{report.strategy}, {report.containers}" if report else "not run",
        )
        auto: float | None = None
        auto_verdict, blamed = "missing", list[str]()
        if peer:
            auto, (auto_verdict, blamed) = median_time(
                1, lambda: run_reprotest(scenario, variations, sde, auto=True)
            )
        row.update(
            reprotest_culprits=blamed,
            reprotest_auto_s=round(auto, 2) if auto is not None else None,
            culprit_over_auto=ratio(search, auto, auto_verdict),
        )
    return row


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--subjects", nargs="*", default=None, metavar="NAME")
    parser.add_argument("--culprits", action="store_true", help="also time the culprit search")
    parser.add_argument(
        "--baseline", action="store_true", help="also time the former way (cold, singles)"
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    paths = sorted(resource_path("scenarios", "determinism").glob("*.yaml"))
    if args.subjects:
        paths = [p for p in paths if p.stem in args.subjects]
    variations = reprotest_variations()
    missing = peer_missing()
    if missing:
        print(f"NOTE: {missing}; no ratio against reprotest is measured", file=sys.stderr)
    print(f"variations (both tools): {', '.join(variations)}", file=sys.stderr)
    rows = []
    for path in paths:
        print(f"benchmarking {path.stem} ...", file=sys.stderr)
        rows.append(
            bench_subject(path, args.runs, args.culprits, variations, not missing, args.baseline)
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = (
        f"{'subject':16} {'1 build':>8} {'dual':>7} {'dual/1':>7} {'drill':>7} "
        f"{'reprotest':>9} {'drill/rt':>8}  verdict (ours / reprotest)"
    )
    print(header)
    for r in rows:
        why = "missing" if missing else "failed"
        same = {True: "same", False: "DIFFERENT", None: "not compared"}[r["same_verdict"]]
        print(
            f"{r['subject']:16} {r['single_s']:7.2f}s {r['dual_s']:6.2f}s "
            f"{r['dual_over_single']:6.2f}x {r['drill_s']:6.2f}s "
            f"{shown(r['reprotest_s'], 's', 9, why)} "
            f"{shown(r['drill_over_reprotest'], 'x', 8, why)}  "
            f"{r['verdict']} / {r['reprotest_verdict']} ({same})"
        )
        if r["drill_former_s"] is not None:
            print(f"{'':16} former drill (a container per build) {r['drill_former_s']:.2f}s")
        if "culprit_former_s" in r:
            print(
                f"{'':16} former culprit search {r['culprit_former_s']:.2f}s "
                f"({r['culprit_former_builds']} builds; singles, cold; culprits: "
                f"{', '.join(r['culprits_former']) or 'none'})"
            )
        if "culprits" in r:
            print(
                f"{'':16} culprit search {r['culprit_drill_s']:.2f}s "
                f"({r['culprit_builds']} builds; {r['culprit_mode']}) "
                f"(culprits: {', '.join(r['culprits']) or 'none'}) vs reprotest --auto-build "
                f"{shown(r['reprotest_auto_s'], 's', 1, why)} "
                f"({', '.join(r['reprotest_culprits']) or 'none'}): "
                f"{shown(r['culprit_over_auto'], 'x', 1, why)}"
            )
    print("targets: dual/1 <= 1.3x; drill/rt <= 1.0x for the same verdict")
    if missing:
        print(f"reprotest: not measured ({missing})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
