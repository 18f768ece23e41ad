"""Sub-commands of `cihub`: each module has `register(subparsers)` and sets `handler`.

Nothing is imported here: a command module pulls in what its command needs (sigstore, docker,
dbt, ...), and `cihub` imports only the module of the command it runs (see `harness._cli`).
"""

from __future__ import annotations

import importlib
from types import ModuleType

COMMAND_NAMES: tuple[str, ...] = (
    "lab",
    "run",
    "evidence",
    "schema",
    "rekor",
    "policy",
    "referrers",
    "report",
)
"""The modules `harness._commands.<name>` whose command is `cihub <name>`, in help order."""


def command_module(name: str) -> ModuleType:
    """The module of `cihub <name>`, imported now."""
    return importlib.import_module(f"{__name__}.{name}")


def __getattr__(name: str) -> tuple[ModuleType, ...]:
    # COMMAND_MODULES imports every command: for callers that want them all (tests, docs).
    if name == "COMMAND_MODULES":
        return tuple(command_module(n) for n in COMMAND_NAMES)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
