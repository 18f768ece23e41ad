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

Usage: python bench/dr.py [--runs N] [--items N] [--item-bytes N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness.dr.scenario import scenario_from_mapping
from harness.drills import RunSettings, run_drill
from harness.drills.dr import DrDrill
from harness.evidence.signer import KeySigner
from lab import Lab, LabConfig


def cold_start(lab: Lab) -> float:
    """Seconds from `start` of the stopped registry container to healthy through the proxy."""
    container = lab.service_container("registry")
    container.stop(timeout=10)
    started = time.monotonic()
    container.start()
    lab.wait_healthy("registry")
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--items", type=int, default=3, help="items pushed before the backup")
    parser.add_argument("--item-bytes", type=int, default=1 << 20)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cihub-bench-dr-") as tmp:
        folder = Path(tmp)
        config = LabConfig(evidence_dir=folder / "evidence", trust_domain=folder / "trust")
        settings = RunSettings(folder / "evidence", KeySigner.generate())
        scenario = scenario_from_mapping(
            {
                "drill": "registry-restore",
                "items_before_backup": args.items,
                "items_after_backup": 1,
                "item_bytes": args.item_bytes,
            },
            name="bench-registry-restore",
        )
        rto: list[float] = []
        cold: list[float] = []
        whole: list[float] = []
        with Lab(config) as lab:
            cold_start(lab)  # warm the engine's caches once
            for _ in range(args.runs):
                cold.append(cold_start(lab))
                started = time.monotonic()
                run = run_drill(DrDrill(scenario, lab), settings)
                whole.append(time.monotonic() - started)
                if not run.passed:
                    print("\n".join(run.lines()), file=sys.stderr)
                    return 1
                rto.append(float(run.record["dr"]["rto_s"]))
    rto_m, cold_m = statistics.median(rto), statistics.median(cold)
    print(f"runs: {args.runs}, {args.items} items of {args.item_bytes} bytes before the backup")
    print(f"RTO (destroyed -> healthy, restored):  median {rto_m:.3f} s  {_all(rto)}")
    print(f"registry cold start (stop -> healthy): median {cold_m:.3f} s  {_all(cold)}")
    print(f"whole drill:                           median {statistics.median(whole):.3f} s")
    print(f"ratio RTO / cold start: {rto_m / cold_m:.2f}x")
    return 0


def _all(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in values) + "]"


if __name__ == "__main__":
    sys.exit(main())
