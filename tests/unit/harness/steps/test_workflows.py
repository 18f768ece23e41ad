from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.steps.workflows import workflow_facts


def test_sample_workflow_facts(sample_subject: Path) -> None:
    facts = workflow_facts(sample_subject)
    (wf,) = facts.files
    jobs = {j["id"]: j for j in wf["jobs"]}
    assert jobs["release"]["id_token_write"] is True
    assert jobs["build"]["id_token_write"] is False
    assert all("@" in u for u in jobs["build"]["uses"])
    assert facts.zizmor == ()


def test_unpinned_action_and_secret_are_seen(tmp_path: Path) -> None:
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True)
    (folder / "ci.yml").write_text(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n"
        "      - uses: actions/checkout@v4\n      - run: echo ${{ secrets.PYPI_TOKEN }}\n"
    )
    facts = workflow_facts(tmp_path)
    job = facts.files[0]["jobs"][0]
    assert job["uses"] == ["actions/checkout@v4"]
    assert job["secrets"] == ["PYPI_TOKEN"]
    assert any(f["ident"] == "unpinned-uses" for f in facts.zizmor)


def test_no_workflows_is_empty(tmp_path: Path) -> None:
    assert workflow_facts(tmp_path).files == ()


@pytest.mark.parametrize("text", ["jobs: [", "name: x\n", "jobs:\n  a: 1\n"])
def test_malformed_workflows_are_named(tmp_path: Path, text: str) -> None:
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True)
    (folder / "bad.yml").write_text(text)
    with pytest.raises(ConfigError, match=r"bad\.yml: workflows"):
        workflow_facts(tmp_path, run_zizmor=False)
