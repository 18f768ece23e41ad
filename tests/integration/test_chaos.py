"""Chaos drills against the real lab: plain `chaos run`, signals mid-method, and refusals.

Uses the session lab; every test leaves it without toxics and with every service running.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from chaoslib.exceptions import ActivityFailed  # type: ignore[import-untyped]

from harness._cli import main
from harness.chaos import actions, lab_faults, lab_vars, probes
from harness.chaos.actions import kill_container, pause_container
from lab import Lab

pytestmark = pytest.mark.integration

SCENARIOS = Path(__file__).parents[2] / "scenarios" / "chaos"
BIN = Path(sys.executable).parent


def _wait_for(what: str, check: Callable[[], bool], within: float = 300.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {within} s")


def _ended(process: subprocess.Popen[str]) -> bool:
    """True never: a drill that ended before its fault was seen fails here, with its output."""
    if process.poll() is None:
        return False
    out, err = process.communicate()
    raise AssertionError(
        f"the drill ended (exit {process.returncode}) before its fault was seen:\n"
        + out[-2000:]
        + err[-3000:]
    )


HOLDS = {
    # The append to the paused log waits this long for an answer: the log stays paused.
    "log-pause-append": ("append-times-out", "timeout_s", 900),
    # Each sample takes the toxic's 1.5 s: the latency stays measured, and in place.
    "registry-latency-push": ("latency-measured", "samples", 600),
}
"""Per experiment, the method activity and argument that keep its fault in place for minutes.

