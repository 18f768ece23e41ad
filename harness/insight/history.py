"""Which pipeline_run NDJSON a report reads, whether every line of it is a valid record, and
the `--since` window.

Every line is checked against schema/pipeline_run.v1.4.json (v1.2-1.4 records are valid 1.x
records) before anything is loaded: the first bad line stops the report with one line naming
the file, the line and the field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from harness import telemetry
from harness.errors import ConfigError

_SPAN = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def history_files(evidence_dir: Path) -> list[Path]:
    """The pipeline_run NDJSON files of an evidence folder (none yet: an empty list).

    Raises:
        ConfigError: `evidence_dir` is not a folder.
    """
    if not evidence_dir.is_dir():
        raise ConfigError(f"{evidence_dir}: no such evidence folder")
    return sorted(p for p in evidence_dir.glob("pipeline_run*.ndjson") if p.is_file())


class _FirstError(Exception):
    def __init__(self, error: telemetry.LineError) -> None:
        super().__init__(str(error))
        self.error = error


def check_history(
    files: Sequence[Path], *, skip: tuple[int, int] = (0, 0), limit: int | None = None
) -> int:
    """Check that every line of `files` is a valid pipeline_run record; return the count.

    Args:
        files: the NDJSON files.
        skip: (bytes, lines) at the start of each file already checked (an appended file's
            old part): checking starts after them, the count and line numbers include them.
        limit: check each file only up to this size in bytes (the size it was digested and
            loaded at: lines a drill appends meanwhile wait for the next report).

    Raises:
        ConfigError: a file can't be read, or a line is not a valid record: the message is
            `FILE:LINE: FIELD: what is wrong`, for the first such line.
    """
    offset, lines_before = skip
    total = 0
    for path in files:

        def stop(error: telemetry.LineError) -> None:
            raise _FirstError(error)

        try:
            with path.open("rb", buffering=1024 * 1024) as handle:
                handle.seek(offset)
                lines = handle if limit is None else _lines_upto(handle, limit - offset)
                total += lines_before + telemetry.validate_lines(lines, stop)[0]
        except _FirstError as exc:
            err = exc.error
            line = lines_before + err.line
            raise ConfigError(f"{path}:{line}: {err.json_path}: {err.message}") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    return total


def _lines_upto(handle: Iterable[bytes], size: int) -> Iterator[bytes]:
    """The lines of `handle` within its next `size` bytes (a line cut there is cut short)."""
    for line in handle:
        if size <= 0:
            return
        yield line[:size]
        size -= len(line)


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """The start of the window `--since` names: a span back from `now` (`90m`, `36h`, `7d`,
    `2w`) or an ISO 8601 date or time (UTC unless it says otherwise).

    Raises:
        ConfigError: `value` is neither.
    """
    now = now or datetime.now(UTC)
    match = _SPAN.match(value.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(
            f"--since {value!r}: expected a span such as 7d, 36h, 90m, 2w or an ISO date"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
