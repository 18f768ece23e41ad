"""What a report may take over from the previous one, keyed by sha256 digests of its inputs.

Four results are kept in the report's workspace: which NDJSON files passed the schema check
(`checked.json`: path, size, mtime and sha256 of each, and its record count), the loaded
history (`raw.pipeline_run_all`), the SQL dbt compiled the models to (`plan.json`, see
`harness.insight.replay`) and the marts built from the history. A file that has only grown
since, its old bytes unchanged and ending a line, has only its new lines checked and loaded.
The database records what it holds (`cihub_state.keys`); a key is removed before the work it
names starts (a new load starts from an empty database, an append runs in one transaction with
its key) and written only after that work succeeded, so an interrupted or failed load or build
is never taken for a finished one. The keys:

- loaded: each file's path, size, sha256 and whether it ended a line, in order, with the raw
  columns and DuckDB's version: what the history table holds.
- data key: the files' sha256 digests in order, `--since`, the raw columns and DuckDB's
  version; it determines the dbt source (`raw.pipeline_run`), row for row.
- plan key: every file of the dbt project (`models/`), the profiles dbt gets (the database's
  file name, not its folder) and the versions of dbt-core, dbt-duckdb, dbt-adapters and
  dbt-common; it determines the SQL dbt compiles, in any workspace.
- build key: the data key, the plan key and the dbt command.
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
    heads: tuple[tuple[int, str], ...] = ()
    """(size, sha256) of the file's first bytes, for each size `digest_file` was asked for
    that the file reaches."""

    def head(self, size: int) -> str | None:
        """The sha256 of the first `size` bytes, if `digest_file` was asked for it."""
        return dict(self.heads).get(size)


_CHUNK = 1024 * 1024


def digest_file(path: Path, *prefixes: int | None) -> FileDigest:
    """Stat and hash `path` (hashlib releases the GIL while it hashes), and its first bytes up
    to each of `prefixes` (None: none) in the same pass, where it is at least that long.

    Raises:
        ConfigError: the file can't be read.
    """
    digest = hashlib.sha256()
    wanted = sorted({p for p in prefixes if p is not None and p >= 0})
    heads: list[tuple[int, str]] = []
    done = 0
    last = b"\n"
    try:
        with path.open("rb", buffering=0) as handle:
            stat = os.fstat(handle.fileno())
            while True:
                while wanted and wanted[0] <= done:
                    if wanted.pop(0) == done:
                        heads.append((done, digest.hexdigest()))
                want = min(_CHUNK, wanted[0] - done) if wanted else _CHUNK
                chunk = handle.read(want)
                if not chunk:
                    break
                digest.update(chunk)
                done += len(chunk)
                last = chunk[-1:]
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    return FileDigest(path, done, stat.st_mtime_ns, digest.hexdigest(), last == b"\n", tuple(heads))


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
        if entry is None or not entry["ends_line"] or file.size <= entry["size"]:
            return (0, 0)
        if file.head(int(entry["size"])) != entry["sha256"]:
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


def _columns_key(columns: Any) -> str:
    return _sha256(["columns", duckdb.__version__, json.dumps(columns, sort_keys=True)])


def loaded_state(files: Sequence[FileDigest], columns: Any) -> str:
    """What the history holds once loaded from `files` with `columns` (the "loaded" key)."""
    entries = [[str(f.path.resolve()), f.size, f.sha256, f.ends_line] for f in files]
    return json.dumps({"columns": _columns_key(columns), "files": entries})


def _loaded_files(stored: str | None, columns: Any) -> list[tuple[str, int, str, bool]] | None:
    try:
        value = json.loads(stored) if stored else None
    except ValueError:
        return None
    if not isinstance(value, dict) or value.get("columns") != _columns_key(columns):
        return None
    entries = value.get("files")
    if not isinstance(entries, list):
        return None
    files = []
    for entry in entries:
        if not (
            isinstance(entry, list)
            and len(entry) == 4
            and [type(v) for v in entry] == [str, int, str, bool]
        ):
            return None
        files.append((entry[0], entry[1], entry[2], entry[3]))
    return files


def loaded_sizes(stored: str | None, columns: Any) -> dict[Path, int]:
    """The size each file had when the history (the "loaded" key `stored`) took it in."""
    return {Path(path): size for path, size, _, _ in _loaded_files(stored, columns) or ()}


def tails_to_load(
    stored: str | None, files: Sequence[FileDigest], columns: Any
) -> list[tuple[FileDigest, int]] | None:
    """What the history (the "loaded" key `stored`) lacks to hold `files`: (file, offset) of
    each file that only grew by whole lines since it was loaded, [] when it holds them all
    already; None when it must be loaded anew (another file, order or content, other columns).
    `files` must have been digested with the loaded sizes as prefixes (`loaded_sizes`)."""
    loaded = _loaded_files(stored, columns)
    if loaded is None or len(loaded) != len(files):
        return None
    tails = []
    for (path, size, sha256, ends_line), file in zip(loaded, files, strict=True):
        if path != str(file.path.resolve()):
            return None
        if (file.size, file.sha256) == (size, sha256):
            continue
        if not ends_line or file.size <= size or file.head(size) != sha256:
            return None
        tails.append((file, size))
    return tails


def data_key(files: Sequence[FileDigest], since: datetime | None, columns: Any) -> str:
    """The key of the dbt source over `files` with `since` and `columns`."""
    return _sha256(
        [
            "data",
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


_DBT_DISTRIBUTIONS = ("dbt-core", "dbt-duckdb", "dbt-adapters", "dbt-common")
"""What the compiled SQL depends on: the compiler, the adapter, the relation rendering and
global macros (dbt-adapters) and the Jinja rendering (dbt-common)."""


def plan_key(project: Path, profiles: str) -> str:
    """The key of the SQL dbt compiles the project at `project` to with the profiles
    `profiles` (`dbt.plan_profiles_text`: no workspace folder in it)."""
    versions = [f"{d}=={metadata.version(d)}" for d in _DBT_DISTRIBUTIONS]
    return _sha256(["plan", project_digest(project), profiles, *versions])


def build_key(data: str, plan: str, command: str) -> str:
    """The key of dbt's `command`, with plan key `plan`, over the source with key `data`."""
    return _sha256(["build", data, plan, command])


def stored_keys(database: Path) -> dict[str, str]:
    """The keys the database holds (none when it has no state or can't be read)."""
    if not database.exists():
        return {}
    try:
        with duckdb.connect(str(database), read_only=True) as con:
            rows = con.execute(f"select name, value from {_STATE}").fetchall()
    except duckdb.Error:  # no state table yet, or a database this DuckDB can't read
        return {}
    return {str(name): str(value) for name, value in rows}


def stored_key(database: Path, name: str) -> str | None:
    """The key `name` the database holds, None when it has none."""
    return stored_keys(database).get(name)


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


def write_keys(database: Path, keys: dict[str, str | None]) -> None:
    """`set_key` for each of `keys`, in one transaction of a connection of its own."""
    with duckdb.connect(str(database)) as con:
        con.execute("begin transaction")
        for name, value in keys.items():
            set_key(con, name, value)
        con.execute("commit")
