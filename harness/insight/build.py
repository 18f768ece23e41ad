"""A report from pipeline_run history: check the NDJSON, load it, run dbt, read the marts.

What the previous report already did is not done again (see `harness.insight.reuse`): a file
whose path, size, mtime and sha256 passed the check before is not checked again (one that only
grew has its new lines checked); a table loaded
from the same files and window is not loaded again; and dbt does not run again over the same
table with the same project (`Report.dbt` says "reused"). Any change to a file or to the models
makes the work run. What must run overlaps: importing dbt (seconds of module loading, in a
thread, only when dbt will run), the schema check (in this thread) and DuckDB's load (in a
thread; DuckDB releases the GIL). The load is kept only once every line has passed the check: a
bad line is reported as FILE:LINE, whatever DuckDB made of it, and no mart is built.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.insight import dbt, reuse, warehouse
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
    """"ran" or "reused" (the marts of the previous report, same table and project); None when
    no mart was built (nothing in the window)."""

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
) -> Report:
    """Build the marts over the records in `files` that started at or after `since`.

    Args:
        files: pipeline_run NDJSON files.
        since: leave out records that started before it.
        workspace_root: dbt's folder (default: `<cihub cache>/insight`).
        dbt_tests: also run the models' schema tests (`dbt build` instead of `dbt run`).

    Raises:
        ConfigError: a file is unreadable or holds an invalid record (named FILE:LINE).
        InfraError: DuckDB or dbt failed.
    """
    empty = tuple(Mart(spec) for spec in MARTS)
    if not files:
        return Report((), 0, 0, since, empty)
    command = "build" if dbt_tests else "run"
    with dbt.workspace(workspace_root) as space:
        checked = reuse.CheckedFiles(
            space.root / "checked.json", resource_path("schema", SCHEMA_FILE)
        )
        digests = [reuse.digest_file(path, checked.size(path)) for path in files]
        load_key = reuse.load_key(digests, since, warehouse.RAW_COLUMNS)
        build_key = reuse.build_key(load_key, dbt.project_dir(), space.profiles_file, command)
        loaded = reuse.stored_key(space.database, "load") == load_key
        built = loaded and reuse.stored_key(space.database, "build") == build_key
        if not built:
            threading.Thread(target=dbt.preload, name="dbt-import", daemon=True).start()
        with ThreadPoolExecutor(1, thread_name_prefix="duckdb-load") as pool:
            loading: Future[int] | None = None
            if not loaded:
                database = space.fresh_database()
                loading = pool.submit(warehouse.load_history, database, files, since)
            try:
                records = _check(digests, checked)
            finally:
                if loading is not None:
                    loading.exception()  # wait for it: DuckDB never writes on behind an error
            if loading is not None:
                loading.result()
                reuse.write_key(space.database, "load", load_key)
        checked.save()
        in_window = warehouse.count_rows(space.database)
        if in_window == 0:
            return Report(tuple(files), records, 0, since, empty)
        if not built:
            reuse.write_key(space.database, "build", None)
            dbt.run_dbt(space.args(command))
            reuse.write_key(space.database, "build", build_key)
        marts = tuple(
            Mart(
                spec,
                tuple(
                    warehouse.read_table(space.database, spec.relation, spec.columns, spec.order_by)
                ),
            )
            for spec in MARTS
        )
    _logger.debug("report: %d records, %d in the window", records, in_window)
    return Report(tuple(files), records, in_window, since, marts, "reused" if built else "ran")


def _check(files: Sequence[reuse.FileDigest], checked: reuse.CheckedFiles) -> int:
    """Check the files not checked before with this content; return the records of all."""
    total = 0
    for file in files:
        records = checked.records(file)
        if records is None:
            records = check_history([file.path], skip=checked.checked_part(file))
            checked.remember(file, records)
        total += records
    return total
