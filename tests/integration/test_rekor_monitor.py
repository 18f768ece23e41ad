"""The Rekor logs of a trust domain outlive labs, stay one log when several labs append, and
the monitors fail loudly on a restored old copy.

Every lab here uses a private trust domain in tmp_path (these tests restore old logs).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness.monitor import MonitorAlarm, RekorMonitor, TilesMonitor, pinned_logs
from harness.sign import SigningSetup, sign_artifact
from lab import Lab, LabConfig

pytestmark = pytest.mark.integration


def _config(tmp_path: Path, trust_domain: Path) -> LabConfig:
    return LabConfig(evidence_dir=tmp_path / "evidence", trust_domain=trust_domain)


@pytest.fixture
def trust_domain(tmp_path: Path) -> Path:
    return tmp_path / "trust-domain"


@pytest.fixture
def own_lab(tmp_path: Path, trust_domain: Path) -> Iterator[Lab]:
    """A lab of its own on a private trust domain: this test restores old logs."""
    with Lab(_config(tmp_path, trust_domain)) as lab:
        yield lab


def _sign(lab: Lab, payload: bytes, rekor_version: int = 2) -> tuple[str, int]:
    """Sign `payload` keylessly through the lab on one log; (digest, log index)."""
    assert lab.endpoints.trust_config is not None
    trust = lab.endpoints.trust_config
    if rekor_version == 1:
        # A trust config whose signing config offers only the v1 log.
        document = json.loads(trust.read_text())
        document["signingConfig"]["rekorTlogUrls"] = [
            s for s in document["signingConfig"]["rekorTlogUrls"] if s["majorApiVersion"] == 1
        ]
        # Written whole under a name of its own, then renamed: signing threads read this file
        # while others rewrite it (a plain write_text let a reader see it half written).
        trust = trust.with_name(f"v1-{lab.config.lab_id}.json")
        with tempfile.NamedTemporaryFile(
            "w", dir=trust.parent, prefix=f".{trust.name}.", delete=False
        ) as draft:
            json.dump(document, draft)
        os.replace(draft.name, trust)
    setup = SigningSetup(trust, lab.mint_token(), lab.config.identity, lab.config.issuer)
    signed = sign_artifact(payload, setup)
    return "sha256:" + hashlib.sha256(payload).hexdigest(), int(signed.log_entry["logIndex"])


def _monitors(lab: Lab, state: Path) -> tuple[RekorMonitor, TilesMonitor]:
    assert lab.endpoints.trust_config is not None
    logs = pinned_logs(lab.endpoints.trust_config)
    url = lab.endpoints.proxies["rekor"].url
    v1 = RekorMonitor(url, logs[1].key, state_dir=state, key_name=logs[1].name)
    v2 = TilesMonitor(url, logs[2].key, logs[2].name, state_dir=state)
    return v1, v2


def _copy_logs(lab: Lab, target: Path) -> None:
    """Copy the trust domain's log files while the rekor container is stopped."""
    assert lab.trust_domain is not None
    container = lab.service_container("rekor")
    container.stop(timeout=10)
    shutil.copytree(lab.trust_domain.logs_dir, target, dirs_exist_ok=True)
    container.start()
    lab.wait_healthy("rekor")


def _restore_logs(lab: Lab, snapshot: Path) -> None:
    assert lab.trust_domain is not None
    container = lab.service_container("rekor")
    container.stop(timeout=10)
    for item in lab.trust_domain.logs_dir.iterdir():
        item.unlink()
    shutil.copytree(snapshot, lab.trust_domain.logs_dir, dirs_exist_ok=True)
    container.start()
    lab.wait_healthy("rekor")


