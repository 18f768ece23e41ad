"""Workflow facts for the guard policy: what each job of `.github/workflows` uses, reads and may do.

The YAML is flattened into the gate input (per job: the `uses` references, the commands run, the
secrets read, whether it gets `id-token: write`); the policy (`policies/workflows.rego`) judges.
zizmor (`--offline`) audits the same files and its findings go to the policy as well.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.errors import ConfigError, InfraError

_SECRET = re.compile(r"secrets\.([A-Za-z_][A-Za-z0-9_]*)|secrets\[['\"]([^'\"]+)['\"]\]")
_ZIZMOR_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class WorkflowFacts:
    """The guard's input: per workflow file, per job facts; zizmor's findings."""

    files: tuple[dict[str, Any], ...]
    zizmor: tuple[dict[str, Any], ...]

    def to_json(self) -> dict[str, Any]:
        return {"files": list(self.files), "zizmor": list(self.zizmor)}


def workflow_facts(subject: Path, run_zizmor: bool = True) -> WorkflowFacts:
    """Read `subject/.github/workflows/*.yml|yaml`.

    Raises:
        ConfigError: a workflow is not YAML or not a mapping with `jobs`.
        InfraError: zizmor could not run.
    """
    folder = subject / ".github" / "workflows"
    paths = sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")]) if folder.is_dir() else []
    files = tuple(_facts(path, path.relative_to(subject).as_posix()) for path in paths)
    findings = tuple(_zizmor(subject, paths)) if run_zizmor and paths else ()
    return WorkflowFacts(files, findings)


def _facts(path: Path, name: str) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: workflows: not a readable YAML workflow ({exc})") from exc
    if not isinstance(doc, Mapping) or not isinstance(doc.get("jobs"), Mapping):
        raise ConfigError(f"{path}: workflows: $.jobs: a workflow needs a jobs mapping")
    top = _id_token_write(doc.get("permissions"))
    jobs = []
    for job_id, job in doc["jobs"].items():
        if not isinstance(job, Mapping):
            raise ConfigError(f"{path}: workflows: $.jobs.{job_id}: must be a mapping")
        steps = job.get("steps", []) or []
        if not isinstance(steps, list):
            raise ConfigError(f"{path}: workflows: $.jobs.{job_id}.steps: must be a list")
        uses = [str(job["uses"])] if "uses" in job else []
        uses += [str(s["uses"]) for s in steps if isinstance(s, Mapping) and "uses" in s]
        run = [str(s["run"]) for s in steps if isinstance(s, Mapping) and "run" in s]
        permissions = job.get("permissions")
        id_token = _id_token_write(permissions) if permissions is not None else top
        text = json.dumps(job)
        secrets = sorted({a or b for a, b in _SECRET.findall(text)})
        jobs.append(
            {
                "id": str(job_id),
                "uses": uses,
                "run": run,
                "secrets": secrets,
                "id_token_write": id_token,
            }
        )
    return {"path": name, "jobs": jobs}


def _id_token_write(permissions: Any) -> bool:
    if permissions == "write-all":
        return True
    return isinstance(permissions, Mapping) and permissions.get("id-token") == "write"


def _zizmor(subject: Path, paths: list[Path]) -> list[dict[str, Any]]:
    beside = Path(sys.executable).parent / "zizmor"
    tool = str(beside) if beside.exists() else shutil.which("zizmor")
    if tool is None:
        raise InfraError("workflows: zizmor is not installed")
    argv = [tool, "--offline", "--format", "json", *(str(p.relative_to(subject)) for p in paths)]
    try:
        done = subprocess.run(
            argv, cwd=subject, capture_output=True, timeout=_ZIZMOR_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InfraError(f"workflows: zizmor could not run: {exc}") from exc
    try:
        raw = json.loads(done.stdout or b"[]")
    except ValueError as exc:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise InfraError(f"workflows: zizmor exited {done.returncode}: {tail[0]}") from exc
    findings = []
    for item in raw if isinstance(raw, list) else []:
        determinations = item.get("determinations", {})
        location = ""
        for loc in item.get("locations", [])[:1]:
            symbolic = loc.get("symbolic", {})
            path = symbolic.get("key", {}).get("Local", {}).get("verbatim_path", "")
            row = loc.get("concrete", {}).get("location", {}).get("start_point", {}).get("row")
            location = f"{path}:{(row or 0) + 1}: {symbolic.get('annotation', '')}"
        findings.append(
            {
                "ident": str(item.get("ident", "")),
                "severity": str(determinations.get("severity", "Unknown")),
                "confidence": str(determinations.get("confidence", "Unknown")),
                "location": location,
            }
        )
    return findings
