"""Build the marts from the SQL dbt compiled them to, without dbt, when only the data changed.

Over 100k records most of a dbt run is dbt itself (seconds of imports, then parsing and
bookkeeping) around SQL that DuckDB runs in about a second. What a model compiles to depends
on the project, the profiles and dbt's versions (`reuse.plan_key`), not on the data: the
models and macros here never query the warehouse while compiling (no `run_query`, no
`is_incremental`; a unit test holds them to that). So a dbt run leaves its plan behind: each
model's compiled SQL, relation and materialization, in dependency order (`plan.json` in the
workspace). A later report over other data, same plan key, runs those statements on DuckDB in
one transaction (as does a first report with the plan cihub ships: `harness.insight.shipped`),
doing what dbt-duckdb's table and view materializations do: the relation
made anew from the compiled select. Only models materialized as a table or a view, without
hooks, make a plan; a project with anything else (incremental, ephemeral, seeds, snapshots,
hooks) gets none, and dbt runs every time. Schema tests (`--dbt-tests`) always run dbt.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb

from harness.insight import reuse

_logger = logging.getLogger(__name__)

_MATERIALIZATIONS = {"table", "view"}


@dataclass(frozen=True)
class CompiledModel:
    """One model as dbt compiled it."""

    unique_id: str
    database: str
    schema: str
    relation: str
    """The quoted relation dbt built, e.g. `"insight"."marts"."mart_dr_trend"`."""
    materialized: str
    sql: str
    depends_on: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """The models of a project in an order that builds what each depends on first."""

    key: str
    models: tuple[CompiledModel, ...]


def plan_from_result(result: Any, key: str) -> Plan | None:
    """The plan of a successful dbt `run` or `build` result (its models; tests are left out),
    or None when a node can't be replayed (see the module's doc)."""
    models: dict[str, CompiledModel] = {}
    for item in getattr(result, "results", None) or ():
        node = item.node
        kind = str(node.resource_type)
        if kind == "test":
            continue
        config = node.config
        if (
            kind != "model"
            or config.materialized not in _MATERIALIZATIONS
            or config.pre_hook
            or config.post_hook
            or not node.compiled_code
            or not node.relation_name
        ):
            _logger.debug("dbt plan: %s (%s) can't be replayed", node.unique_id, kind)
            return None
        models[node.unique_id] = CompiledModel(
            node.unique_id,
            node.database,
            node.schema,
            node.relation_name,
            config.materialized,
            node.compiled_code,
            tuple(node.depends_on.nodes),
        )
    if not models:
        return None
    return Plan(key, tuple(_in_order(models)))


def _in_order(models: dict[str, CompiledModel]) -> list[CompiledModel]:
    """`models` so that every model comes after the models it depends on (sources aside)."""
    ordered: list[CompiledModel] = []
    placed: set[str] = set()

    def place(model: CompiledModel, path: tuple[str, ...]) -> None:
        if model.unique_id in placed:
            return
        if model.unique_id in path:  # dbt refuses cycles; never reached
            raise ValueError(f"dbt plan: cycle through {model.unique_id}")
        for upstream in model.depends_on:
            if upstream in models:
                place(models[upstream], (*path, model.unique_id))
        placed.add(model.unique_id)
        ordered.append(model)

    for unique_id in sorted(models):
        place(models[unique_id], ())
    return ordered


def save(plan: Plan, path: Path) -> None:
    """Write `plan` to `path` (atomically: a reader sees the old plan or the new one, and two
    writers at once each write a whole file of their own first).

    Raises:
        OSError: the folder can't be written.
    """
    text = json.dumps({"key": plan.key, "models": [asdict(m) for m in plan.models]}, indent=1)
    handle, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(partial, 0o644)
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise


def load(path: Path, key: str, builds: Sequence[str] = ()) -> Plan | None:
    """The plan at `path` if it was made with `key` and builds every relation in `builds`
    (`"<database>"."<schema>"."<name>"`, quoted as dbt quotes them); None: none, another key,
    damaged, or a relation left out (a stale or edited plan would leave that mart as it was).

    Its SQL runs as it stands: the plan is as trusted as the workspace or package it is in."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
        if value["key"] != key:
            return None
        models = tuple(
            CompiledModel(**{**m, "depends_on": tuple(m["depends_on"])}) for m in value["models"]
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not models or any(m.materialized not in _MATERIALIZATIONS for m in models):
        return None
    if not set(builds) <= {m.relation for m in models}:
        return None
    return Plan(key, models)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def replay(database: Path, plan: Plan, build_key: str) -> None:
    """Build every model of `plan` in `database` and record `build_key`, all in one
    transaction: a failure leaves the database as it was.

    Raises:
        duckdb.Error: a statement failed (the caller runs dbt instead, for dbt's own word).
    """
    with duckdb.connect(str(database)) as con:
        con.execute("begin transaction")
        try:
            reuse.set_key(con, "build", None)
            for statement in statements(plan.models):
                con.execute(statement)
            reuse.set_key(con, "build", build_key)
        except duckdb.Error:
            con.execute("rollback")
            raise
        con.execute("commit")


def statements(models: Sequence[CompiledModel]) -> list[str]:
    """The SQL that builds `models`, in order."""
    sql = []
    schemas: list[str] = []
    for model in models:
        schema = f"{_quoted(model.database)}.{_quoted(model.schema)}"
        if schema not in schemas:
            schemas.append(schema)
            sql.append(f"create schema if not exists {schema}")
        # the compiled select may end in a `--` comment: the closing parenthesis on a new line
        sql.append(f"create or replace {model.materialized} {model.relation} as (\n{model.sql}\n)")
    return sql
