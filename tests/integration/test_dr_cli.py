"""DR drills end to end: an interrupted drill puts the registry back, and `cihub run dr` runs a
scenario on a lab of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.dr.scenario import load_scenario
from harness.drills import RunSettings, run_drill
from harness.drills.dr import DrDrill
from harness.evidence.signer import KeySigner
from lab import Lab
from lab.oci import OciClient

pytestmark = pytest.mark.integration

SCENARIOS = Path(__file__).parents[2] / "scenarios" / "dr"


def _run_dr(tmp_path: Path, scenario: str, *extra: str) -> list[str]:
    """`cihub run dr --scenario SCENARIOS/<scenario>.yaml` on a lab of its own, evidence in
    `tmp_path/evidence`, signed with a fresh key."""
    key = tmp_path / "key.pem"
    key.write_bytes(KeySigner.generate().private_key_pem)
    return [
        sys.executable,
        "-m",
        "harness",
        "run",
        "dr",
        "--scenario",
        str(SCENARIOS / f"{scenario}.yaml"),
        "--sign",
        f"key:{key}",
        "--evidence-dir",
        str(tmp_path / "evidence"),
        *extra,
    ]


def test_an_interrupt_after_the_destruction_puts_the_registry_back(
    lab: Lab, tmp_path: Path
) -> None:
    with OciClient(lab.endpoints.registry_url) as oci:
        kept = oci.push_blob("cihub/dr-interrupt", b"pushed before the drill")

    def progress(message: str) -> None:
        if message.startswith("dr: restoring"):
            raise KeyboardInterrupt("SIGINT")  # what the runner's handler raises

    settings = RunSettings(tmp_path / "evidence", KeySigner.generate(), progress=progress)
    scenario = load_scenario(SCENARIOS / "registry-restore.yaml")
    with pytest.raises(KeyboardInterrupt):
        run_drill(DrDrill(scenario, lab), settings)
    record = json.loads(
        (tmp_path / "evidence" / "pipeline_run.ndjson").read_text().splitlines()[-1]
    )
    assert record["result"] == "cancellation"
    lab.service_container("registry").reload()
    assert lab.service_container("registry").status == "running"
    with OciClient(lab.endpoints.registry_url) as oci:
        assert oci.blob_exists("cihub/dr-interrupt", kept), "the backup was put back"


def test_cli_runs_a_scenario_on_a_lab_of_its_own(tmp_path: Path) -> None:
    command = _run_dr(tmp_path, "registry-restore-skipped", "--json")
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stderr  # the negative twin: not as expected
    result = json.loads(done.stdout)
    assert result["observed"] == "digests-missing"
    assert result["dr"]["rpo"]["items_lost"] == 1
    assert result["dr"]["rto_s"] > 0
    assert "bringing up lab cihub-" in done.stderr


def test_cache_cli_signs_keylessly_through_the_lab(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness._cli import main

    cache = tmp_path / "wheels"
    cache.mkdir()
    (cache / "a-1.0-py3-none-any.whl").write_bytes(b"genuine")
    bundle = tmp_path / "bundle"
    assert (
        main(["cache", "record", str(cache), "--bundle", str(bundle), "--lab", lab.config.lab_id])
        == 0
    )
    manifest = bundle / "cache" / "manifest.json"
    assert lab.endpoints.trust_config is not None
    pins = [
        "--trust-config",
        str(lab.endpoints.trust_config),
        "--cert-identity",
        lab.config.identity,
        "--cert-oidc-issuer",
        lab.config.issuer,
    ]
    capsys.readouterr()
    assert main(["cache", "verify", str(cache), "--manifest", str(manifest), *pins]) == 0
    assert f"signed by {lab.config.identity}" in capsys.readouterr().out
    (cache / "a-1.0-py3-none-any.whl").write_bytes(b"poison!")
    assert main(["cache", "verify", str(cache), "--manifest", str(manifest), *pins]) == 1
    assert "changed: a-1.0-py3-none-any.whl" in capsys.readouterr().out
    other = ["--cert-identity", "mallory@example.com", "--cert-oidc-issuer", lab.config.issuer]
    pinned_other = [pins[0], pins[1], *other]
    (cache / "a-1.0-py3-none-any.whl").write_bytes(b"genuine")
    assert main(["cache", "verify", str(cache), "--manifest", str(manifest), *pinned_other]) == 1


def test_sigint_mid_drill_cancels_cleanly_and_leaves_no_container(tmp_path: Path) -> None:
    import signal
    import time

    import docker

    evidence = tmp_path / "evidence"
    process = subprocess.Popen(
        _run_dr(tmp_path, "registry-restore"), stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    lab_id = None
    deadline = time.monotonic() + 300
    for line in process.stderr:
        if "bringing up lab " in line:
            lab_id = line.split("bringing up lab ")[1].split()[0]
        if "destroying the registry storage" in line:
            process.send_signal(signal.SIGINT)
            break
        assert time.monotonic() < deadline, "the drill never reached the destruction"
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 130, rest
    assert lab_id is not None
    record = json.loads((evidence / "pipeline_run.ndjson").read_text().splitlines()[-1])
    assert record["result"] == "cancellation"
    left = docker.from_env().containers.list(all=True, filters={"label": f"org.cihub.lab={lab_id}"})
    assert left == [], "the drill's lab (and its helper) is gone"
