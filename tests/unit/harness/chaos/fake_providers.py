"""Providers for the safe runner's unit tests: they write what happened to a file named in the
configuration (no lab, no Docker)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chaoslib.exceptions import ActivityFailed  # type: ignore[import-untyped]

from harness.chaos.probes import fault_check

Configuration = Mapping[str, Any] | None


def _log(configuration: Configuration, line: str) -> None:
    assert configuration is not None
    with Path(configuration["log"]).open("a") as handle:
        handle.write(line + "\n")


def record(tag: str, configuration: Configuration = None) -> str:
    _log(configuration, tag)
    return tag


def fail(tag: str, configuration: Configuration = None) -> None:
    _log(configuration, tag)
    raise ActivityFailed(f"{tag} failed on purpose")


def flag_is_up(configuration: Configuration = None) -> bool:
    """True until `raise_flag` ran: a steady state the method can break."""
    assert configuration is not None
    return not Path(configuration["log"]).with_suffix(".flag").exists()


def raise_flag(configuration: Configuration = None) -> bool:
    assert configuration is not None
    Path(configuration["log"]).with_suffix(".flag").touch()
    _log(configuration, "flag")
    return True


def echo_marker(configuration: Configuration = None) -> str:
    assert configuration is not None
    _log(configuration, f"marker={configuration.get('marker')}")
    return str(configuration.get("marker"))


@fault_check
def fault_seen(configuration: Configuration = None) -> bool:
    _log(configuration, "fault-seen")
    return True


@fault_check
def fault_not_seen(configuration: Configuration = None) -> bool:
    _log(configuration, "fault-not-seen")
    raise ActivityFailed("the fault is not in effect")


def send_signal(signame: str, configuration: Configuration = None) -> None:
    """Signal this process, then keep working as a long method step would."""
    _log(configuration, f"signal {signame}")
    os.kill(os.getpid(), getattr(signal, signame))
    for _ in range(50):
        time.sleep(0.1)
    _log(configuration, "method went on")


def signal_now(signame: str, tag: str, configuration: Configuration = None) -> str:
    """Signal this process and return at once (a rollback signalled while it runs)."""
    os.kill(os.getpid(), getattr(signal, signame))
    time.sleep(0.05)  # the handler runs in the main thread at its next bytecode
    _log(configuration, tag)
    return tag


def needs_two(first: str, second: int, configuration: Configuration = None) -> str:
    return f"{first}{second}"
