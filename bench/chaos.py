"""The safe chaos runner against a bare chaostoolkit-lib `run_experiment`, on a no-op experiment.

Both run the same experiment (a hypothesis of one probe, a method of one action and one probe,
one rollback; every provider a no-op from the standard library) with the same settings
(rollbacks `always`), interleaved, `--runs` times each:

  - bare: `chaoslib.experiment.run_experiment(experiment, settings)`;
  - safe: `SafeRunner(...).run(experiment)`: the fail-fast control, the signal guard, the event
    handler and the verdict read from the journal (the lab sweep is off: no lab here);
  - safe + validation: the same, plus `validate_experiment` (our checks and chaoslib's) each
    time, as `cihub run chaos` does once per run.
Target: safe <= 1.10x bare. Medians are printed; timings are never asserted.

Then (skipped with `--no-rto`; needs Docker) the issue's second figure: the measured RTO of DR
drill 1 (registry-restore) against a cold start of the registry container, over `--rto-runs`
runs on a private lab, by `bench/dr.py`'s own code (`measure_rto`).

Usage: python bench/chaos.py [--runs N] [--rto-runs N | --no-rto] [--json]
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chaoslib.experiment import run_experiment  # type: ignore[import-untyped]
from dr import DrillFailed, measure_rto, rto_lines  # bench/dr.py, next to this file

from harness.chaos import SafeRunner, validate_experiment
from harness.chaos.runner import SETTINGS


def _noop(name: str, kind: str = "action") -> dict[str, Any]:
    return {
        "type": kind,
        "name": name,
        "provider": {
            "type": "python",
            "module": "os.path",
            "func": "isdir",
            "arguments": {"s": "/"},
        },
    }


EXPERIMENT: dict[str, Any] = {
    "title": "no-op",
    "description": "every activity is os.path.isdir('/')",
    "steady-state-hypothesis": {
        "title": "root is a folder",
        "probes": [{**_noop("root-is-a-folder", "probe"), "tolerance": True}],
    },
    "method": [_noop("noop-action"), _noop("noop-probe", "probe")],
    "rollbacks": [_noop("noop-rollback")],
}


def _bare() -> None:
    run_experiment(copy.deepcopy(EXPERIMENT), settings=copy.deepcopy(dict(SETTINGS)))


def _safe() -> None:
    experiment = validate_experiment(EXPERIMENT, Path("noop.json"))
    SafeRunner({}, sweep=False).run(experiment)


_VALIDATED = validate_experiment(EXPERIMENT, Path("noop.json"))


def _safe_run_only() -> None:
    SafeRunner({}, sweep=False).run(_VALIDATED)


def _time(func: Callable[[], None]) -> float:
    started = time.perf_counter()
    func()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--rto-runs", type=int, default=3, help="DR drill 1 runs (Docker)")
    parser.add_argument("--no-rto", action="store_true", help="skip the RTO (no Docker)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # chaoslib logs every activity; not what is measured
    medians, ratios = _overhead(args.runs)
    rto = None
    if not args.no_rto:
        logging.disable(logging.NOTSET)
        try:
            rto = measure_rto(args.rto_runs)
        except DrillFailed as exc:
            print(exc, file=sys.stderr)
            return 1
    if args.json:
        value: dict[str, Any] = {"runs": args.runs, "median_s": medians, "ratio": ratios}
        value["rto"] = rto.to_json() if rto is not None else None
        print(json.dumps(value, indent=2))
        return 0
    for name in medians:
        print(f"{name:16} median {medians[name] * 1000:8.2f} ms  ratio {ratios[name]:.3f}x")
    verdict = "met" if ratios["safe"] <= 1.10 else "NOT met"
    print(f"target safe <= 1.10x bare: {verdict} ({(ratios['safe'] - 1) * 100:+.1f}%)")
    if rto is not None:
        print("DR drill 1 (registry-restore):")
        print("\n".join("  " + line for line in rto_lines(rto)))
    return 0


def _overhead(runs: int) -> tuple[dict[str, float], dict[str, float]]:
    """Median seconds of each candidate over `runs` interleaved rounds, and its ratio to bare."""
    candidates = {"bare": _bare, "safe": _safe_run_only, "safe+validation": _safe}
    seconds: dict[str, list[float]] = {name: [] for name in candidates}
    for func in candidates.values():
        func()  # warm-up: imports, caches
    for _ in range(runs):
        for name, func in candidates.items():
            seconds[name].append(_time(func))
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    return medians, {name: medians[name] / medians["bare"] for name in medians}


if __name__ == "__main__":
    raise SystemExit(main())