The signal test must signal while the fault is in place. Waiting for the fault to show, then
signalling, races the experiment's own clock: under load a container inspect or a fault-proxy
call can take longer than the fault lasts (a 30 s pause), so the fault was missed, or seen just
before it ended and the signal came after the method (the journal `completed`, not
`interrupted`). Held until the signal, the fault is there whenever the test sees it."""


def _holding_the_fault(name: str, folder: Path) -> Path:
    """A copy of experiment `name` whose fault stays until the run is signalled (`HOLDS`)."""
    (source,) = [p for p in SCENARIOS.glob(f"{name}.*") if p.stem == name]  # not the twin
    document = yaml.safe_load(source.read_text())
    activity, argument, value = HOLDS[name]
    (step,) = [a for a in document["method"] if a["name"] == activity]
    step["provider"]["arguments"][argument] = value
    target = folder / f"{name}.yaml"
    target.write_text(yaml.safe_dump(document, sort_keys=False))
    return target


def _toxics(lab: Lab) -> list[str]:
    api = lab.toxiproxy
    return [f"{p}/{t.name}" for p in api.proxies() for t in api.toxics(p)]


def test_an_experiment_runs_under_plain_chaos_run(lab: Lab, tmp_path: Path) -> None:
    var_file = tmp_path / "lab.json"
    assert main(["lab", "vars", "--lab", lab.config.lab_id, "-o", str(var_file)]) == 0
    assert json.loads(var_file.read_text())["configuration"]["lab_id"] == lab.config.lab_id
    journal = tmp_path / "journal.json"
    done = subprocess.run(
        [
            str(BIN / "chaos"),
            "--no-log-file",
            "run",
            "--var-file",
            str(var_file),
            "--rollback-strategy",
            "always",
            "--journal-path",
            str(journal),
            str(SCENARIOS / "registry-latency-push.json"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ran = json.loads(journal.read_text())
    assert ran["status"] == "completed" and not ran["deviated"]
    assert ran["steady_states"]["before"]["steady_state_met"]
    assert ran["steady_states"]["after"]["steady_state_met"]
    assert [r["status"] for r in ran["run"]] == ["succeeded"] * len(ran["run"])
    assert ran["rollbacks"] and ran["rollbacks"][0]["status"] == "succeeded"
    assert lab_faults(lab_vars(lab.endpoints)) == ()


@pytest.mark.parametrize(
    ("experiment", "signum", "faulted"),
    [
        ("registry-latency-push", signal.SIGINT, "latency"),
        ("log-pause-append", signal.SIGTERM, "paused"),
    ],
)
def test_a_signal_mid_method_plays_the_rollbacks_and_leaves_nothing_behind(
    lab: Lab, tmp_path: Path, experiment: str, signum: int, faulted: str
) -> None:
    evidence = tmp_path / "evidence"
    process = subprocess.Popen(
        [
            str(BIN / "cihub"),
            "run",
            "chaos",
            str(_holding_the_fault(experiment, tmp_path)),
            "--lab",
            lab.config.lab_id,
            "--evidence-dir",
            str(evidence),
            "--sign",
            "keyless",
        ],
        cwd=Path(__file__).parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if faulted == "latency":
            _wait_for(
                "the latency toxic",
                lambda: "registry/cihub-latency" in _toxics(lab) or _ended(process),
            )
        else:
            rekor = lab.service_container("rekor")

            def paused() -> bool:
                rekor.reload()
                return bool(rekor.attrs["State"]["Status"] == "paused")

            _wait_for("the log paused", lambda: paused() or _ended(process))
        process.send_signal(signum)
        out, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, out + err[-3000:]
    assert lab_faults(lab_vars(lab.endpoints)) == (), err[-3000:]
    (bundle,) = evidence.glob("chaos-*")
    journal = json.loads((bundle / "chaos" / "journal.json").read_text())
    assert journal["status"] == "interrupted", err[-3000:]
    assert [r["status"] for r in journal["rollbacks"]] == ["succeeded"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert "cancel" in json.dumps(manifest["predicate"]).lower()


def _foreign(configuration: Mapping[str, Any], **changes: Any) -> dict[str, Any]:
    return {**configuration, **changes}


def test_container_faults_reach_only_the_configured_labs_services(lab: Lab) -> None:
    configuration = lab_vars(lab.endpoints)
    with pytest.raises(ActivityFailed, match="has 0 registry containers"):
        kill_container("registry", configuration=_foreign(configuration, lab_id="not-a-lab"))
    with pytest.raises(ActivityFailed, match="may not be faulted"):
        pause_container("faultproxy", configuration=configuration)
    with pytest.raises(ActivityFailed, match=r"configuration\.lab_id is not set"):
        pause_container("rekor", configuration={})
    assert lab_faults(configuration) == ()


def test_each_action_and_its_rollback_against_the_lab(lab: Lab) -> None:
    configuration = lab_vars(lab.endpoints)
    storage = "/var/lib/docker-registry"
    assert actions.fill_volume("registry", storage, 3, configuration=configuration) == 3 << 20
    assert actions.release_volume("registry", storage, configuration=configuration)

    actions.add_toxic(
        "registry", "latency", "slow", attributes={"latency": 50}, configuration=configuration
    )
    actions.update_toxic("registry", "slow", {"latency": 700}, configuration=configuration)
    assert probes.latency_in_effect("registry", 600, configuration=configuration) >= 600
    assert actions.remove_toxic("registry", "slow", configuration=configuration)
    assert not actions.remove_toxic("registry", "slow", configuration=configuration)  # idempotent

    assert actions.disconnect_network("registry", configuration=configuration)
    assert not probes.registry_healthy(timeout=3, configuration=configuration)
    assert actions.reconnect_network("registry", configuration=configuration)
    assert probes.registry_healthy(configuration=configuration)

    assert actions.stop_container("registry", configuration=configuration) == "exited"
    assert actions.start_container("registry", configuration=configuration) == "running"
    assert actions.restart_container("registry", configuration=configuration) == "running"
    assert probes.registry_healthy(configuration=configuration)
    assert lab_faults(configuration) == ()


def test_no_fault_check_passes_when_its_fault_is_not_applied(lab: Lab) -> None:
    configuration = lab_vars(lab.endpoints)
    assert lab_faults(configuration) == ()
    checks: list[Callable[[], object]] = [
        lambda: probes.latency_in_effect("registry", 500, configuration=configuration),
        lambda: probes.resets_in_effect("rekor", 10, configuration=configuration),
        lambda: probes.upload_rate_at_most(8, 64, configuration=configuration),
        lambda: probes.no_answer_within("registry", 2, configuration=configuration),
        lambda: probes.container_state_is("rekor", "paused", configuration=configuration),
        lambda: probes.container_state_is("registry", "exited", configuration=configuration),
    ]
    for check in checks:
        with pytest.raises(ActivityFailed):
            check()


def test_signed_bundles_verify_and_tampered_ones_do_not(lab: Lab, tmp_path: Path) -> None:
    from harness.chaos import workloads

    configuration = {**lab_vars(lab.endpoints), "state_dir": str(tmp_path)}
    signed = workloads.sign_artifacts(1, configuration=configuration)
    assert signed["signed"] == 1, signed
    assert probes.bundles_verify(configuration=configuration)
    ((artifact, bundle),) = workloads.signed_bundles(configuration)
    genuine_artifact, genuine_bundle = artifact.read_bytes(), bundle.read_text()

    artifact.write_bytes(genuine_artifact + b"tampered")
    with pytest.raises(ActivityFailed, match="does not verify"):
        probes.bundles_verify(configuration=configuration)
    artifact.write_bytes(genuine_artifact)

    document = json.loads(genuine_bundle)
    del document["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
    bundle.write_text(json.dumps(document))
    with pytest.raises(ActivityFailed, match="no inclusion proof"):
        probes.bundles_verify(configuration=configuration)

    document = json.loads(genuine_bundle)
    document["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["rootHash"] = (
        "AAAA"
        + document["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["rootHash"][4:]
    )
    bundle.write_text(json.dumps(document))
    with pytest.raises(ActivityFailed):
        probes.bundles_verify(configuration=configuration)

    bundle.write_text("{not json")
    with pytest.raises(ActivityFailed):
        probes.bundles_verify(configuration=configuration)


def test_the_log_probe_catches_a_rolled_back_checkpoint(lab: Lab, tmp_path: Path) -> None:
    configuration = {**lab_vars(lab.endpoints), "state_dir": str(tmp_path)}
    assert probes.log_consistent(configuration=configuration)
    assert probes.log_consistent(configuration=configuration)  # consistent with itself
    (state_file,) = (tmp_path / "monitor").glob("*.json")
    state = json.loads(state_file.read_text())
    state["size"] += 1000  # the monitor once saw a bigger log: now it looks rolled back
    state_file.write_text(json.dumps(state))
    with pytest.raises(ActivityFailed, match="log check failed"):
        probes.log_consistent(configuration=configuration)


def test_a_pushed_artifact_resolves_by_digest_and_a_missing_one_does_not(
    lab: Lab, tmp_path: Path
) -> None:
    from harness.chaos import workloads

    configuration = {**lab_vars(lab.endpoints), "state_dir": str(tmp_path)}
    pushed = workloads.push_artifact("cihub/chaos/probe-test", 1, "t1", configuration=configuration)
    repository = "cihub/chaos/probe-test"
    assert probes.manifest_resolves(repository, pushed["manifest"], configuration=configuration)
    assert not probes.manifest_absent(repository, "t1", configuration=configuration)
    assert probes.manifest_absent(repository, "never-pushed", configuration=configuration)
    missing = "sha256:" + "0" * 64
    assert not probes.manifest_resolves(repository, missing, configuration=configuration)
    assert probes.pushed_artifacts_verify(configuration=configuration)
