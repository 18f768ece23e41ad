"""A report from pipeline_run history: check the NDJSON, load it, run dbt, read the marts.

Three slow parts that need not wait for each other overlap: importing dbt (seconds of module
loading, in a thread), the schema check of every line (in this thread) and DuckDB's load of the
NDJSON (in a thread; DuckDB releases the GIL). The load is used only once every line has passed
the check: a bad line is reported as FILE:LINE, whatever DuckDB made of it, and no mart is built.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.insight import dbt, warehouse
from harness.insight.history import check_history
from harness.insight.marts import MARTS, Mart

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Report:
    """What a report found: records read and in the window, and every mart."""

    files: tuple[Path, ...]
    records: int
    in_window: int
    since: datetime | None
    marts: tuple[Mart, ...]

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
    threading.Thread(target=dbt.preload, name="dbt-import", daemon=True).start()
    with (
        dbt.workspace(workspace_root) as space,
        ThreadPoolExecutor(1, thread_name_prefix="duckdb-load") as pool,
    ):
        loading = pool.submit(warehouse.load_history, space.fresh_database(), files, since)
        try:
            records = check_history(files)
        finally:
            loading.exception()  # wait for it: DuckDB never writes on behind an error
        in_window = loading.result()
        if in_window == 0:
            return Report(tuple(files), records, 0, since, empty)
        dbt.run_dbt(space.args("build" if dbt_tests else "run"))
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
    return Report(tuple(files), records, in_window, since, marts)
