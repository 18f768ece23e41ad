"""`cihub export cdevents|otel NDJSON [-o FILE]`: pipeline_run records in standard shapes.

`cdevents` writes CDEvents v0.5 pipelineRun events (queued, started, finished), one JSON event
per line; `otel` writes one OTLP/JSON `ExportTraceServiceRequest` per record, one per line.
Output goes to FILE (written whole or not at all) or stdout. An invalid input line stops the
export with one error line naming `FILE:LINE` and the JSON path, exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from harness import _exit
from harness.evidence._fs import atomic_writer
from harness.records import cdevents, otel, read_records


def _cdevents_lines(record: Mapping[str, Any]) -> Iterator[str]:
    for event in cdevents.events_for(record):
        yield json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def _otel_lines(record: Mapping[str, Any]) -> Iterator[str]:
    yield otel.otlp_json(record)


_FORMATS: dict[str, Callable[[Mapping[str, Any]], Iterator[str]]] = {
    "cdevents": _cdevents_lines,
    "otel": _otel_lines,
}


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "export", help="export pipeline_run records as CDEvents or OTLP/JSON traces"
    )
    parser.add_argument(
        "format",
        choices=sorted(_FORMATS),
        help="cdevents: CDEvents v0.5 pipelineRun events; otel: OTLP/JSON traces",
    )
    parser.add_argument("file", type=Path, metavar="NDJSON", help="a pipeline_run NDJSON file")
    parser.add_argument(
        "-o", "--output", type=Path, default=None, metavar="FILE", help="default: stdout"
    )
    parser.set_defaults(handler=_export)


def _write(records: Iterator[Mapping[str, Any]], lines_of: Any, out: IO[bytes]) -> int:
    count = 0
    for record in records:
        for line in lines_of(record):
            out.write(line.encode() + b"\n")
            count += 1
    return count


def _export(args: argparse.Namespace) -> int:
    lines_of = _FORMATS[args.format]
    records = read_records(args.file)
    if args.output is None:
        try:
            _write(records, lines_of, sys.stdout.buffer)
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader went away (`| head`): say nothing more, as Python's docs advise.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return _exit.FAILED
    else:
        with atomic_writer(args.output) as handle:
            count = _write(records, lines_of, handle)
        print(f"{args.output}: {count} lines", file=sys.stderr)
    return _exit.SUCCESS
