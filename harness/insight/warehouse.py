"""The DuckDB side of the report: load pipeline_run NDJSON, show the window, read marts.

DuckDB's own JSON reader loads the history into `raw.pipeline_run_all` with an explicit column
for every field the staging models read; other fields are left out, and a record without an
optional object (a v1.2 record has no `chaos`) gets NULL there. Lines appended to a file since
it was loaded are added to that table (`append_history`), not the whole history read again.
`raw.pipeline_run`, the dbt source, is a view of the records in the `--since` window, so
another window needs no new load.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from harness.errors import InfraError

_RESULT = "VARCHAR"
RAW_COLUMNS: dict[str, str] = {
    "schema_version": "VARCHAR",
    "run_id": "VARCHAR",
    "session_id": "VARCHAR",
    "pipeline": "STRUCT(name VARCHAR, url VARCHAR)",
    "scenario": "STRUCT(name VARCHAR, kind VARCHAR)",
    "started_at": "VARCHAR",
    "finished_at": "VARCHAR",
    "duration_s": "DOUBLE",
    "status": "VARCHAR",
    "result": _RESULT,
    "subject": "STRUCT(vcs STRUCT(repository_url VARCHAR, ref_name VARCHAR, revision VARCHAR,"
    " dirty BOOLEAN), artifacts STRUCT(name VARCHAR, digest VARCHAR)[])",
    "steps": f"STRUCT(name VARCHAR, result {_RESULT}, duration_s DOUBLE)[]",
    "evidence": "STRUCT(bundle_path VARCHAR, manifest_digest VARCHAR, complete BOOLEAN)",
    "determinism": "STRUCT(verdict VARCHAR, culprits VARCHAR[])",
    "expectation": "STRUCT(observed VARCHAR, expected VARCHAR, met BOOLEAN)",
    "chaos": "STRUCT(experiment VARCHAR, status VARCHAR, fault_verified BOOLEAN,"
    " recovery_s DOUBLE)",
    "dr": "STRUCT(drill VARCHAR, target VARCHAR, rto_s DOUBLE,"
    " rpo STRUCT(items_lost BIGINT, seconds_since_backup DOUBLE), consistent BOOLEAN)",
}
"""The raw table's columns: what `models/staging` reads of a pipeline_run record."""


ALL_RECORDS = "raw.pipeline_run_all"
"""Every record of the files loaded, whatever the window."""
IN_WINDOW = "raw.pipeline_run"
"""The dbt source: a view of the records of `ALL_RECORDS` in the window."""

_READ_JSON = (
    "select * from read_json($files, format = 'newline_delimited', columns = $columns,"
    " maximum_object_size = 16777216)"
)


def load_history(database: Path, files: Sequence[Path], since: datetime | None) -> int:
    """(Re)create the history in `database` from the NDJSON `files`, with the window opening
    at `since` (None: all of it); return the records in the window.

    The files must already be valid pipeline_run NDJSON (see
    `harness.insight.history.check_history`).

    Raises:
        InfraError: DuckDB could not read a file or write the database.
    """
    params: dict[str, Any] = {"files": [str(p) for p in files], "columns": RAW_COLUMNS}
    try:
        with duckdb.connect(str(database)) as con:
            con.execute("create schema if not exists raw")
            con.execute(f"create or replace table {ALL_RECORDS} as {_READ_JSON}", params)
            return set_window(con, since)
    except duckdb.Error as exc:
        raise InfraError(f"{database}: could not load the history into DuckDB") from exc


def append_history(con: duckdb.DuckDBPyConnection, tails: Sequence[Path]) -> None:
    """Add the records of the NDJSON files `tails` (lines appended to loaded files, copied out)
    to the history, in `con`'s transaction.

    Raises:
        duckdb.Error: DuckDB could not read a file or write the table.
    """
    if tails:
        params = {"files": [str(p) for p in tails], "columns": RAW_COLUMNS}
        con.execute(f"insert into {ALL_RECORDS} {_READ_JSON}", params)


def set_window(con: duckdb.DuckDBPyConnection, since: datetime | None) -> int:
    """Point the dbt source at the records started at or after `since` (None: all); return
    how many there are.

    Raises:
        duckdb.Error: the history table is missing.
    """
    # a view's text can't hold parameters: the literal comes from a datetime, never from input
    where = (
        ""
        if since is None
        else f" where cast(started_at as timestamptz) >= timestamptz '{since.isoformat()}'"
    )
    con.execute(f"create or replace view {IN_WINDOW} as select * from {ALL_RECORDS}{where}")
    row = con.execute(f"select count(*) from {IN_WINDOW}").fetchone()
    return int(row[0]) if row else 0


def count_rows(database: Path) -> int:
    """The records in the window (`raw.pipeline_run`) in `database`.

    Raises:
        InfraError: the view is missing.
    """
    try:
        with duckdb.connect(str(database), read_only=True) as con:
            row = con.execute(f"select count(*) from {IN_WINDOW}").fetchone()
    except duckdb.Error as exc:
        raise InfraError(f"{database}: cannot read {IN_WINDOW}") from exc
    return int(row[0]) if row else 0


def read_table(
    database: Path, relation: str, columns: Sequence[str], order_by: str
) -> list[tuple[Any, ...]]:
    """The rows of `relation` (schema.table) in `database`, `columns` in that order.

    Raises:
        InfraError: the relation or a column is missing (the models and the report disagree).
    """
    cols = ", ".join(f'"{c}"' for c in columns)
    try:
        with duckdb.connect(str(database), read_only=True) as con:
            return con.execute(f"select {cols} from {relation} order by {order_by}").fetchall()
    except duckdb.Error as exc:
        raise InfraError(f"{database}: cannot read {relation}") from exc


def read_tables(
    database: Path, queries: Sequence[tuple[str, Sequence[str], str]]
) -> list[list[tuple[Any, ...]]]:
    """`read_table` for each (relation, columns, order_by) of `queries`, through one
    connection (each connection opens the database anew).

    Raises:
        InfraError: a relation or a column is missing (the models and the report disagree).
    """
    rows = []
    try:
        with duckdb.connect(str(database), read_only=True) as con:
            for relation, columns, order_by in queries:
                cols = ", ".join(f'"{c}"' for c in columns)
                try:
                    rows.append(
                        con.execute(f"select {cols} from {relation} order by {order_by}").fetchall()
                    )
                except duckdb.Error as exc:
                    raise InfraError(f"{database}: cannot read {relation}") from exc
    except duckdb.Error as exc:
        raise InfraError(f"{database}: cannot open it") from exc
    return rows
