"""The `cihub` command line: parse, set verbosity, dispatch, and turn errors into exit codes.

People read rich output on stderr; machines read JSON on stdout.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType, ModuleType

from rich.console import Console

from harness import _exit
from harness._commands import COMMAND_NAMES, command_module
from harness.errors import CihubError, ConfigError, StepFailed, VerificationFailed
from lab.errors import LabError

_logger = logging.getLogger(__name__)
_OUR_PACKAGES = ("harness", "lab")

# Every command's one-line help, so `cihub --help` lists them without importing any command
# module (together they import sigstore, docker, dbt, jsonschema, OpenTelemetry, ...: seconds).
# tests/unit/harness/test_cli_startup.py checks these against what each module registers.
_HELP: dict[str, str] = {
    "lab": "bring the containerized lab up or down",
    "run": "run a drill (determinism, release, ...)",
    "evidence": "pack, verify or show an evidence bundle (offline)",
    "schema": "validate data against cihub's JSON Schemas",
    "rekor": "watch a Rekor transparency log",
    "policy": "evaluate and test the release gate's policies",
    "referrers": "list the OCI referrers of a manifest (referrers API or tag-schema fallback)",
    "report": "Insight marts over pipeline_run history: tables, an HTML page with charts",
    "trust": "the durable trust domain an auditor pins",
    "cache": "record and verify signed manifests of caches",
    "export": "export pipeline_run records as CDEvents or OTLP/JSON traces",
}
_EXTRA_COMMANDS = ("trust", "cache", "export")


def _command_names() -> tuple[str, ...]:
    return (*COMMAND_NAMES, *_EXTRA_COMMANDS)


def __getattr__(name: str) -> tuple[ModuleType, ...]:
    # Every command module, imported now: for tests that look for or add a command.
    if name == "COMMAND_MODULES":
        return tuple(command_module(n) for n in _command_names())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _command_in(args: Sequence[str]) -> str | None:
    """The command `args` names: the first word that is not an option (`-v` takes no value)."""
    word = next((a for a in args if not a.startswith("-")), None)
    return word if word in _HELP else None


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only `command`'s module is imported and registered (None: none of them),
    the other commands are listed by name and help."""
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
    for name in _command_names():
        if name == command:
            importlib.import_module(f"harness._commands.{name}").register(commands)
        else:
            commands.add_parser(name, help=_HELP[name])
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
    err = Console(file=sys.stderr)
    handler: logging.Handler | None = None
    try:
        # First of all, so a SIGTERM while the command's modules load (or anywhere before a
        # drill takes the signals over) is the same clean exit 130 as later, not a bare 143.
        with _terminate_as_interrupt():
            argv = list(sys.argv[1:] if args is None else args)
            parsed = _parser(_command_in(argv)).parse_args(argv)
            handler = _configure_logging(parsed.verbose)
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
        if handler is not None:
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
