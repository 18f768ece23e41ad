"""The release drill's steps: wall time and share of the total, and the gate's throughput.

Runs the release drill on a sample scenario (default `scenarios/release/sample.yaml`) `--runs`
times through the one runner, signing keylessly through your running lab (or one brought up for
the bench), and prints each step's median wall time and its share of the drill (target: the
policy gate under 5%). Then, with the policies compiled once (the regopy bundle), evaluates the
last run's gate input `--evals` times and prints evaluations per second.

Timings are printed, never asserted (bench/, not tests/).

Usage: python bench/release.py [--scenario FILE] [--runs N] [--evals N] [--lab ID] [--json]
Needs: Docker (builder images and the lab are built on first use).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness._internal.release_services import release_services
from harness.determinism import DrillOptions
from harness.drills import ReleaseDrill, RunSettings, run_drill
from harness.drills._steps import DUAL_BUILD
from harness.drills.release import STEPS, load_release_scenario
from harness.steps.policy import PolicySet, default_policy_dir
from lab.resources import resource_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenario",
        type=Path,
        default=resource_path("scenarios", "release", "sample.yaml"),
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--evals", type=int, default=2000)
    parser.add_argument("--lab", metavar="ID")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    scenario = load_release_scenario(args.scenario)
    totals: list[float] = []
    per_step: dict[str, list[float]] = {s: [] for s in STEPS}
    sub_steps: dict[str, list[float]] = {}
    others: list[float] = []
    gate_input: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="cihub-bench-release-") as tmp:
        evidence = Path(tmp)
        with release_services(
            lab_id=args.lab, evidence_dir=evidence, images="offline", progress=None
        ) as (signer, services):
            for index in range(args.runs):
                drill = ReleaseDrill(scenario, services, DrillOptions())
                start = time.perf_counter()
                run = run_drill(drill, RunSettings(evidence, signer))
                totals.append(time.perf_counter() - start)
                if drill.result is None:
                    print(f"run {index + 1}: {run.detail}", file=sys.stderr)
                    return 2
                for step in STEPS:
                    per_step[step].append(drill.result.step_seconds.get(step, 0.0))
                for sub in drill.steps.rows():
                    if sub.parent == DUAL_BUILD:
                        sub_steps.setdefault(sub.name, []).append(sub.seconds or 0.0)
                others.append(totals[-1] - sum(per_step[step][-1] for step in STEPS))
                gate_input = json.loads((run.bundle / "policy" / "input.json").read_text())
                print(f"run {index + 1}: {totals[-1]:.2f} s, {run.detail}", file=sys.stderr)
    assert gate_input is not None
    policies = PolicySet.load(scenario.policy_dir or default_policy_dir())
    policies.evaluate(gate_input)  # warm
    start = time.perf_counter()
    for _ in range(args.evals):
        policies.evaluate(gate_input)
    evals_per_s = args.evals / (time.perf_counter() - start)
    total = statistics.median(totals)
    rows = {
        step: {
            "median_s": statistics.median(values),
            "share": statistics.median(values) / total if total else 0.0,
        }
        for step, values in per_step.items()
    }
    for name, values in sub_steps.items():
        median = statistics.median(values)
        rows[f"{DUAL_BUILD} > {name}"] = {"median_s": median, "share": median / total}
    other = max(0.0, statistics.median(others))
    rows["runner (evidence, signing the manifest)"] = {"median_s": other, "share": other / total}
    result = {
        "scenario": str(args.scenario),
        "runs": args.runs,
        "total_median_s": total,
        "steps": rows,
        "policy_evals": args.evals,
        "policy_evals_per_s": evals_per_s,
        "gate_share": rows["policy"]["share"],
        "gate_eval_share": (1.0 / evals_per_s) / total if total else 0.0,
        "gate_target": "< 5% of the drill",
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"release drill, {args.runs} run(s), median total {total:.2f} s")
    for step, row in rows.items():
        print(f"  {step:<40} {row['median_s']:7.2f} s  {100 * row['share']:5.1f} %")
    print(
        f"policy step (re-verify signatures, zizmor, evaluate, sign the VSA): "
        f"{100 * result['gate_share']:.1f} % of the drill (target < 5 %); one evaluation: "
        f"{100 * result['gate_eval_share']:.3f} %; "
        f"{evals_per_s:.0f} evaluations/s with the bundle prebuilt ({args.evals} evaluations)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
