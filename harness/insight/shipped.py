"""The plan shipped with cihub: the SQL dbt compiles the project's own `models/` to, so that
even a first report builds the marts without importing dbt.

`shipped_plan.json` beside this module is a lock file. `cihub report --compile-plan` writes it
from `dbt compile` in a throwaway workspace, and a unit test fails when it no longer matches
what dbt compiles `models/` to today. It carries its plan key (`reuse.plan_key`: every file of
`models/`, the profiles, the versions of dbt-core, dbt-duckdb, dbt-adapters and dbt-common),
like the plan a dbt run leaves in the workspace: edited models, another dbt version or other
profiles miss it, and dbt runs. The SQL names the catalog after the database's file name
(`insight`), never its folder, so the plan holds in any workspace.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from harness.errors import ConfigError
from harness.insight import dbt, replay, reuse

SHIPPED_PLAN = Path(__file__).with_name("shipped_plan.json")


def plan_key(space: dbt.Workspace) -> str:
    """The plan key of the project's models with the profiles of `space`."""
    return reuse.plan_key(dbt.project_dir(), dbt.plan_profiles_text(space.database))


def compile_plan() -> replay.Plan:
    """Compile the project's models with dbt, in a throwaway workspace; return their plan.

    Raises:
        ConfigError: the project has a node that can't be replayed (see `harness.insight.replay`).
        InfraError: dbt failed.
    """
    with (
        tempfile.TemporaryDirectory(prefix="cihub-plan-") as tmp,
        dbt.workspace(Path(tmp)) as space,
    ):
        key = plan_key(space)
        plan = replay.plan_from_result(dbt.run_dbt(space.args("compile")), key)
    if plan is None:
        raise ConfigError(
            f"{dbt.project_dir()}: a node can't be replayed (only tables and views without "
            "hooks can): no plan to ship"
        )
    return plan


def write_plan(path: Path | None = None) -> tuple[replay.Plan, Path]:
    """Compile the plan (`compile_plan`) and write it to `path` (default `SHIPPED_PLAN`);
    return it and where it went.

    Raises:
        ConfigError: as `compile_plan`, or `path` can't be written.
        InfraError: dbt failed.
    """
    path = path or SHIPPED_PLAN
    plan = compile_plan()
    try:
        replay.save(plan, path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the plan ({exc.strerror or exc})") from None
    return plan, path
