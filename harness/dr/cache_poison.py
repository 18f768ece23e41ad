"""The cache-poisoning steps: a real pip wheel cache, recorded, poisoned, and a gated install.

The cache is what `pip wheel` writes for a local project (offline: no index, no build
isolation). The poison is another build of the same project, name and version (so the same
file name) whose code differs. The install is `pip install --no-index --find-links CACHE`, into
a target folder, and runs only when the sentinel says the cache is intact (unless the scenario
turns the sentinel off): what got installed is read back from that folder.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigError, InfraError

PACKAGE_MODULE = "cihub_cache_sample"
POISON_MARK = "poisoned"
_PIP_TIMEOUT_S = 300.0


def _pip(args: list[str], cwd: Path) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]
    try:
        done = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InfraError(f"pip {args[0]}: {exc}") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise InfraError(f"pip {args[0]} failed ({done.returncode}): {' | '.join(tail)}")


def build_wheel(project: Path, out_dir: Path) -> Path:
    """Build `project`'s wheel into `out_dir`, offline; the wheel's path.

    Raises:
        ConfigError: `project` is not a folder with a pyproject.toml.
        InfraError: pip failed.
    """
    if not (project / "pyproject.toml").is_file():
        raise ConfigError(f"{project}: not a Python project (no pyproject.toml)")
    out_dir.mkdir(parents=True, exist_ok=True)
    before = set(out_dir.glob("*.whl"))
    _pip(
        ["wheel", "--no-index", "--no-deps", "--no-build-isolation", "-w", str(out_dir), "."],
        project,
    )
    built = sorted(set(out_dir.glob("*.whl")) - before) or sorted(out_dir.glob("*.whl"))
    if not built:
        raise InfraError(f"pip wheel wrote no wheel of {project}")
    return built[-1]


def poisoned_wheel(project: Path, work: Path) -> Path:
    """Another build of `project`, same name and version, whose module says it is poisoned."""
    copy = work / "poison-src"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    module = copy / PACKAGE_MODULE / "__init__.py"
    if not module.is_file():
        raise ConfigError(f"{project}: no {PACKAGE_MODULE}/__init__.py to poison")
    module.write_text(
        module.read_text() + f'\nORIGIN = "{POISON_MARK}"  # swapped in by the drill\n'
    )
    return build_wheel(copy, work / "poison-dist")


@dataclass(frozen=True)
class Installed:
    """What a gated install left in its target folder."""

    ran: bool
    origin: str | None
    """The installed module's ORIGIN (`genuine` or `poisoned`), None if nothing was installed."""


def install(cache: Path, target: Path, requirement: str) -> Installed:
    """Install `requirement` from the cache only (no index) into `target`; read back ORIGIN."""
    _pip(
        [
            "install",
            "--no-index",
            "--no-deps",
            "--find-links",
            str(cache),
            "--target",
            str(target),
            requirement,
        ],
        cache,
    )
    return installed(target, ran=True)


def installed(target: Path, *, ran: bool) -> Installed:
    module = target / PACKAGE_MODULE / "__init__.py"
    if not module.is_file():
        return Installed(ran, None)
    # Read, never run: the installed code may be the poison.
    origin = None
    for node in ast.parse(module.read_text()).body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "ORIGIN" for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            origin = node.value.value
    return Installed(ran, origin)