def test_logs_survive_down_up_and_a_restored_copy_trips_rollback(
    tmp_path: Path, trust_domain: Path
) -> None:
    state = tmp_path / "monitor"
    with Lab(_config(tmp_path, trust_domain)) as first_lab:
        d1, i1 = _sign(first_lab, b"release 1\n", 1)
        _, j1 = _sign(first_lab, b"release 1\n", 2)
        assert (i1, j1) == (0, 0), "v1 and v2 are separate logs with their own indexes"
        v1, v2 = _monitors(first_lab, state)
        assert v1.run([d1]).current.size == 1
        assert v2.run({j1: d1}).current.size == 1  # read from tiles; the body carries d1
        _copy_logs(first_lab, tmp_path / "snapshot")
        trust_root = json.loads((trust_domain / "trust_config.json").read_text())
    # lab down: the trust domain and its logs stay
    assert (trust_domain / "logs" / "v1.db").is_file()
    with Lab(_config(tmp_path, trust_domain)) as second_lab:
        assert second_lab.endpoints.trust_config is not None
        lab_root = json.loads(second_lab.endpoints.trust_config.read_text())["trustedRoot"]
        assert lab_root == trust_root["trustedRoot"], "the trusted root is stable across labs"
        d2, i2 = _sign(second_lab, b"release 2\n", 1)
        _, j2 = _sign(second_lab, b"release 2\n", 2)
        assert (i2, j2) == (1, 1)
        v1, v2 = _monitors(second_lab, state)
        grown = v1.run([d1, d2])
        assert grown.previous is not None and grown.current.size == 2
        assert v2.run({j1: d1, j2: d2}).current.size == 2
        _restore_logs(second_lab, tmp_path / "snapshot")
        with pytest.raises(MonitorAlarm, match=r"ROLLBACK: the log shrank from 2 to 1"):
            v1.run()
        with pytest.raises(MonitorAlarm, match=r"ROLLBACK: the log shrank from 2 to 1"):
            v2.run()
        assert v1.last_verified() == grown.current, "a failed run keeps the last good checkpoint"
        # the CLI says the same, with exit 1
        alarm = _cli_monitor(second_lab, state)
        assert alarm.returncode == 1 and "ROLLBACK" in alarm.stderr


def _cli_monitor(lab: Lab, state: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "harness",
        "rekor",
        "monitor",
        "--lab",
        lab.config.lab_id,
        "--state-dir",
        str(state),
        *extra,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_two_labs_on_one_trust_domain_append_to_one_log(tmp_path: Path, trust_domain: Path) -> None:
    with (
        Lab(_config(tmp_path, trust_domain)) as lab_a,
        Lab(_config(tmp_path, trust_domain)) as lab_b,
    ):
        jobs = [(lab, n, version) for n in range(6) for lab in (lab_a, lab_b) for version in (1, 2)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(
                pool.map(
                    lambda job: (job[2], _sign(job[0], f"art {job[1]}\n".encode(), job[2])), jobs
                )
            )
        for version in (1, 2):
            indexes = sorted(index for v, (_, index) in results if v == version)
            assert indexes == list(range(12)), f"v{version}: forked or skipped indexes"
        state = tmp_path / "monitor"
        for lab in (lab_a, lab_b):
            v1, v2 = _monitors(lab, state)
            assert v1.run([d for v, (d, _) in results if v == 1]).current.size == 12
            assert v2.run().current.size == 12


def test_cli_monitor_checks_an_artifact_by_file(own_lab: Lab, tmp_path: Path) -> None:
    artifact = tmp_path / "release.txt"
    artifact.write_bytes(b"release via cli\n")
    _sign(own_lab, artifact.read_bytes(), 1)
    ok = _cli_monitor(own_lab, tmp_path / "m", "--artifact", str(artifact), "--json")
    assert ok.returncode == 0, ok.stderr
    assert set(json.loads(ok.stdout)) == {"v1", "v2"}
    missing = tmp_path / "never-signed.txt"
    missing.write_bytes(b"nobody signed this\n")
    alarm = _cli_monitor(own_lab, tmp_path / "m", "--artifact", str(missing))
    assert alarm.returncode == 1
    assert "no log entry for sha256:" in alarm.stderr
    not_a_folder = _cli_monitor(own_lab, artifact)
    assert not_a_folder.returncode == 2 and "not a folder" in not_a_folder.stderr
    assert "Traceback" not in not_a_folder.stderr
