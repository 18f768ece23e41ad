"""The CI workflows pass GitHub's workflow schema, zizmor and the project's own guard policy;
an unpinned copy fails zizmor and the guard."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.steps.policy import PolicySet, default_policy_dir, read_data
from harness.steps.workflows import workflow_facts

ROOT = Path(__file__).resolve().parents[3]
WORKFLOWS = ROOT / ".github" / "workflows"
FILES = ("ci.yml", "nightly-drills.yml")
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$")
DRILL_ENVS = {"determinism", "release", "chaos", "dr", "cache"}


def _tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} is a test dependency and must be installed"
    return found


def _load(name: str) -> dict[Any, Any]:
    value = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(value, dict)
    return value


def _guard(subject: Path) -> tuple[bool, tuple[str, ...]]:
    folder = default_policy_dir()
    policies = PolicySet(
        {"workflows.rego": (folder / "workflows.rego").read_text()}, read_data(folder)
    )
    decision = policies.evaluate({"workflows": workflow_facts(subject).to_json()})
    (only,) = decision.decisions
    return only.allow, only.reasons


def _unpinned_copy(tmp_path: Path) -> Path:
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True)
    for name in FILES:
        text = (WORKFLOWS / name).read_text()
        text = re.sub(r"(actions/checkout)@[0-9a-f]{40} # (v\d+)\S*", r"\1@\2", text)
        (folder / name).write_text(text)
    return tmp_path


def test_the_workflows_match_githubs_schema() -> None:
    proc = subprocess.run(
        [
            _tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.github-workflows",
            *(str(WORKFLOWS / n) for n in FILES),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zizmor_finds_nothing() -> None:
    proc = subprocess.run(
        [_tool("zizmor"), "--offline", "--no-progress", *FILES],
        cwd=WORKFLOWS,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_guard_policy_allows_them() -> None:
    allow, reasons = _guard(ROOT)
    assert allow, reasons
    assert reasons == ()


def test_an_unpinned_copy_fails_zizmor_and_the_guard(tmp_path: Path) -> None:
    subject = _unpinned_copy(tmp_path)
    proc = subprocess.run(
        [_tool("zizmor"), "--offline", "--no-progress", ".github/workflows"],
        cwd=subject,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "unpinned-uses" in proc.stdout + proc.stderr
    allow, reasons = _guard(subject)
    assert not allow
    assert any("actions/checkout@v7 is not pinned by a full commit SHA" in r for r in reasons)


@pytest.mark.parametrize("name", FILES)
def test_every_action_is_pinned_with_its_version_named(name: str) -> None:
    text = (WORKFLOWS / name).read_text()
    uses = [line.split("uses:", 1)[1].strip() for line in text.splitlines() if "uses:" in line]
    assert uses
    for ref in uses:
        assert PINNED.match(ref), ref


@pytest.mark.parametrize("name", FILES)
def test_least_privilege(name: str) -> None:
    workflow = _load(name)
    assert workflow["permissions"] == {}
    for job_id, job in workflow["jobs"].items():
        assert job["permissions"] == {"contents": "read"}, job_id
        assert "secrets." not in yaml.safe_dump(job), job_id
        for step in job["steps"]:
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False, job_id


@pytest.mark.parametrize("name", FILES)
def test_evidence_is_kept_and_summarized(name: str) -> None:
    workflow = _load(name)
    for job_id, job in workflow["jobs"].items():
        if job_id == "lint":
            continue
        steps = job["steps"]
        uploads = [
            s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact@")
        ]
        assert uploads, job_id
        assert uploads[0]["if"] == "${{ !cancelled() }}"
        assert uploads[0]["with"]["path"].startswith("evidence/")
        assert any("step_summary.sh" in str(s.get("run", "")) for s in steps), job_id


def test_the_nightly_matrix_covers_every_drill_environment() -> None:
    workflow = _load("nightly-drills.yml")
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    assert set(on) == {"schedule", "workflow_dispatch"}
    matrix = workflow["jobs"]["drill"]["strategy"]["matrix"]
    envs = set(matrix["env"]) | {item["env"] for item in matrix.get("include", [])}
    assert envs == DRILL_ENVS
    tox = (ROOT / "tox.ini").read_text()
    for env in envs:
        assert f"[testenv:{env}]" in tox, env


def test_the_step_summary_script_appends_every_bundle_summary(tmp_path: Path) -> None:
    evidence = tmp_path / "evidence"
    for name in ("b1", "b2"):
        (evidence / name).mkdir(parents=True)
        (evidence / name / "summary.md").write_text(f"# bundle {name}\n")
    (evidence / "pipeline_run.ndjson").write_text("{}\n{}\n")
    summary = tmp_path / "summary.md"
    summary.write_text("before\n")
    subprocess.run(
        ["bash", str(ROOT / ".ci" / "step_summary.sh"), str(evidence)],
        env={"GITHUB_STEP_SUMMARY": str(summary), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    text = summary.read_text()
    assert text.startswith("before\n# bundle b1\n# bundle b2\n")
    assert "pipeline_run records: 2 in" in text
