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

With `--culprits`, also our culprit search against `reprotest --auto-build`.

Medians are printed; timings are never asserted (bench/, not tests/).

Usage: python bench/dual_build.py [--runs N] [--subjects NAME ...] [--culprits] [--json]
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

from harness.build import BuildSession, BuildSpec, inspect_builder_image, run_build, run_pair
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
from lab.images import default_cache_dir
from lab.resources import resource_path

HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


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
    if shutil.which("reprotest") is None:
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


def bench_subject(
    path: Path, runs: int, culprits: bool, variations: Sequence[str]
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
            image = inspect_builder_image(
                client,
                tag,
                lab_id=session.lab_id,
                session=session.session,
                cache_dir=default_cache_dir() / "determinism",
            )
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

    def drill(with_culprits: bool) -> Any:
        with tempfile.TemporaryDirectory(prefix="bench-drill-") as folder:
            bundle = EvidenceBundle.create(Path(folder) / "b", run_id="bench")
            chosen = DeterminismScenario(**{**scenario.__dict__, "culprits": with_culprits})
            return run_determinism(chosen, bundle, client=client, options=DrillOptions())

    our_times, results = timed_runs(runs, lambda: drill(False))
    ours = statistics.median(our_times)
    their_times, answers = timed_runs(
        runs, lambda: run_reprotest(scenario, variations, sde, auto=False)
    )
    theirs = statistics.median(their_times)
    our_verdict = verdict_of([r.verdict for r in results])
    their_verdict = verdict_of([verdict for verdict, _ in answers])
    row: dict[str, Any] = {
        "subject": scenario.name,
        "single_s": round(single, 2),
        "dual_s": round(dual, 2),
        "dual_over_single": round(dual / single, 2),
        "dual_identical": pair.identical,
        "drill_s": round(ours, 2),
        "reprotest_s": round(theirs, 2),
        "drill_over_reprotest": round(ours / theirs, 2) if theirs else None,
        "verdict": our_verdict,
        "reprotest_verdict": their_verdict,
        "same_verdict": our_verdict == their_verdict,
    }
    if culprits:
        search, found = median_time(1, lambda: drill(True))
        auto, (_, blamed) = median_time(
            1, lambda: run_reprotest(scenario, variations, sde, auto=True)
        )
        row.update(
            culprits=list(found.culprits),
            reprotest_culprits=blamed,
            culprit_drill_s=round(search, 2),
            reprotest_auto_s=round(auto, 2),
            culprit_over_auto=round(search / auto, 2) if auto else None,
        )
    return row


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--subjects", nargs="*", default=None, metavar="NAME")
    parser.add_argument("--culprits", action="store_true", help="also time the culprit search")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    paths = sorted(resource_path("scenarios", "determinism").glob("*.yaml"))
    if args.subjects:
        paths = [p for p in paths if p.stem in args.subjects]
    variations = reprotest_variations()
    print(f"variations (both tools): {', '.join(variations)}", file=sys.stderr)
    rows = []
    for path in paths:
        print(f"benchmarking {path.stem} ...", file=sys.stderr)
        rows.append(bench_subject(path, args.runs, args.culprits, variations))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = (
        f"{'subject':16} {'1 build':>8} {'dual':>7} {'dual/1':>7} {'drill':>7} "
        f"{'reprotest':>9} {'drill/rt':>8}  verdict (ours / reprotest)"
    )
    print(header)
    for r in rows:
        same = "same" if r["same_verdict"] else "DIFFERENT"
        print(
            f"{r['subject']:16} {r['single_s']:7.2f}s {r['dual_s']:6.2f}s "
            f"{r['dual_over_single']:6.2f}x {r['drill_s']:6.2f}s {r['reprotest_s']:8.2f}s "
            f"{r['drill_over_reprotest']:7.2f}x  {r['verdict']} / {r['reprotest_verdict']} ({same})"
        )
        if "culprits" in r:
            print(
                f"{'':16} culprit search {r['culprit_drill_s']:.2f}s "
                f"(culprits: {', '.join(r['culprits']) or 'none'}) vs reprotest --auto-build "
                f"{r['reprotest_auto_s']:.2f}s "
                f"({', '.join(r['reprotest_culprits']) or 'none'}): "
                f"{r['culprit_over_auto']:.2f}x"
            )
    print("targets: dual/1 <= 1.3x; drill/rt <= 1.0x for the same verdict")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
