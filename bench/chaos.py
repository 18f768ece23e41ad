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

Usage: python bench/chaos.py [--runs N] [--json]
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chaoslib.experiment import run_experiment  # type: ignore[import-untyped]

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
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # chaoslib logs every activity; not what is measured
    candidates = {"bare": _bare, "safe": _safe_run_only, "safe+validation": _safe}
    seconds: dict[str, list[float]] = {name: [] for name in candidates}
    for func in candidates.values():
        func()  # warm-up: imports, caches
    for _ in range(args.runs):
        for name, func in candidates.items():
            seconds[name].append(_time(func))
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    ratios = {name: medians[name] / medians["bare"] for name in medians}
    if args.json:
        print(json.dumps({"runs": args.runs, "median_s": medians, "ratio": ratios}, indent=2))
        return 0
    for name in candidates:
        print(f"{name:16} median {medians[name] * 1000:8.2f} ms  ratio {ratios[name]:.3f}x")
    verdict = "met" if ratios["safe"] <= 1.10 else "NOT met"
    print(f"target safe <= 1.10x bare: {verdict} ({(ratios['safe'] - 1) * 100:+.1f}%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
