"""DOCKER_HOST names the engine for everything: a drill run through a forwarded engine socket
(as `ssh -L /tmp/x.sock:/var/run/docker.sock` gives) works, and no call bypasses it. A drill
needs no folder of the driver's machine to be seen by the engine (so the engine may be on
another host), except with the opt-in disorderfs variation, which says so up front."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from socketserver import BaseRequestHandler, ThreadingUnixStreamServer

import pytest

from lab.resources import resource_path

pytestmark = pytest.mark.integration

SCENARIO = resource_path("scenarios", "determinism", "c-hello.yaml")
SUBJECTS = resource_path("scenarios", "subjects")


def _engine_socket() -> str:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        pytest.fail(f"this test forwards a local engine socket; DOCKER_HOST is {host}")
    return host.removeprefix("unix://")


class _Forwarder(ThreadingUnixStreamServer):
    """A unix socket that relays every connection to the engine's socket and counts them."""

    daemon_threads = True

    def __init__(self, path: Path, engine: str) -> None:
        self.engine = engine
        self.connections = 0
        super().__init__(str(path), _Relay)


class _Relay(BaseRequestHandler):
    server: _Forwarder

    def handle(self) -> None:
        self.server.connections += 1
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as upstream:
            upstream.connect(self.server.engine)
            pump = threading.Thread(target=_pipe, args=(upstream, self.request), daemon=True)
            pump.start()
            _pipe(self.request, upstream)
            pump.join()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def forwarded_engine(tmp_path: Path) -> Iterator[_Forwarder]:
    server = _Forwarder(tmp_path / "engine.sock", _engine_socket())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_a_drill_runs_on_the_engine_that_docker_host_names(
    forwarded_engine: _Forwarder, signing_key: Path, tmp_path: Path
) -> None:
    evidence = tmp_path / "evidence"
    env = {**os.environ, "DOCKER_HOST": f"unix://{forwarded_engine.server_address}"}
    done = subprocess.run(
        [
            *(sys.executable, "-m", "harness", "run", "determinism"),
            *("--scenario", str(SCENARIO), "--evidence-dir", str(evidence)),
            *("--sign", f"key:{signing_key}", "--no-culprits", "--json"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert forwarded_engine.connections > 0, "nothing reached the engine DOCKER_HOST names"
    (line,) = (evidence / "pipeline_run.ndjson").read_text().splitlines()
    record = json.loads(line)
    assert record["scenario"]["name"] == "c-hello"
    # c-hello links in directory order: the builds ran (on the forwarded engine) and differ.
    assert record["determinism"]["verdict"] == "not-reproducible", done.stderr
    assert len(set(record["determinism"]["digests"].values())) == 2


def test_an_engine_that_does_not_answer_is_one_clear_error(
    signing_key: Path, tmp_path: Path
) -> None:
    dead = tmp_path / "nobody.sock"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "harness", "run", "determinism"),
            *("--scenario", str(SCENARIO), "--evidence-dir", str(tmp_path / "evidence")),
            *("--sign", f"key:{signing_key}", "--no-culprits"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_HOST": f"unix://{dead}"},
        timeout=120,
    )
    assert done.returncode == 2
    assert f"no Docker engine answers at unix://{dead}" in done.stderr
    assert "Traceback" not in done.stderr


_HIDDEN = 'mount -t tmpfs -o mode=0755 hidden "$1" && cp -a "$2" "$1/" && shift 2 && exec "$@"'
"""Runs a command with a copy of a subject in a tmpfs of its own mount namespace: a folder the
engine (in the host's namespace) can't see, as on another host."""


def _run_hidden(
    tmp_path: Path, signing_key: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1) to hide a folder from the engine")
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "true"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here: {probe.stderr.decode().strip()}")
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    return subprocess.run(
        [
            *("unshare", "-m", "--propagation", "private", "sh", "-c", _HIDDEN, "sh"),
            *(str(hidden), str(SUBJECTS / "c-hello")),
            *(sys.executable, "-m", "harness", "run", "determinism"),
            *("--subject", str(hidden / "c-hello"), "--build", "make", "--artifacts", "hello"),
            *("--evidence-dir", str(tmp_path / "evidence"), "--image", "builder-c"),
            *("--sign", f"key:{signing_key}", "--no-culprits", "--json", *extra),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def test_a_drill_builds_a_subject_the_engine_cannot_see(signing_key: Path, tmp_path: Path) -> None:
    """The subject goes to the builds over the engine's API: a folder the engine can't see
    (bind-mounting it would give an empty folder) builds as it would anywhere."""
    done = _run_hidden(tmp_path, signing_key)
    (line,) = (tmp_path / "evidence" / "pipeline_run.ndjson").read_text().splitlines()
    record = json.loads(line)
    # c-hello links in directory order: both built (from the whole subject) and differ
    assert record["determinism"]["verdict"] == "not-reproducible", done.stderr
    assert len(set(record["determinism"]["digests"].values())) == 2


def test_disorderfs_on_an_engine_that_cannot_see_the_subject_is_one_clear_error(
    signing_key: Path, tmp_path: Path
) -> None:
    done = _run_hidden(tmp_path, signing_key, "--variations=-all,+disorderfs")
    if "disorderfs" in done.stdout and "not applied" in done.stdout:
        pytest.skip("disorderfs does not apply on this host")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "the disorderfs variation (root and a FUSE mount per build) bind-mount" in (
        " ".join(done.stderr.split())
    )
    assert "does not see them" in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr


@pytest.fixture
def ssh_engine(tmp_path: Path) -> Iterator[dict[str, str]]:
    """This host's engine behind an sshd of the test's own: the environment for a drill with
    `DOCKER_HOST=ssh://user@127.0.0.1:PORT` (an `ssh` first on PATH adds the test's keys)."""
    sshd = shutil.which("sshd") or shutil.which("sshd", path="/usr/sbin:/usr/local/sbin")
    docker_cli = shutil.which("docker")
    if sshd is None or shutil.which("ssh") is None or docker_cli is None:
        pytest.skip("needs sshd, ssh and the docker CLI (`docker system dial-stdio`) here")
    _engine_socket()
    keys = tmp_path / "ssh"
    keys.mkdir(mode=0o700)
    for name in ("host", "client"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)], check=True
        )
    (keys / "authorized_keys").write_bytes((keys / "client.pub").read_bytes())
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    remote_path = f"{Path(docker_cli).parent}:/usr/local/bin:/usr/bin:/bin"
    (keys / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {keys / 'host'}\n"
        f"AuthorizedKeysFile {keys / 'authorized_keys'}\nPasswordAuthentication no\n"
        f"PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\nPidFile none\n"
        f"SetEnv PATH={remote_path}\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege separation folder
    (keys / "ssh_config").write_text(
        f"Host *\n  IdentityFile {keys / 'client'}\n  StrictHostKeyChecking no\n"
        "  UserKnownHostsFile /dev/null\n  BatchMode yes\n  LogLevel ERROR\n"
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "ssh"
    wrapper.write_text(f'#!/bin/sh\nexec {shutil.which("ssh")} -F {keys / "ssh_config"} "$@"\n')
    wrapper.chmod(0o755)
    server = subprocess.Popen(
        [sshd, "-D", "-f", str(keys / "sshd_config"), "-E", str(keys / "sshd.log")]
    )
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "DOCKER_HOST": f"ssh://{getpass.getuser()}@127.0.0.1:{port}",
    }
    try:
        for _ in range(50):
            ready = subprocess.run(
                ["ssh", "-p", str(port), "127.0.0.1", "docker version --format ok"],
                capture_output=True,
                env=env,
                check=False,
            )
            if ready.returncode == 0 or server.poll() is not None:
                break
            time.sleep(0.1)
        if ready.returncode != 0:
            pytest.skip(
                f"the test's sshd does not serve the engine: {ready.stderr.decode()[-300:]}"
            )
        yield env
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_drill_runs_on_an_engine_reached_over_ssh(
    ssh_engine: dict[str, str], signing_key: Path, tmp_path: Path
) -> None:
    """`DOCKER_HOST=ssh://...` just works (docker-py through the ssh client), on a subject the
    engine can't see: nothing but the Engine API joins the driver and the builds."""
    done = _run_hidden(tmp_path, signing_key, env=ssh_engine)
    assert done.returncode == 1, done.stderr[-2000:]
    (line,) = (tmp_path / "evidence" / "pipeline_run.ndjson").read_text().splitlines()
    record = json.loads(line)
    assert record["determinism"]["verdict"] == "not-reproducible"
    assert len(set(record["determinism"]["digests"].values())) == 2


def test_one_off_builds_pass_the_host_paths_check_on_the_local_engine(tmp_path: Path) -> None:
    """The success path of `check_host_paths`: the engine on this host sees its folders, so a
    one-off build (bind mounts, as disorderfs builds get) runs after the check, and the check
    runs once per session."""
    from harness.build import BuildSession, BuildSpec, run_build, session_builder_image
    from harness.determinism import prepare_image
    from harness.variations import VariationSpec, plan_variations
    from lab._internal.docker import docker_client

    client = docker_client()
    tag = prepare_image(client, "builder-c", "offline", None)
    with BuildSession(client, tmp_path / "work", warm=False) as session:
        image = session_builder_image(session, tag)
        plan = plan_variations(VariationSpec(), image.capabilities)
        spec = BuildSpec((SUBJECTS / "c-hello").resolve(), "make", image, ("hello",))
        first = run_build(session, spec, plan.control, "A")
        assert session.host_paths_seen
        second = run_build(session, spec, plan.control, "B")
    assert first.ok and second.ok, [first.failure() or first.log_tail(), second.failure()]
    assert first.digest is not None and first.digest.files
    assert first.digest == second.digest
