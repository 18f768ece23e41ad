"""tox.ini as tox itself reads it: every scenario has its environment, listed by `tox -l`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENVS = ("unit", "lint", "integration", "determinism", "release", "chaos", "dr", "cache")
SCENARIO_ENVS = ("determinism", "release", "chaos", "dr", "cache")


def _tox(*args: str, workdir: Path = ROOT) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "tox", "--root", str(workdir), *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def config() -> dict[str, dict[str, str]]:
    """{env: {key: value}} of commands and pass_env, as `tox config` resolves them."""
    out: dict[str, dict[str, str]] = {}
    env = key = ""
    for line in _tox("config", "-e", ",".join(ENVS), "-k", "commands", "pass_env").splitlines():
        if line.startswith("[testenv:"):
            env = line[len("[testenv:") : -1]
            out[env] = {}
        elif match := re.fullmatch(r"(\w+) =(?: (.*))?", line):
            key = match[1]
            out[env][key] = match[2] or ""
        elif line.startswith("  ") and key:
            out[env][key] = (out[env][key] + " " + line.strip()).strip()
    return out


def test_tox_lists_every_environment() -> None:
    listed = [line.strip() for line in _tox("-l").splitlines() if line.strip()]
    assert listed == list(ENVS)


def test_each_scenario_env_runs_its_scenario_with_its_own_evidence(
    config: dict[str, dict[str, str]],
) -> None:
    for env in SCENARIO_ENVS:
        command = config[env]["commands"]
        assert command.startswith(f"pytest scenarios/test_{env}.py "), command
        assert f"--evidence-dir {ROOT / 'evidence' / env}" in command, command


def test_unit_runs_in_parallel_and_integration_only_marked_tests(
    config: dict[str, dict[str, str]],
) -> None:
    assert "not integration" in config["unit"]["commands"]
    assert "-n 2" in config["unit"]["commands"]
    assert "-m integration" in config["integration"]["commands"]


def test_a_remote_engine_reaches_every_drill(config: dict[str, dict[str, str]]) -> None:
    for env in ("integration", *SCENARIO_ENVS):
        assert "DOCKER_*" in config[env]["pass_env"].split(), env


def test_a_missing_environment_is_caught(tmp_path: Path) -> None:
    """The listing test can fail: a tox.ini without `cache` in env_list does not list it."""
    ini = (ROOT / "tox.ini").read_text().replace(", cache\n", "\n")
    (tmp_path / "tox.ini").write_text(ini)
    listed = _tox("-l", workdir=tmp_path).split()
    assert "cache" not in listed and "dr" in listed
