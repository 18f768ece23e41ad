"""What a report may take over from the previous one, keyed by sha256 digests of its inputs.

Three results are kept in the report's workspace: which NDJSON files passed the schema check
(`checked.json`: path, size, mtime and sha256 of each, and its record count; a file that has
only grown since, its old bytes unchanged and ending a line, has only its new lines checked),
the loaded `raw.pipeline_run` table, and the marts dbt built from it. The database records
the key it was loaded with and the key dbt built with (`cihub_state.keys`); a key is removed
before the work it names starts (a new load starts from an empty database) and written only
after that work succeeded, so an interrupted or failed load or dbt run is never taken for a
finished one. The keys:

- load key: the files' sha256 digests in order, `--since`, the raw columns and DuckDB's version;
  it determines the table, row for row.
- build key: the load key, every file of the dbt project (`models/`), the profiles dbt gets,
  the dbt command and the dbt-core and dbt-duckdb versions.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import duckdb

from harness.errors import ConfigError

_STATE = "cihub_state.keys"
_PROJECT_LEFTOVERS = {"target", "logs", "dbt_packages", ".user.yml", "__pycache__"}


@dataclass(frozen=True)
class FileDigest:
    """An NDJSON file as a report read it."""

    path: Path
    size: int
    mtime_ns: int
    sha256: str
    ends_line: bool = True
    """The file ends with a newline (or is empty): text appended to it starts a new line."""
    prefix: tuple[int, str] | None = None
    """(size, sha256) of the file's first bytes, as `digest_file` was asked for them."""


_CHUNK = 1024 * 1024


def digest_file(path: Path, prefix: int | None = None) -> FileDigest:
    """Stat and hash `path` (hashlib releases the GIL while it hashes), and its first `prefix`
    bytes in the same pass when it is at least that long.

    Raises:
        ConfigError: the file can't be read.
    """
    digest = hashlib.sha256()
    done = 0
    head: tuple[int, str] | None = None
    last = b"\n"
    try:
        with path.open("rb", buffering=0) as handle:
            stat = os.fstat(handle.fileno())
            while True:
                if prefix is not None and head is None and done == prefix:
                    head = (prefix, digest.hexdigest())
                want = _CHUNK if prefix is None or done >= prefix else min(_CHUNK, prefix - done)
                chunk = handle.read(want)
                if not chunk:
                    break
                digest.update(chunk)
                done += len(chunk)
                last = chunk[-1:]
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    return FileDigest(path, done, stat.st_mtime_ns, digest.hexdigest(), last == b"\n", head)


class CheckedFiles:
    """The files that passed the schema check (with `schema`), kept in the JSON file `store`."""

    def __init__(self, store: Path, schema: Path) -> None:
        self.store = store
        self.schema = hashlib.sha256(schema.read_bytes()).hexdigest()
        self._entries: dict[str, dict[str, Any]] = {}
        try:
            value = json.loads(store.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            value = None  # none yet, or damaged: everything is checked again
        if isinstance(value, dict) and value.get("schema") == self.schema:
            files = value.get("files")
            self._entries = files if isinstance(files, dict) else {}

    @staticmethod
    def _entry(file: FileDigest) -> dict[str, Any]:
        return {"size": file.size, "mtime_ns": file.mtime_ns, "sha256": file.sha256}

    def _known(self, path: Path) -> dict[str, Any] | None:
        entry = self._entries.get(str(path.resolve()))
        valid = isinstance(entry, dict) and all(
            isinstance(entry.get(k), t)
            for k, t in (("size", int), ("sha256", str), ("records", int), ("ends_line", bool))
        )
        return entry if valid else None

    def size(self, path: Path) -> int | None:
        """The size `path` had when it passed, if it did."""
        entry = self._known(path)
        return int(entry["size"]) if entry else None

    def records(self, file: FileDigest) -> int | None:
        """The record count of `file` if it passed before with this exact content, else None."""
        entry = self._known(file.path)
        if entry is None:
            return None
        known = {k: entry.get(k) for k in ("size", "mtime_ns", "sha256")}
        return int(entry["records"]) if known == self._entry(file) else None

    def checked_part(self, file: FileDigest) -> tuple[int, int]:
        """(bytes, lines) at the start of `file` that passed before: all of a file that passed
        and has since only grown by whole lines, else (0, 0)."""
        entry = self._known(file.path)
        if entry is None or file.prefix is None or not entry["ends_line"]:
            return (0, 0)
        if file.prefix != (entry["size"], entry["sha256"]) or file.size <= entry["size"]:
            return (0, 0)
        return (int(entry["size"]), int(entry["records"]))

    def remember(self, file: FileDigest, records: int) -> None:
        self._entries[str(file.path.resolve())] = {
            **self._entry(file),
            "records": records,
            "ends_line": file.ends_line,
        }

    def save(self) -> None:
        text = json.dumps({"schema": self.schema, "files": self._entries}, sort_keys=True)
        partial = self.store.with_name(self.store.name + ".partial")
        partial.write_text(text, encoding="utf-8")
        partial.replace(self.store)


def _sha256(parts: Iterable[str | bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))  # framed: ("ab", "c") != ("a", "bc")
        digest.update(data)
    return digest.hexdigest()


def load_key(files: Sequence[FileDigest], since: datetime | None, columns: Any) -> str:
    """The key of the table loaded from `files` with `since` and `columns`."""
    return _sha256(
        [
            "load",
            duckdb.__version__,
            json.dumps(columns, sort_keys=True),
            since.isoformat() if since else "",
            *(f.sha256 for f in files),
        ]
    )


def project_digest(project: Path) -> str:
    """A digest of every file of the dbt project at `project` (names and contents)."""
    parts: list[str | bytes] = []
    for path in sorted(project.rglob("*")):
        relative = path.relative_to(project)
        if path.is_file() and not _PROJECT_LEFTOVERS.intersection(relative.parts):
            parts += [relative.as_posix(), path.read_bytes()]
    return _sha256(parts)


def build_key(load: str, project: Path, profiles: Path, command: str) -> str:
    """The key of dbt's `command` over the table loaded with key `load`."""
    versions = [metadata.version(d) for d in ("dbt-core", "dbt-duckdb")]
    return _sha256(
        ["build", load, project_digest(project), profiles.read_bytes(), command, *versions]
    )


def stored_key(database: Path, name: str) -> str | None:
    """The key `name` ("load" or "build") the database holds, None when it has none."""
    if not database.exists():
        return None
    try:
        with duckdb.connect(str(database), read_only=True) as con:
            row = con.execute(f"select value from {_STATE} where name = ?", [name]).fetchone()
    except duckdb.Error:  # no state table yet, or a database this DuckDB can't read
        return None
    return str(row[0]) if row else None


def set_key(con: duckdb.DuckDBPyConnection, name: str, value: str | None) -> None:
    """Record (or, with None, remove) key `name` through `con`."""
    con.execute("create schema if not exists cihub_state")
    con.execute(f"create table if not exists {_STATE} (name varchar primary key, value varchar)")
    con.execute(f"delete from {_STATE} where name = ?", [name])
    if value is not None:
        con.execute(f"insert into {_STATE} values (?, ?)", [name, value])


def write_key(database: Path, name: str, value: str | None) -> None:
    """`set_key` in a connection of its own."""
    with duckdb.connect(str(database)) as con:
        set_key(con, name, value)
