"""`cihub schema validate FILE.ndjson`: check every pipeline_run line, in constant memory."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from harness import _exit
from harness.errors import ConfigError
from harness.telemetry import SCHEMA_FILE, LineError, validate_ndjson


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("schema", help="validate data against cihub's JSON Schemas")
    actions = parser.add_subparsers(dest="schema_action", metavar="ACTION", required=True)
    validate = actions.add_parser(
        "validate", help=f"validate each line of a pipeline_run NDJSON file ({SCHEMA_FILE})"
    )
    validate.add_argument("file", type=Path, metavar="FILE.ndjson")
    validate.add_argument(
        "--json", action="store_true", help="print the report as JSON on stdout (streamed)"
    )
    validate.set_defaults(handler=_validate)


def _validate(args: argparse.Namespace) -> int:
    path: Path = args.file
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    err = Console(file=sys.stderr)
    if args.json:
        out = sys.stdout
        out.write(json.dumps({"file": str(path), "schema": SCHEMA_FILE})[:-1] + ', "errors": [')
        first = [True]

        def emit(error: LineError) -> None:
            out.write(("\n  " if first[0] else ",\n  ") + json.dumps(error.to_json()))
            first[0] = False

        report = validate_ndjson(path, emit)
        out.write(
            f'\n], "lines": {report.lines}, "invalid_lines": {report.invalid}, '
            f'"valid": {json.dumps(report.valid)}}}\n'
        )
    else:

        def show(error: LineError) -> None:
            err.print(
                f"[bold red]{escape(str(path))}:{error.line}:[/] {escape(error.json_path)}: "
                f"{escape(error.message)}",
                highlight=False,
                soft_wrap=True,
            )

        report = validate_ndjson(path, show)
    if report.valid:
        err.print(
            f"[green]ok[/] {escape(str(path))}: {report.lines} valid line(s)",
            highlight=False,
            soft_wrap=True,
        )
        return _exit.SUCCESS
    err.print(
        f"[bold red]invalid[/] {escape(str(path))}: "
        f"{report.invalid} of {report.lines} line(s) invalid",
        highlight=False,
        soft_wrap=True,
    )
    return _exit.FAILED
