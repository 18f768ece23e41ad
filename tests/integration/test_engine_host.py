"""DOCKER_HOST names the engine for everything: a drill run through a forwarded engine socket
(as `ssh -L /tmp/x.sock:/var/run/docker.sock` gives) works, and no call bypasses it. A drill
needs no folder of the driver's machine to be seen by the engine (so the engine may be on
another host), except with the opt-in disorderfs variation, which says so up front."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
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


def _run_hidden(tmp_path: Path, signing_key: Path, *extra: str) -> subprocess.CompletedProcess[str]:
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
