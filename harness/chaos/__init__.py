"""Chaos drills: a safe runner over chaostoolkit-lib, the providers experiments call, and the
lab variables they read.

Experiment files name providers by module: `harness.chaos.actions` (fault-proxy toxics and
container faults of the lab named in the configuration), `harness.chaos.probes` (steady-state
checks and the fault checks that prove a fault took effect) and `harness.chaos.workloads` (the
release traffic the faults hit: pushes and signings). `run_safely` (see `harness.chaos.runner`)
validates an experiment, runs it, always plays its rollbacks and judges the journal.
"""

from __future__ import annotations

from harness.chaos.experiment import Experiment, load_experiment, validate_experiment
from harness.chaos.runner import ChaosOutcome, SafeRunner, lab_faults, restore_lab, run_safely
from harness.chaos.vars import lab_vars

__all__ = [
    "ChaosOutcome",
    "Experiment",
    "SafeRunner",
    "lab_faults",
    "lab_vars",
    "load_experiment",
    "restore_lab",
    "run_safely",
    "validate_experiment",
]
