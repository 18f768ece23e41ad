"""Sub-commands of `cihub`: each module has `register(subparsers)` and sets `handler`."""

from __future__ import annotations

from types import ModuleType

from harness._commands import evidence as _evidence
from harness._commands import lab as _lab
from harness._commands import policy as _policy
from harness._commands import referrers as _referrers
from harness._commands import rekor as _rekor
from harness._commands import report as _report
from harness._commands import run as _run
from harness._commands import schema as _schema

COMMAND_MODULES: tuple[ModuleType, ...] = (
    _lab,
    _run,
    _evidence,
    _schema,
    _rekor,
    _policy,
    _referrers,
    _report,
)
