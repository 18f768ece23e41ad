"""The `cihub` command line: parse, set verbosity, dispatch, and turn errors into exit codes.

People read rich output on stderr; machines read JSON on stdout.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

from rich.console import Console

from harness import _exit
from harness._commands import COMMAND_MODULES
from harness._commands import cache as _cache
from harness._commands import export as _export
from harness._commands import trust as _trust
from harness.errors import CihubError, ConfigError, StepFailed, VerificationFailed
from lab.errors import LabError

_logger = logging.getLogger(__name__)
_OUR_PACKAGES = ("harness", "lab")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cihub",
        description="CI Intelligence Hub: a containerized lab and the drills that run in it.",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="-v: debug logs of cihub; -vv: debug logs of every library too",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (*COMMAND_MODULES, _trust, _cache, _export):
        module.register(commands)
    return parser


def _configure_logging(verbosity: int) -> logging.Handler:
    # One log record, one line: RichHandler wraps long paths and digests across lines (hard to
    # copy), so records go out plain, never wrapped.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)-8s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbosity >= 2 else logging.WARNING)
    for name in _OUR_PACKAGES:
        logging.getLogger(name).setLevel(logging.DEBUG if verbosity >= 1 else logging.INFO)
    return handler


def main(args: Sequence[str] | None = None) -> int:
    """Run `cihub` with `args` (default: the process's arguments) and return the exit code."""
    parsed = _parser().parse_args(args)
    handler = _configure_logging(parsed.verbose)
    err = Console(file=sys.stderr)
    try:
        with _terminate_as_interrupt():
            code: int = parsed.handler(parsed)
        return code
    except ConfigError as exc:
        err.print(f"[bold red]error:[/] {exc.diagnostics()}", highlight=False, soft_wrap=True)
        return _exit.ERROR
    except (CihubError, LabError) as exc:
        _logger.debug("command failed", exc_info=exc)
        err.print(f"[bold red]error:[/] {exc.diagnostics()}", highlight=False, soft_wrap=True)
        return _exit.FAILED if isinstance(exc, StepFailed | VerificationFailed) else _exit.ERROR
    except KeyboardInterrupt as exc:
        why = f" ({exc.args[0]})" if exc.args else ""
        err.print(f"[bold red]interrupted{why}[/]: evidence written so far is kept")
        return _exit.CANCELLED
    finally:
        # main() may run in-process (tests, other tools): leave the root logger as it was.
        logging.getLogger().removeHandler(handler)


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so labs and drills clean up and keep their evidence."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
