"""The one drill runner end to end: the CLI and pytest give the same record, and a drill
stopped by SIGINT or SIGTERM stops its builds at once and keeps its evidence."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import docker
import pytest

from harness import telemetry
from harness.determinism import load_scenario
from harness.drills import DeterminismDrill, RunSettings, run_drill
from lab import Lab, labels
from lab._internal.docker import docker_client
from lab.resources import resource_path

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCENARIOS = resource_path("scenarios", "determinism")
SUBJECTS = resource_path("scenarios", "subjects")
CIHUB = [sys.executable, "-m", "harness"]

# What may differ between two runs of one drill: ids, times, paths and digests that contain
# them, and the process that ran it.
_VOLATILE = {
    "run_id",
    "session_id",
    "started_at",
    "finished_at",
    "duration_s",
    "started_on",
    "wall_s",
    "build_wall_s",
    "bundle_path",
    "manifest_digest",
    "pid",
    "worker_id",
}


_SECONDS = re.compile(r"\b\d+(\.\d+)? s\b")


# A subject that is not reproducible may give other bytes from one run to the next even in the
# control environment (its build reads the clock or the directory order), so when the two
# records come from runs minutes apart its digests are not compared; its verdict, variations
# and culprits still are.
_BUILD_DIGESTS = {"digest", "digests"}


def _normalized(value: Any, volatile: frozenset[str] = frozenset()) -> Any:
    if isinstance(value, dict):
        return {
            k: _normalized(v, volatile)
            for k, v in value.items()
            if k not in _VOLATILE and k not in volatile
        }
    if isinstance(value, list):
        return [_normalized(v, volatile) for v in value]
    if isinstance(value, str):
        return _SECONDS.sub("N s", value)  # "A and B built in 3.2 s"
    return value


def _records(evidence: Path) -> list[dict[str, Any]]:
    path = evidence / telemetry.NDJSON_NAME
    assert telemetry.validate_ndjson(path).valid
    return [json.loads(line) for line in path.read_text().splitlines()]


EXPECTED = {
    "py-reproducible": ("reproducible", []),
    "py-buildinfo": ("not-reproducible", ["time", "domain_host"]),
    "c-hello": ("not-reproducible", ["fileordering"]),
    "tarball": ("not-reproducible", ["time", "umask"]),
}
"""Each sample scenario's finding (culprits in catalogue order); each scenario expects exactly
that, so each run passes."""


@pytest.mark.parametrize("name", list(EXPECTED))
def test_the_cli_and_pytest_give_the_same_record(
    name: str, lab: Lab, drill_settings: RunSettings, tmp_path: Path
) -> None:
    scenario_file = SCENARIOS / f"{name}.yaml"
    cli_dir = tmp_path / "cli"
    pytest_record = _scenario_record(drill_settings, name)
    if pytest_record is None:  # the scenario did not run in this session: run it the same way
        settings = RunSettings(tmp_path / "pytest", drill_settings.signer)
        assert run_drill(DeterminismDrill(load_scenario(scenario_file)), settings).passed
        (pytest_record,) = _records(settings.evidence_dir)
    proc = subprocess.run(
        [
            *CIHUB,
            *("run", "determinism", "--scenario", str(scenario_file)),
            *("--evidence-dir", str(cli_dir), "--lab", lab.config.lab_id, "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (cli_record,) = _records(cli_dir)
    volatile = frozenset(_BUILD_DIGESTS if EXPECTED[name][0] == "not-reproducible" else ())
    assert _normalized(cli_record, volatile) == _normalized(pytest_record, volatile)
    assert cli_record["result"] == "success" and cli_record["expectation"]["met"] is True
    result = json.loads(proc.stdout)
    assert drill_settings.signer is not None
    assert result["signed_by"] == drill_settings.signer.identity
    _check_cli_result(name, result, cli_record)


def _scenario_record(settings: RunSettings, name: str) -> dict[str, Any] | None:
    """The record `scenarios/test_determinism.py` wrote for scenario `name` in this session
    (the suite runs the scenarios first), if it did."""
    path = settings.evidence_dir / telemetry.NDJSON_NAME
    if not path.is_file():
        return None
    for line in reversed(path.read_text().splitlines()):
        record: dict[str, Any] = json.loads(line)
        if (
            record.get("session_id") == settings.session_id
            and record["scenario"] == {"name": name, "kind": "dual-build"}
            and "expectation" in record
        ):
            return record
    return None


def _check_cli_result(name: str, result: dict[str, Any], record: dict[str, Any]) -> None:
    """What the CLI reports and leaves for one sample subject."""
    verdict, culprits = EXPECTED[name]
    assert result["verdict"] == verdict and result["observed"] == verdict
    assert result["culprits"] == culprits
    assert result["expectation_met"] is True and result["exit_code"] == 0
    assert record["scenario"]["kind"] == "dual-build"
    assert record["determinism"]["verdict"] == verdict
    assert record["determinism"]["culprits"] == culprits
    assert record["evidence"]["manifest_digest"] == result["manifest_digest"]
    bundle = Path(result["bundle"])
    assert (bundle / "determinism/build-A").is_dir() and (bundle / "determinism/build-B").is_dir()
    assert (bundle / "rekor/entry.json").is_file()  # keyless: the manifest's log entry
    diff = (bundle / "determinism/diff.txt").read_text()
    if verdict == "reproducible":
        assert diff == "" and not (bundle / "determinism/report.html").exists()
        assert record["determinism"]["diffoscope"] == "not-run"
        assert result["compare"]["diffoscope"] is None
    else:
        assert diff.startswith("== tree digests differ") and "diffoscope 2" in diff
        assert (bundle / "determinism/report.html").is_file()
        found = json.loads((bundle / "determinism/culprits.json").read_text())
        assert found["culprits"] == culprits and found["controls_agree"] is True
        assert found["explained"] is True
        assert record["determinism"]["culprit_search"]["ran"] is True


def _build_containers(client: docker.DockerClient, pid: int) -> list[str]:
    # The low-level listing: one call, no inspect per container (a build container may be
    # removed between a listing and its inspect).
    mine = {"label": [f"{labels.MANAGED}=true", f"{labels.OWNER_PID}={pid}"]}
    return [
        str(c["Names"][0]).lstrip("/")
        for c in client.api.containers(all=True, filters=mine)
        if str((c.get("Labels") or {}).get(labels.SERVICE, "")).startswith("build-")
    ]


def _wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return bool(predicate())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_builds_and_keeps_the_evidence(
    signum: int, signing_key: Path, tmp_path: Path
) -> None:
    client = docker_client()
    evidence = tmp_path / "evidence"
    proc = subprocess.Popen(
        [
            *CIHUB,
            *("run", "determinism", "--subject", str(SUBJECTS / "tarball")),
            *("--build", "sleep 600", "--artifacts", "x", "--image", "builder-c"),
            *("--evidence-dir", str(evidence), "--sign", f"key:{signing_key}"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert _wait_for(lambda: len(_build_containers(client, proc.pid)) == 2, 300), (
            "the builds never started"
        )
        sent = time.monotonic()
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
        stopped_s = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    print(f"{signal.Signals(signum).name}: the drill stopped in {stopped_s:.2f} s")
    assert proc.returncode == 130, err
    assert _build_containers(client, proc.pid) == []
    (record,) = _records(evidence)
    assert record["result"] == "cancellation"
    assert signal.Signals(signum).name in record["errors"][0]["message"]
    bundle = evidence / record["evidence"]["bundle_path"]
    assert (bundle / "INCOMPLETE").is_file()
    assert (bundle / "manifest.json").is_file()
    assert "evidence written so far is kept" in err


def test_keyless_evidence_outlives_its_lab_and_verifies_with_plain_sigstore(
    tmp_path: Path,
) -> None:
    """An auditor's view: a drill signs keylessly through a user's lab; the lab goes and a new
    one comes; the evidence still verifies against the exported trust domain, with cihub and
    with the unmodified sigstore CLI (the manifest is a DSSE attestation over every file)."""
    env = {
        **os.environ,
        "CIHUB_TRUST_DOMAIN": str(tmp_path / "trust-domain"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    evidence = tmp_path / "evidence"
    first, second = (f"cihub-audit-{os.getpid()}-{n}" for n in (1, 2))

    def cihub(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*CIHUB, *args], capture_output=True, text=True, env=env, timeout=900, check=False
        )
        if check:
            assert proc.returncode == 0, f"cihub {' '.join(args)}: {proc.stderr}"
        return proc

    try:
        cihub("lab", "up", "--name", first, "--evidence-dir", str(evidence))
        run = cihub(
            *("run", "determinism", "--scenario", str(SCENARIOS / "py-reproducible.yaml")),
            *("--evidence-dir", str(evidence), "--lab", first, "--json"),
        )
        bundle = Path(json.loads(run.stdout)["bundle"])
        cihub("lab", "down", "--lab", first, "--evidence-dir", str(evidence))
        cihub("lab", "up", "--name", second, "--evidence-dir", str(evidence))
        exported = tmp_path / "trust_config.json"
        cihub("trust", "export", "-o", str(exported))
        pinned = (
            "--cert-identity",
            "lab@cihub.test",
            "--cert-oidc-issuer",
            "https://oidc.lab.cihub",
        )
        assert cihub("evidence", "verify", str(bundle)).returncode == 0
        verified = cihub(
            "evidence", "verify", str(bundle), "--trust-config", str(exported), *pinned
        )
        assert "rekor-inclusion" in verified.stderr
        other = cihub(
            *("evidence", "verify", str(bundle), "--cert-identity", "release@corp.example"),
            "--cert-oidc-issuer",
            "https://oidc.lab.cihub",
            check=False,
        )
        assert other.returncode == 1

        def sigstore_verify(target: Path) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [
                    *(sys.executable, "-m", "sigstore", "--trust-config", str(exported)),
                    *("verify", "identity", "--offline"),
                    *("--bundle", str(bundle / "manifest.sigstore.json")),
                    *pinned,
                    str(target),
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )

        for listed in ("summary.md", "determinism/result.json"):
            ok = sigstore_verify(bundle / listed)
            assert ok.returncode == 0, ok.stderr
            assert "OK" in ok.stderr
        tampered = tmp_path / "result.json"
        tampered.write_bytes((bundle / "determinism/result.json").read_bytes() + b" ")
        bad = sigstore_verify(tampered)
        assert bad.returncode != 0
        assert "no subject for digest" in bad.stderr
    finally:
        for name in (first, second):
            cihub("lab", "down", "--lab", name, "--evidence-dir", str(evidence), check=False)
