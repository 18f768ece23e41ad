"""Dual builds on the real engine: the evidence of a reproducible build verifies, and bad
input fails the way it should. Each sample subject's verdict and culprits, through the CLI and
through pytest, are checked in `test_drill_runner.py`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import harness._cli as cli
from harness import telemetry
from harness._commands import run as run_command
from harness.evidence import KeySigner, verify_bundle
from lab import labels
from lab._internal.docker import docker_client
from lab.resources import resource_path

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCENARIOS = resource_path("scenarios", "determinism")
SUBJECTS = resource_path("scenarios", "subjects")


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    return docker_client()


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local key: these tests are about the builds; keyless signing has its own tests."""
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path_factory.mktemp("key") / "signing-key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


@pytest.fixture
def cihub(monkeypatch: pytest.MonkeyPatch, signing_key: Path) -> Any:
    """`cihub`, with `run` drills signing with a local key."""
    if run_command not in cli.COMMAND_MODULES:
        monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, run_command))

    def main(args: list[str]) -> int:
        if args[:1] == ["run"]:
            args = [*args, "--sign", f"key:{signing_key}"]
        return cli.main(args)

    return main


@pytest.fixture(autouse=True)
def no_containers_left(client: docker.DockerClient) -> Iterator[None]:
    """Every build and probe container this process started is gone when a test ends."""
    yield
    import os

    mine = {"label": [f"{labels.MANAGED}=true", f"{labels.OWNER_PID}={os.getpid()}"]}
    left = [
        c.name
        for c in client.containers.list(all=True, filters=mine)
        if str(c.labels.get(labels.SERVICE, "")).startswith(("build-", "probe"))
    ]
    assert left == []


def _run(cihub: Any, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    code = cihub(["run", "determinism", *args, "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


def _records(evidence: Path) -> list[dict[str, Any]]:
    path = evidence / telemetry.NDJSON_NAME
    assert telemetry.validate_ndjson(path).valid
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_cli_evidence_verify_command_passes_the_reproducible_bundle(
    cihub: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path, signing_key: Path
) -> None:
    code, result, err = _run(
        cihub,
        capsys,
        "--subject",
        str(SUBJECTS / "py-reproducible"),
        "--build",
        "umask 022; python3 -m build --wheel --no-isolation --outdir dist .",
        "--artifacts",
        "dist/*.whl",
        "--image",
        "builder-python",
        "--evidence-dir",
        str(tmp_path),
    )
    assert code == 0, err
    public = tmp_path / "key.pub.pem"
    public.write_bytes(KeySigner.from_pem_file(signing_key).public_key_pem)
    assert cihub(["evidence", "verify", result["bundle"], "--key", str(public)]) == 0
    assert cihub(["evidence", "verify", result["bundle"]]) == 1  # a key must be pinned
    capsys.readouterr()


def test_a_failing_build_is_build_failed_with_exit_codes_and_log_tails(
    cihub: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = cihub(
        [
            "run",
            "determinism",
            "--subject",
            str(SUBJECTS / "tarball"),
            "--build",
            'echo "step one"; echo "no compiler for $(hostname)" >&2; exit 3',
            "--artifacts",
            "dist/*.tar",
            "--image",
            "builder-c",
            "--evidence-dir",
            str(tmp_path),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 2, err
    assert "build failed: A exited 3" in out and "B exited 3" in out
    assert "not reproducible" not in out
    assert "| no compiler for cihub-build-a" in out
    assert "| no compiler for cihub-build-b-variant" in out
    (bundle,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    result = json.loads((bundle / "determinism/result.json").read_text())
    assert result["verdict"] == "build-failed"
    assert [b["exit_code"] for b in result["builds"]] == [3, 3]
    assert "step one" in (bundle / "determinism/logs/A.log").read_text()
    (record,) = _records(tmp_path)
    assert record["result"] == "error" and record["determinism"]["verdict"] == "build-failed"
    assert not verify_bundle(bundle).passed


def test_a_variation_that_breaks_the_build_is_named_and_the_verdict_stays_build_failed(
    cihub: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    build = 'test "$LANG" = C.UTF-8 || { echo "no $LANG here" >&2; exit 4; }; echo ok > out.txt'
    code, result, err = _run(
        cihub,
        capsys,
        "--subject",
        str(SUBJECTS / "tarball"),
        "--build",
        build,
        "--artifacts",
        "out.txt",
        "--image",
        "builder-c",
        "--evidence-dir",
        str(tmp_path),
    )
    assert code == 2, err
    assert result["verdict"] == "build-failed"
    assert [b["exit_code"] for b in result["builds"]] == [0, 4]
    assert result["culprits"] == ["locales"]
    assert result["culprit_search"]["build_breakers"] == ["locales"]
    assert "B exited 4 (no fr_CH.UTF-8 here)" in result["detail"]


def test_an_artifact_glob_that_matches_nothing_is_an_error(
    cihub: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = cihub(
        [
            "run",
            "determinism",
            "--subject",
            str(SUBJECTS / "tarball"),
            "--build",
            "sh dist.sh",
            "--artifacts",
            "dist/*.tar",
            "dist/*.zip",
            "--image",
            "builder-c",
            "--evidence-dir",
            str(tmp_path),
        ]
    )
    err = capsys.readouterr().err.replace("\n", " ")
    assert code == 2
    assert "artifact glob(s) 'dist/*.zip' matched nothing in build A" in err
    (record,) = _records(tmp_path)
    assert record["result"] == "error" and record["evidence"]["complete"] is False


def test_a_missing_subject_is_an_error(
    cihub: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = cihub(
        [
            "run",
            "determinism",
            "--subject",
            str(tmp_path / "not-there"),
            "--build",
            "make",
            "--artifacts",
            "x",
            "--evidence-dir",
            str(tmp_path / "evidence"),
        ]
    )
    assert code == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_diffoscope_timeout_is_recorded_and_the_verdict_stands(
    cihub: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, result, err = _run(
        cihub,
        capsys,
        "--scenario",
        str(SCENARIOS / "tarball.yaml"),
        "--no-culprits",
        "--diffoscope-timeout",
        "0.05",
        "--evidence-dir",
        str(tmp_path),
    )
    assert code == 1, err
    assert result["verdict"] == "not-reproducible"
    assert result["compare"]["diffoscope"]["status"] == "timeout"
    assert "culprit_search" not in result
    bundle = Path(result["bundle"])
    diff = (bundle / "determinism/diff.txt").read_text()
    assert "~ dist/app.tar: content differs" in diff and ": timeout: " in diff
    (record,) = _records(tmp_path)
    assert record["determinism"]["diffoscope"] == "timeout"
    assert record["determinism"]["culprit_search"] == {"ran": False}
    log = (bundle / "audit/commands.log").read_text()
    assert "killed after 0.05 s" in log
    assert verify_bundle(bundle).check("determinism").status == "fail"
