"""DOCKER_HOST names the engine for everything: a drill run through a forwarded engine socket
(as `ssh -L /tmp/x.sock:/var/run/docker.sock` gives) works, and no call bypasses it."""

from __future__ import annotations

import contextlib
import json
import os
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
