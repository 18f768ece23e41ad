"""The measured RTO of DR drill 1 (registry storage destroyed, restored from the drill's
backup) against a cold start of the registry container.

Prints, over `--runs` runs on one lab (images cached; a private trust domain in a temporary
folder; evidence signed with a throwaway key in a temporary folder), medians of:
  - RTO: the drill's own measurement, from the end of the destruction (storage empty, registry
    stopped) to the registry answering `/v2/` through the fault proxy with the backup restored;
  - cold start: the same registry container stopped, then started until `/v2/` answers through
    the fault proxy (the floor any restore pays);
  - the whole drill (push, cold backup, push, destroy, restore, replay).
Ratio: RTO / cold start (what restoring the storage adds to a restart).
`bench/chaos.py` prints the same figures through `measure_rto` and `rto_lines`.

Usage: python bench/dr.py [--runs N] [--items N] [--item-bytes N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.dr.scenario import scenario_from_mapping
from harness.drills import RunSettings, run_drill
from harness.drills.dr import DrDrill
from harness.evidence.signer import KeySigner
from lab import Lab, LabConfig


@dataclass(frozen=True)
class RtoFigures:
    """Seconds per run: the drill's RTO, the registry's cold start, the whole drill."""

    items: int
    item_bytes: int
    rto: tuple[float, ...]
    cold_start: tuple[float, ...]
    whole: tuple[float, ...]

    @property
    def ratio(self) -> float:
        """Median RTO over median cold start."""
        return statistics.median(self.rto) / statistics.median(self.cold_start)

    def to_json(self) -> dict[str, Any]:
        return {
            "runs": len(self.rto),
            "items": self.items,
            "item_bytes": self.item_bytes,
            "rto_s": list(self.rto),
            "cold_start_s": list(self.cold_start),
            "whole_s": list(self.whole),
            "median_rto_s": statistics.median(self.rto),
            "median_cold_start_s": statistics.median(self.cold_start),
            "ratio": self.ratio,
        }


class DrillFailed(Exception):
    """A registry-restore run did not pass: its figures would mean nothing."""


def cold_start(lab: Lab) -> float:
    """Seconds from `start` of the stopped registry container to healthy through the proxy."""
    container = lab.service_container("registry")
    container.stop(timeout=10)
    started = time.monotonic()
    container.start()
    lab.wait_healthy("registry")
    return time.monotonic() - started


def measure_rto(runs: int, items: int = 3, item_bytes: int = 1 << 20) -> RtoFigures:
    """Bring up a private lab and run DR drill 1 and a registry cold start `runs` times each.

    Raises:
        DrillFailed: a drill run did not pass (its lines are the message).
        LabError: the lab could not be brought up.
    """
    with tempfile.TemporaryDirectory(prefix="cihub-bench-dr-") as tmp:
        folder = Path(tmp)
        config = LabConfig(evidence_dir=folder / "evidence", trust_domain=folder / "trust")
        settings = RunSettings(folder / "evidence", KeySigner.generate())
        scenario = scenario_from_mapping(
            {
                "drill": "registry-restore",
                "items_before_backup": items,
                "items_after_backup": 1,
                "item_bytes": item_bytes,
            },
            name="bench-registry-restore",
        )
        rto: list[float] = []
        cold: list[float] = []
        whole: list[float] = []
        with Lab(config) as lab:
            cold_start(lab)  # warm the engine's caches once
            for _ in range(runs):
                cold.append(cold_start(lab))
                started = time.monotonic()
                run = run_drill(DrDrill(scenario, lab), settings)
                whole.append(time.monotonic() - started)
                if not run.passed:
                    raise DrillFailed("\n".join(run.lines()))
                rto.append(float(run.record["dr"]["rto_s"]))
    return RtoFigures(items, item_bytes, tuple(rto), tuple(cold), tuple(whole))


def rto_lines(figures: RtoFigures) -> list[str]:
    """The figures for people."""
    rto_m, cold_m = statistics.median(figures.rto), statistics.median(figures.cold_start)
    return [
        f"runs: {len(figures.rto)}, {figures.items} items of {figures.item_bytes} bytes "
        "before the backup",
        f"RTO (destroyed -> healthy, restored):  median {rto_m:.3f} s  {_all(figures.rto)}",
        f"registry cold start (stop -> healthy): median {cold_m:.3f} s  {_all(figures.cold_start)}",
        f"whole drill:                           median {statistics.median(figures.whole):.3f} s",
        f"ratio RTO / cold start: {figures.ratio:.2f}x",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--items", type=int, default=3, help="items pushed before the backup")
    parser.add_argument("--item-bytes", type=int, default=1 << 20)
    args = parser.parse_args(argv)
    try:
        figures = measure_rto(args.runs, args.items, args.item_bytes)
    except DrillFailed as exc:
        print(exc, file=sys.stderr)
        return 1
    print("\n".join(rto_lines(figures)))
    return 0


def _all(values: tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in values) + "]"


if __name__ == "__main__":
    sys.exit(main())
