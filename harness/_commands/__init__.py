"""Sub-commands of `cihub`. Each module has `register(subparsers)` and sets `handler(args) -> int`."""

from __future__ import annotations

from types import ModuleType

from harness._commands import lab as _lab

COMMAND_MODULES: tuple[ModuleType, ...] = (_lab,)
