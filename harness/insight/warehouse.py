"""The DuckDB side of the report: load pipeline_run NDJSON into `raw.pipeline_run`, read marts.

DuckDB's own JSON reader loads the history (100k records in well under a second) with an
explicit column for every field the staging models read; other fields are left out, and a
record without an optional object (a v1.2 record has no `chaos`) gets NULL there.
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


def load_history(database: Path, files: Sequence[Path], since: datetime | None) -> int:
    """(Re)create `raw.pipeline_run` in `database` from the NDJSON `files`; return its rows.

    Records that started before `since` are left out. The files must already be valid
    pipeline_run NDJSON (see `harness.insight.history.check_history`).

    Raises:
        InfraError: DuckDB could not read a file or write the database.
    """
    where = "" if since is None else "where cast(started_at as timestamptz) >= $since"
    params: dict[str, Any] = {"files": [str(p) for p in files], "columns": RAW_COLUMNS}
    if since is not None:
        params["since"] = since
    try:
        with duckdb.connect(str(database)) as con:
            con.execute("create schema if not exists raw")
            con.execute(
                "create or replace table raw.pipeline_run as select * from read_json("
                "$files, format = 'newline_delimited', columns = $columns,"
                f" maximum_object_size = 16777216) {where}",
                params,
            )
            row = con.execute("select count(*) from raw.pipeline_run").fetchone()
    except duckdb.Error as exc:
        raise InfraError(f"{database}: could not load the history into DuckDB") from exc
    return int(row[0]) if row else 0


def count_rows(database: Path) -> int:
    """The rows of `raw.pipeline_run` in `database`.

    Raises:
        InfraError: the table is missing.
    """
    try:
        with duckdb.connect(str(database), read_only=True) as con:
            row = con.execute("select count(*) from raw.pipeline_run").fetchone()
    except duckdb.Error as exc:
        raise InfraError(f"{database}: cannot read raw.pipeline_run") from exc
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
