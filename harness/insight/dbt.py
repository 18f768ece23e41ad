"""Build the Insight marts: dbt over the project in `models/`, in-process through dbtRunner.

dbt works in a folder of its own (`Workspace`: the profiles it is given, its target and logs,
the DuckDB database), never in the source tree. The folder is kept between reports so dbt's
partial parsing skips re-reading an unchanged project and an unchanged build is reused (see
`harness.insight.reuse`), and locked while a report uses it.
dbt's console output is silenced (stdout may carry JSON); a failure comes back as one
`InfraError` line naming the failing model or test, with the path of dbt's log.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock

from harness.errors import ConfigError, InfraError
from lab.images import default_cache_dir
from lab.resources import resource_path

_logger = logging.getLogger(__name__)

PROFILE = "cihub_insight"
"""The profile name in `models/profiles.yml` and `models/dbt_project.yml`."""


def project_dir() -> Path:
    """The dbt project (`models/`)."""
    return resource_path("models")


def quoted_relation(database: Path, relation: str) -> str:
    """`schema.name` in `database` as dbt-duckdb quotes it in compiled SQL: the catalog is
    named after the database file (`"insight"."marts"."mart_dr_trend"`)."""
    return ".".join(
        '"' + part.replace('"', '""') + '"' for part in (database.stem, *relation.split("."))
    )


@dataclass(frozen=True)
class Workspace:
    """Where dbt writes: `profiles/`, `target/`, `logs/`, the database and the plan, all in
    `root`."""

    root: Path

    @property
    def database(self) -> Path:
        return self.root / "insight.duckdb"

    @property
    def profiles(self) -> Path:
        return self.root / "profiles"

    @property
    def profiles_file(self) -> Path:
        return self.profiles / "profiles.yml"

    @property
    def plan(self) -> Path:
        """The SQL dbt compiled the models to (see `harness.insight.replay`)."""
        return self.root / "plan.json"

    @property
    def log(self) -> Path:
        return self.root / "logs" / "dbt.log"

    def fresh_database(self) -> Path:
        """The database path, its previous content removed (before a new table is loaded)."""
        for path in (self.database, self.database.with_name(self.database.name + ".wal")):
            path.unlink(missing_ok=True)
        return self.database

    def args(self, command: str, target: str = "duckdb") -> list[str]:
        """The dbt command line for `command` (run, build, test, compile, parse)."""
        return [
            command,
            "--project-dir",
            str(project_dir()),
            "--profiles-dir",
            str(self.profiles),
            "--target",
            target,
            "--target-path",
            str(self.root / "target"),
            "--log-path",
            str(self.log.parent),
            "--log-level",
            "none",
            "--log-level-file",
            "debug",
            "--no-use-colors",
            "--no-send-anonymous-usage-stats",
            "--no-version-check",
            # manifest.json, run_results.json: nobody reads them (partial parsing has its own)
            "--no-write-json",
        ]


@contextmanager
def workspace(root: Path | None = None) -> Iterator[Workspace]:
    """Lock and yield the workspace at `root` (default: `<cihub cache>/insight`), profiles
    written.

    Raises:
        ConfigError: the project's profiles.yml is unreadable or lacks the duckdb target.
    """
    root = root or default_cache_dir() / "insight"
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".lock")):
        space = Workspace(root)
        write_profiles(space.profiles, space.database)
        yield space


def profiles_text(database: Path | str, *, source: Path | None = None) -> str:
    """The project's profiles.yml with the duckdb target's path set to `database`.

    Raises:
        ConfigError: `source` (default `models/profiles.yml`) is unreadable or has no duckdb
            target.
    """
    source = source or project_dir() / "profiles.yml"
    try:
        profiles = yaml.safe_load(source.read_text(encoding="utf-8"))
        profiles[PROFILE]["outputs"]["duckdb"]["path"] = str(database)
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise ConfigError(f"{source}: {PROFILE}.outputs.duckdb: no such target") from exc
    return yaml.safe_dump(profiles, sort_keys=False)


def plan_profiles_text(database: Path, *, source: Path | None = None) -> str:
    """The profiles as far as the SQL dbt compiles depends on them: the duckdb path reduced
    to the database's file name, which dbt-duckdb names the catalog after (`"insight"."marts"
    ...`); the folder never reaches the SQL, so a plan compiled in one workspace (or shipped
    with cihub) holds in every other.

    Raises:
        ConfigError: as `profiles_text`.
    """
    return profiles_text(database.name, source=source)


def write_profiles(folder: Path, database: Path, *, source: Path | None = None) -> Path:
    """Write `folder/profiles.yml`: the project's own with the duckdb target's path set to
    `database`. Return its path.

    Raises:
        ConfigError: `source` (default `models/profiles.yml`) is unreadable or has no duckdb
            target.
    """
    text = profiles_text(database, source=source)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "profiles.yml"
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path


def preload() -> None:
    """Import dbt (seconds of module loading), e.g. in a thread while other work goes on."""
    import dbt.adapters.duckdb.connections
    import dbt.cli.main  # noqa: F401


def run_dbt(args: Sequence[str]) -> Any:
    """Invoke dbt in-process with `args`; return its result object.

    Raises:
        InfraError: dbt failed: the failing models or tests are named.
    """
    # dbt's import costs seconds: paid only when a report runs, not by every cihub command.
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    from dbt.cli.main import dbtRunner

    _logger.debug("dbt %s", " ".join(args))
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    try:
        outcome = dbtRunner().invoke(list(args))
    finally:
        # dbt-duckdb keeps its DuckDB handle for the process; drop it so the database can be
        # read, replaced or removed after dbt returns.
        DuckDBConnectionManager.close_all_connections()  # type: ignore[no-untyped-call]
    if outcome.success:
        return outcome.result
    log = Path(args[list(args).index("--log-path") + 1]) / "dbt.log"
    raise InfraError(f"dbt {args[0]} failed: {failure_summary(outcome)} (log: {log})")


def failure_summary(outcome: Any) -> str:
    """What failed in a dbt invocation, on one line."""
    if outcome.exception is not None:
        lines = str(outcome.exception).strip().splitlines()
        return " ".join(line.strip() for line in lines[:3]) or type(outcome.exception).__name__
    problems = []
    for item in getattr(outcome.result, "results", None) or ():
        status = str(getattr(item, "status", ""))
        if status in {"error", "fail", "runtime error"}:
            name = getattr(getattr(item, "node", None), "name", "?")
            message = (getattr(item, "message", "") or "").strip().splitlines()
            problems.append(f"{name}: {status}" + (f" ({message[0]})" if message else ""))
    return "; ".join(problems) or "see the dbt log"
