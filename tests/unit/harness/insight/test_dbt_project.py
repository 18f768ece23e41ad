"""The dbt project itself: its profiles, and the same models compiled for BigQuery."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from harness.errors import ConfigError
from harness.insight import dbt as insight_dbt

PROFILES = insight_dbt.project_dir() / "profiles.yml"


def test_profiles_name_a_duckdb_default_and_a_bigquery_target() -> None:
    profile = yaml.safe_load(PROFILES.read_text())[insight_dbt.PROFILE]
    assert profile["target"] == "duckdb"
    assert profile["outputs"]["duckdb"]["type"] == "duckdb"
    assert profile["outputs"]["bigquery"]["type"] == "bigquery"
    assert profile["outputs"]["bigquery"]["method"] == "oauth"  # no secret in the repo


def test_the_written_profiles_point_duckdb_at_the_workspace(tmp_path: Path) -> None:
    path = insight_dbt.write_profiles(tmp_path / "p", tmp_path / "w" / "insight.duckdb")
    written = yaml.safe_load(path.read_text())[insight_dbt.PROFILE]["outputs"]
    assert written["duckdb"]["path"] == str(tmp_path / "w" / "insight.duckdb")
    assert (
        written["bigquery"]
        == yaml.safe_load(PROFILES.read_text())[insight_dbt.PROFILE]["outputs"]["bigquery"]
    )


@pytest.mark.parametrize("text", ["", "[]", "cihub_insight: {outputs: {}}", "a: [b"])
def test_a_broken_profiles_file_is_one_config_error(tmp_path: Path, text: str) -> None:
    source = tmp_path / "profiles.yml"
    source.write_text(text)
    with pytest.raises(ConfigError, match=r"profiles.yml: cihub_insight.outputs.duckdb"):
        insight_dbt.write_profiles(tmp_path / "p", tmp_path / "db", source=source)


def test_the_workspace_stays_out_of_the_source_tree(tmp_path: Path) -> None:
    space = insight_dbt.Workspace(tmp_path)
    args = space.args("run")
    for flag in ("--profiles-dir", "--target-path", "--log-path"):
        assert Path(args[args.index(flag) + 1]).is_relative_to(tmp_path), flag
    assert Path(args[args.index("--project-dir") + 1]) == insight_dbt.project_dir()


def _offline_service_account() -> dict[str, str]:
    """A well-formed service-account key nobody holds: enough for dbt-bigquery to build its
    client without a network or credentials (compile sends no query)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": "cihub-insight",
        "private_key_id": "0",
        "private_key": pem,
        "client_email": "compile-check@cihub-insight.iam.gserviceaccount.com",
        "client_id": "0",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


@pytest.mark.slow
def test_the_models_compile_for_bigquery(tmp_path: Path) -> None:
    space = insight_dbt.Workspace(tmp_path)
    path = insight_dbt.write_profiles(space.profiles, space.database)
    profiles = yaml.safe_load(path.read_text())
    profiles[insight_dbt.PROFILE]["outputs"]["bigquery"].update(
        method="service-account-json", keyfile_json=_offline_service_account()
    )
    path.write_text(yaml.safe_dump(profiles))
    insight_dbt.run_dbt(
        [*space.args("compile", target="bigquery"), "--no-populate-cache", "--no-introspect"]
    )
    compiled = {p.stem: p.read_text() for p in (tmp_path / "target" / "compiled").rglob("*.sql")}
    models = {name: sql for name, sql in compiled.items() if name.startswith(("stg_", "mart_"))}
    assert len(models) == 8, sorted(models)
    assert "`cihub-insight`.`raw`.`pipeline_run`" in models["stg_pipeline_runs"]
    assert "cross join unnest(r.steps) as step with offset" in models["stg_steps"]
    assert "approx_quantiles(chaos_recovery_s, 2)[offset(1)]" in models["mart_chaos_recovery"]
    for name, sql in models.items():  # nothing DuckDB-only leaks into the BigQuery SQL
        for duckdb_only in ("quantile_cont", "generate_subscripts", "timezone(", "timestamptz"):
            assert duckdb_only not in sql, (name, duckdb_only)
