"""Read pipeline_run NDJSON for the exports: one valid record per line, or one clear error."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness.errors import ConfigError
from harness.telemetry import validator


def _no_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python's parser takes them unless told not to.
    raise ValueError(f"{name} is not valid JSON")


def parse_line(raw: bytes, where: str) -> dict[str, Any]:
    """The record on one NDJSON line, checked against the pipeline_run schema.

    Raises:
        ConfigError: not JSON, or not a pipeline_run record; the message starts with `where`
            (`FILE:LINE`) and names the JSON path of the first problem.
    """
    if not raw.strip():
        raise ConfigError(f"{where}: $: empty line")
    try:
        value = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise ConfigError(f"{where}: $: not valid JSON: nested too deeply") from None
    except ValueError as exc:  # also UnicodeDecodeError
        raise ConfigError(f"{where}: $: not valid JSON: {exc}") from None
    errors = validator().errors(value)
    if errors:
        raise ConfigError(f"{where}: {errors[0].json_path}: {errors[0].message}")
    if not isinstance(value, dict):  # pragma: no cover - the schema requires an object
        raise ConfigError(f"{where}: $: not an object")
    return value


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the records of the pipeline_run NDJSON file `path`, one line at a time.

    Raises:
        ConfigError: the file cannot be read, or a line is not a valid record (the message
            names `FILE:LINE` and the JSON path); records before it have been yielded.

    Example:
        >>> for record in read_records(Path("evidence/pipeline_run.ndjson")):
        ...     print(record["run_id"])
    """
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from exc
    with handle:
        for number, raw in enumerate(handle, 1):
            yield parse_line(raw, f"{path}:{number}")


def http_url(value: object) -> str | None:
    """`value` if it is an absolute http(s) URL without credentials, else None."""
    if not isinstance(value, str):
        return None
    parts = urlsplit(value)
    if parts.scheme in ("http", "https") and parts.hostname and not parts.username:
        return value
    return None


def run_url(record: Mapping[str, Any]) -> str | None:
    """Where a person sees the run: `pipeline.url`, else the CI job's URL (http(s) only).

    `record` is a validated pipeline_run record (`runner` and `runner.ci` are objects)."""
    job_url = record.get("runner", {}).get("ci", {}).get("job_url")
    return http_url(record["pipeline"].get("url")) or http_url(job_url)
