"""The Rekor monitor passes while the log only grows, and fails loudly on a restored old log."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.monitor import MonitorAlarm, RekorMonitor, log_key_from_trust_config
from harness.sign import SigningSetup, sign_artifact
from lab import Lab, LabConfig

pytestmark = pytest.mark.integration


@pytest.fixture
def own_lab(tmp_path: Path) -> Iterator[Lab]:
    """A lab of its own: this test restores an old Rekor database."""
    with Lab(LabConfig(evidence_dir=tmp_path / "evidence")) as lab:
        yield lab


def _sign(lab: Lab, payload: bytes) -> str:
    assert lab.endpoints.trust_config is not None
    setup = SigningSetup(
        lab.endpoints.trust_config, lab.mint_token(), lab.config.identity, lab.config.issuer
    )
    sign_artifact(payload, setup)
    return "sha256:" + hashlib.sha256(payload).hexdigest()


def _snapshot_rekor(lab: Lab) -> bytes:
    """The Rekor database files, copied while the service is stopped (WAL checkpointed)."""
    container = lab.service_container("rekor")
    container.stop(timeout=10)
    stream, _ = container.get_archive("/var/lib/rekor")
    data = b"".join(stream)
    container.start()
    lab.wait_healthy("rekor")
    return data


def _restore_rekor(lab: Lab, snapshot: bytes) -> None:
    container = lab.service_container("rekor")
    container.stop(timeout=10)
    # The container's root filesystem is read-only: extract into the volume itself, with the
    # snapshot's leading `rekor/` taken off.
    assert container.put_archive("/var/lib/rekor", _rerooted(snapshot, "rekor"))
    container.start()
    lab.wait_healthy("rekor")


def _rerooted(archive: bytes, top: str) -> bytes:
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(archive)) as src,
        tarfile.open(fileobj=out, mode="w") as dst,
    ):
        for member in src.getmembers():
            name = member.name.removeprefix(top).lstrip("/")
            if not name:
                continue
            member.name = name
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    return out.getvalue()


def test_monitor_passes_on_growth_and_fails_loudly_on_a_rollback(
    own_lab: Lab, tmp_path: Path
) -> None:
    assert own_lab.endpoints.trust_config is not None
    key = log_key_from_trust_config(own_lab.endpoints.trust_config)
    monitor = RekorMonitor(own_lab.endpoints.proxies["rekor"].url, key, state_dir=tmp_path / "m")

    first = _sign(own_lab, b"release 1\n")
    seen = monitor.run([first])
    assert seen.previous is None and seen.current.size >= 1
    snapshot = _snapshot_rekor(own_lab)

    second = _sign(own_lab, b"release 2\n")
    third = _sign(own_lab, b"release 3\n")
    grown = monitor.run([first, second, third])
    assert grown.previous is not None and grown.previous.size == seen.current.size
    assert grown.current.size == seen.current.size + 2

    _restore_rekor(own_lab, snapshot)
    with pytest.raises(MonitorAlarm, match=r"ROLLBACK: the log shrank from \d+ to \d+"):
        monitor.run()
    assert monitor.last_verified() == grown.current, "a failed run keeps the last good checkpoint"


def test_cli_monitor_checks_an_artifact_by_file(own_lab: Lab, tmp_path: Path) -> None:
    artifact = tmp_path / "release.txt"
    artifact.write_bytes(b"release via cli\n")
    _sign(own_lab, artifact.read_bytes())
    command = [
        sys.executable,
        "-m",
        "harness",
        "rekor",
        "monitor",
        "--lab",
        own_lab.config.lab_id,
        "--state-dir",
        str(tmp_path / "m"),
        "--artifact",
        str(artifact),
        "--json",
    ]
    ok = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    missing = tmp_path / "never-signed.txt"
    missing.write_bytes(b"nobody signed this\n")
    command[command.index(str(artifact))] = str(missing)
    alarm = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert alarm.returncode == 1
    assert "no log entry for sha256:" in alarm.stderr
