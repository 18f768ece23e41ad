"""A report from pipeline_run history: check the NDJSON, load it, build the marts, read them.

What the previous report already did is not done again (see `harness.insight.reuse`): a file
whose path, size, mtime and sha256 passed the check before is not checked again, and one that
only grew by whole lines has only its new lines checked and loaded; the marts are not built
again over the same records with the same project (`Report.dbt` says "reused"); and over new
records with the same project they are built from the SQL dbt compiled last time, without dbt
("replayed", see `harness.insight.replay`); a first report replays the plan shipped with cihub
(`harness.insight.shipped`) when it was compiled from the same project with the same dbt. dbt
itself runs ("ran") when no plan has the project's key (edited models, another dbt version),
when a replay fails, and with `--dbt-tests`. What must run overlaps: importing dbt (seconds
of module loading, in a thread, only when dbt will run), the schema check (in this thread) and
a whole load (in a thread; DuckDB releases the GIL). A load is kept only once every line has
passed the check: a bad line is reported as FILE:LINE, whatever DuckDB made of it, and no mart
is built.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from harness.errors import ConfigError, InfraError
from harness.insight import dbt, replay, reuse, shipped, warehouse
from harness.insight.history import check_history
from harness.insight.marts import MARTS, Mart
from harness.telemetry import SCHEMA_FILE
from lab.resources import resource_path

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Report:
    """What a report found: records read and in the window, and every mart."""

    files: tuple[Path, ...]
    records: int
    in_window: int
    since: datetime | None
    marts: tuple[Mart, ...]
    dbt: str | None = None
    """"ran" (dbt built the marts), "replayed" (the SQL dbt compiled the same project to last
    time built them, without dbt) or "reused" (the marts of the previous report, same records
    and project); None when no mart was built (nothing in the window)."""

    @property
    def empty(self) -> bool:
        return self.in_window == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "files": [str(p) for p in self.files],
            "records": self.records,
            "in_window": self.in_window,
            "since": self.since.isoformat() if self.since else None,
            "marts": {m.spec.name: m.records() for m in self.marts},
            "dbt": self.dbt,
        }


def build_report(
    files: Sequence[Path],
    since: datetime | None = None,
    *,
    workspace_root: Path | None = None,
    dbt_tests: bool = False,
    shipped_plan: Path | None = shipped.SHIPPED_PLAN,
) -> Report:
    """Build the marts over the records in `files` that started at or after `since`.

    Args:
        files: pipeline_run NDJSON files.
        since: leave out records that started before it.
        workspace_root: dbt's folder (default: `<cihub cache>/insight`).
        dbt_tests: also run the models' schema tests (`dbt build` instead of `dbt run`).
        shipped_plan: the plan to replay when the workspace has none with the project's key
            (None: dbt runs then).

    Raises:
        ConfigError: a file is unreadable or holds an invalid record (named FILE:LINE).
        InfraError: DuckDB or dbt failed.
    """
    empty = tuple(Mart(spec) for spec in MARTS)
    if not files:
        return Report((), 0, 0, since, empty)
    command = "build" if dbt_tests else "run"
    columns = warehouse.RAW_COLUMNS
    with dbt.workspace(workspace_root) as space:
        checked = reuse.CheckedFiles(
            space.root / "checked.json", resource_path("schema", SCHEMA_FILE)
        )
        keys = reuse.stored_keys(space.database)
        loaded_sizes = reuse.loaded_sizes(keys.get("loaded"), columns)
        digests = [
            reuse.digest_file(path, checked.size(path), loaded_sizes.get(path.resolve()))
            for path in files
        ]
        tails = reuse.tails_to_load(keys.get("loaded"), digests, columns)
        data_key = reuse.data_key(digests, since, columns)
        plan_key = shipped.plan_key(space)
        build_key = reuse.build_key(data_key, plan_key, command)
        same_data = tails == [] and keys.get("data") == data_key
        built = same_data and keys.get("build") == build_key
        plan = None
        if command == "run" and not built:
            relations = [dbt.quoted_relation(space.database, spec.relation) for spec in MARTS]
            plan = replay.load(space.plan, plan_key, relations)
            if plan is None and shipped_plan is not None:
                plan = replay.load(shipped_plan, plan_key, relations)
        if not built and plan is None:
            threading.Thread(target=dbt.preload, name="dbt-import", daemon=True).start()
        if tails is None:
            records = _load_all(space, digests, since, checked)
            reuse.write_keys(
                space.database,
                {"loaded": reuse.loaded_state(digests, columns), "data": data_key},
            )
        else:
            records = _check(digests, checked)
            if not same_data:
                _append(
                    space,
                    tails,
                    since,
                    {"loaded": reuse.loaded_state(digests, columns), "data": data_key},
                )
        checked.save()
        in_window = warehouse.count_rows(space.database)
        if in_window == 0:
            return Report(tuple(files), records, 0, since, empty)
        how = "reused" if built else _build(space, command, plan, plan_key, build_key)
        tables = warehouse.read_tables(
            space.database, [(spec.relation, spec.columns, spec.order_by) for spec in MARTS]
        )
        marts = tuple(Mart(spec, tuple(rows)) for spec, rows in zip(MARTS, tables, strict=True))
    _logger.debug("report: %d records, %d in the window, dbt %s", records, in_window, how)
    return Report(tuple(files), records, in_window, since, marts, how)


def _load_all(
    space: dbt.Workspace,
    digests: Sequence[reuse.FileDigest],
    since: datetime | None,
    checked: reuse.CheckedFiles,
) -> int:
    """Load the history anew (in a thread) while its files are checked; return the records.

    Both read each file only up to the size it was digested at (DuckDB from a copy of that
    much): a record a drill appends meanwhile is left for the next report's tail, never loaded
    twice or unchecked.
    """
    scratch = space.root / "snapshot"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        copies = [_copy_tail(d, 0, scratch / f"{i}.ndjson") for i, d in enumerate(digests)]
        with ThreadPoolExecutor(1, thread_name_prefix="duckdb-load") as pool:
            database = space.fresh_database()
            loading = pool.submit(warehouse.load_history, database, copies, since)
            try:
                records = _check(digests, checked)
            finally:
                loading.exception()  # wait for it: DuckDB never writes on behind an error
            loading.result()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return records


def _append(
    space: dbt.Workspace,
    tails: Sequence[tuple[reuse.FileDigest, int]],
    since: datetime | None,
    keys: dict[str, str],
) -> None:
    """Add the checked `tails` to the history, set the window and record `keys`, all in one
    transaction (the marts' build key is removed in it).

    Raises:
        InfraError: DuckDB could not read a tail or write the database.
    """
    scratch = space.root / "tails"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        copies = [
            _copy_tail(file, offset, scratch / f"{i}.ndjson")
            for i, (file, offset) in enumerate(tails)
        ]
        with duckdb.connect(str(space.database)) as con:
            con.execute("begin transaction")
            reuse.set_key(con, "build", None)
            warehouse.append_history(con, copies)
            warehouse.set_window(con, since)
            for name, value in keys.items():
                reuse.set_key(con, name, value)
            con.execute("commit")
    except duckdb.Error as exc:
        raise InfraError(f"{space.database}: could not add new records to the history") from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _copy_tail(file: reuse.FileDigest, offset: int, dest: Path) -> Path:
    """Copy the bytes of `file` from `offset` to the size it was digested at into `dest`."""
    try:
        with file.path.open("rb") as source, dest.open("wb") as out:
            source.seek(offset)
            left = file.size - offset
            while left > 0:
                chunk = source.read(min(left, 1024 * 1024))
                if not chunk:
                    break
                out.write(chunk)
                left -= len(chunk)
    except OSError as exc:
        raise ConfigError(f"{file.path}: cannot read it ({exc.strerror or exc})") from None
    return dest


def _build(
    space: dbt.Workspace,
    command: str,
    plan: replay.Plan | None,
    plan_key: str,
    build_key: str,
) -> str:
    """Build the marts: from `plan` when there is one ("replayed"), else with dbt ("ran")."""
    if plan is not None:
        try:
            replay.replay(space.database, plan, build_key)
            return "replayed"
        except duckdb.Error as exc:  # dbt runs instead and has the last word on what failed
            _logger.debug("replaying dbt's plan failed (%s): running dbt", exc)
    reuse.write_key(space.database, "build", None)
    result = dbt.run_dbt(space.args(command))
    made = replay.plan_from_result(result, plan_key)
    if made is not None:
        replay.save(made, space.plan)
    else:
        space.plan.unlink(missing_ok=True)
    reuse.write_key(space.database, "build", build_key)
    return "ran"


def _check(files: Sequence[reuse.FileDigest], checked: reuse.CheckedFiles) -> int:
    """Check the files not checked before with this content; return the records of all."""
    total = 0
    for file in files:
        records = checked.records(file)
        if records is None:
            records = check_history([file.path], skip=checked.checked_part(file), limit=file.size)
            checked.remember(file, records)
        total += records
    return total
