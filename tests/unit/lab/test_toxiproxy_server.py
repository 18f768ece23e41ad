"""The fault proxy server (lab/services/toxiproxy) on real loopback sockets: its HTTP API with
upstream Toxiproxy's status codes and shapes, and every toxic's observable effect."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from lab.services.toxiproxy import VERSION, ServerThread

SERVICES = Path(__file__).resolve().parents[3] / "lab" / "services"
LATENCY_MS = 300
SLOW = 0.28  # a 300 ms effect is at least this long
FAST = 0.25  # the same exchange without the toxic takes less than this


# -- upstream servers -----------------------------------------------------------------------


class _Upstream(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def _serve(handle: Callable[[socket.socket], None]) -> Iterator[int]:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            with contextlib.suppress(OSError):
                handle(self.request)

    server = _Upstream(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def _echo(conn: socket.socket) -> None:
    while data := conn.recv(65536):
        conn.sendall(data)


def _greet_then_echo(conn: socket.socket) -> None:
    conn.sendall(b"hi\n")
    _echo(conn)


def _greet_and_close(conn: socket.socket) -> None:
    conn.sendall(b"bye\n")


@pytest.fixture(scope="module")
def echo() -> Iterator[int]:
    yield from _serve(_echo)


@pytest.fixture(scope="module")
def greeter() -> Iterator[int]:
    yield from _serve(_greet_then_echo)


@pytest.fixture(scope="module")
def closer() -> Iterator[int]:
    yield from _serve(_greet_and_close)


# -- the server and its API -----------------------------------------------------------------


class Api:
    __test__ = False

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()

    def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        data = kwargs.pop("data", None)
        if body is not None:
            data = json.dumps(body)
        return self.session.request(method, self.url + path, data=data, timeout=5, **kwargs)

    def proxy(self, upstream_port: int, name: str = "p", **fields: Any) -> int:
        body = {"name": name, "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{upstream_port}"}
        response = self.call("POST", "/proxies", {**body, **fields})
        assert response.status_code == 201, response.text
        return int(response.json()["listen"].rsplit(":", 1)[1])

    def toxic(self, proxy: str = "p", **body: Any) -> dict[str, Any]:
        response = self.call("POST", f"/proxies/{proxy}/toxics", body)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result


@pytest.fixture
def api() -> Iterator[Api]:
    with ServerThread(seed=7) as server:
        client = Api(server.url)
        yield client
        client.session.close()


def _error(response: requests.Response) -> tuple[int, dict[str, Any]]:
    return response.status_code, json.loads(response.text)


# -- socket helpers -------------------------------------------------------------------------


def _connect(port: int, timeout: float = 3.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        part = sock.recv(size - len(data))
        if not part:
            break
        data += part
    return data


def _recv_until_eof(sock: socket.socket) -> bytes:
    data = b""
    while part := sock.recv(65536):
        data += part
    return data


def _exchange(sock: socket.socket, payload: bytes = b"ping") -> tuple[bytes, float]:
    started = time.monotonic()
    sock.sendall(payload)
    data = _recv_exactly(sock, len(payload))
    return data, time.monotonic() - started


def _roundtrip(port: int, payload: bytes = b"ping") -> tuple[bytes, float]:
    with _connect(port) as sock:
        return _exchange(sock, payload)


def _assert_silent(sock: socket.socket, seconds: float) -> None:
    sock.settimeout(seconds)
    with pytest.raises(TimeoutError):
        sock.recv(1)


# -- API ------------------------------------------------------------------------------------


def test_version_is_upstreams_json_format(api: Api) -> None:
    response = api.call("GET", "/version")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json;charset=utf-8"
    assert response.json() == {"version": VERSION}


def test_create_reports_the_resolved_listen_address(api: Api, echo: int) -> None:
    body = {"name": "p", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{echo}"}
    response = api.call("POST", "/proxies", body)
    assert response.status_code == 201
    created = response.json()
    assert created["name"] == "p"
    assert created["enabled"] is True
    assert created["toxics"] == []
    host, port = created["listen"].rsplit(":", 1)
    assert host == "127.0.0.1"
    assert int(port) > 0
    assert api.call("GET", "/proxies/p").json() == created
    assert api.call("GET", "/proxies").json() == {"p": created}


def test_a_duplicate_proxy_is_409(api: Api, echo: int) -> None:
    api.proxy(echo)
    response = api.call("POST", "/proxies", {"name": "p", "upstream": "127.0.0.1:1"})
    assert _error(response) == (409, {"error": "proxy already exists", "status": 409})
    assert response.headers["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{not json", "bad request body"),
        ("", "bad request body: EOF"),
        (json.dumps({"upstream": "127.0.0.1:1"}), "missing required field: name"),
        (json.dumps({"name": "x"}), "missing required field: upstream"),
        (json.dumps({"name": 1, "upstream": "127.0.0.1:1"}), "cannot unmarshal number"),
        (json.dumps(["x"]), "cannot unmarshal array"),
    ],
)
def test_bad_proxy_bodies_are_400(api: Api, body: str, message: str) -> None:
    status, error = _error(api.call("POST", "/proxies", data=body))
    assert status == 400
    assert error["status"] == 400
    assert message in error["error"]
    assert api.call("GET", "/proxies").json() == {}


def test_a_listen_address_in_use_is_500_as_upstream(api: Api, echo: int) -> None:
    port = api.proxy(echo, name="first")
    body = {"name": "second", "listen": f"127.0.0.1:{port}", "upstream": "127.0.0.1:1"}
    status, error = _error(api.call("POST", "/proxies", body))
    assert status == 500
    assert "address already in use" in error["error"]
    assert "second" not in api.call("GET", "/proxies").json()


def test_missing_things_are_404(api: Api, echo: int) -> None:
    not_found = {"error": "proxy not found", "status": 404}
    assert _error(api.call("GET", "/proxies/nope")) == (404, not_found)
    assert _error(api.call("DELETE", "/proxies/nope")) == (404, not_found)
    assert _error(api.call("PATCH", "/proxies/nope", {"enabled": False})) == (404, not_found)
    assert _error(api.call("GET", "/proxies/nope/toxics")) == (404, not_found)
    api.proxy(echo)
    toxic_not_found = (404, {"error": "toxic not found", "status": 404})
    assert _error(api.call("GET", "/proxies/p/toxics/nope")) == toxic_not_found
    assert _error(api.call("DELETE", "/proxies/p/toxics/nope")) == toxic_not_found
    assert _error(api.call("PATCH", "/proxies/p/toxics/nope", {})) == toxic_not_found


def test_routing_errors_match_gorilla_mux(api: Api) -> None:
    missing = api.call("GET", "/nothing")
    assert (missing.status_code, missing.text) == (404, "404 page not found\n")
    assert api.call("PUT", "/proxies").status_code == 405
    assert api.call("GET", "/reset").status_code == 405
    browser = api.call("GET", "/proxies", headers={"User-Agent": "Mozilla/5.0"})
    assert browser.status_code == 403


def test_update_and_delete_a_proxy(api: Api, echo: int, greeter: int) -> None:
    port = api.proxy(echo)
    assert _roundtrip(port)[0] == b"ping"
    updated = api.call("POST", "/proxies/p", {"upstream": f"127.0.0.1:{greeter}"})
    assert updated.status_code == 200
    assert updated.json()["upstream"] == f"127.0.0.1:{greeter}"
    with _connect(port) as sock:  # same listen address, new upstream
        assert _recv_exactly(sock, 3) == b"hi\n"
    patched = api.call("PATCH", "/proxies/p", {"listen": "127.0.0.1:0"})
    new_port = int(patched.json()["listen"].rsplit(":", 1)[1])
    assert new_port != port
    deleted = api.call("DELETE", "/proxies/p")
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert api.call("GET", "/proxies/p").status_code == 404
    with pytest.raises(ConnectionRefusedError):
        _connect(new_port)


def test_toxic_crud(api: Api, echo: int) -> None:
    api.proxy(echo)
    created = api.call(
        "POST", "/proxies/p/toxics", {"type": "latency", "attributes": {"latency": 5}}
    )
    assert created.status_code == 200  # upstream answers 200, not 201
    assert created.json() == {
        "attributes": {"latency": 5, "jitter": 0},
        "name": "latency_downstream",
        "type": "latency",
        "stream": "downstream",
        "toxicity": 1,
    }
    again = api.call("POST", "/proxies/p/toxics", {"type": "latency"})
    assert _error(again) == (409, {"error": "toxic already exists", "status": 409})
    api.toxic(type="latency", stream="upstream", toxicity=0.5)
    names = [t["name"] for t in api.call("GET", "/proxies/p/toxics").json()]
    assert names == ["latency_upstream", "latency_downstream"]  # upstream chain first
    shown = api.call("GET", "/proxies/p/toxics/latency_upstream").json()
    assert shown["toxicity"] == 0.5
    body = {"attributes": {"jitter": 2}}
    updated = api.call("PATCH", "/proxies/p/toxics/latency_downstream", body).json()
    assert updated["attributes"] == {"latency": 5, "jitter": 2}
    assert updated["toxicity"] == 1
    assert api.call("GET", "/proxies/p").json()["toxics"][1] == updated
    assert api.call("DELETE", "/proxies/p/toxics/latency_downstream").status_code == 204
    assert [t["name"] for t in api.call("GET", "/proxies/p/toxics").json()] == ["latency_upstream"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"type": "nonsense"}, "invalid toxic type"),
        ({"type": "latency", "stream": "sideways"}, "stream was invalid"),
        ({"type": "latency", "attributes": {"latency": "slow"}}, "bad request body"),
        ({"type": "slicer", "attributes": {"average_size": 0}}, "bad request body"),
    ],
)
def test_bad_toxics_are_400(api: Api, echo: int, body: dict[str, Any], message: str) -> None:
    api.proxy(echo)
    status, error = _error(api.call("POST", "/proxies/p/toxics", body))
    assert status == 400
    assert message in error["error"]
    assert api.call("GET", "/proxies/p/toxics").json() == []


def test_populate_creates_keeps_and_replaces(api: Api, echo: int, greeter: int) -> None:
    first = [{"name": "a", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{echo}"}]
    response = api.call("POST", "/populate", first)
    assert response.status_code == 201
    (created,) = response.json()["proxies"]
    listen = created["listen"]
    api.toxic("a", type="latency", attributes={"latency": 1})
    same = [{"name": "a", "listen": listen, "upstream": f"127.0.0.1:{echo}"}]
    (kept,) = api.call("POST", "/populate", same).json()["proxies"]
    assert kept["listen"] == listen
    assert len(kept["toxics"]) == 1  # untouched
    other = [{"name": "a", "listen": listen, "upstream": f"127.0.0.1:{greeter}"}]
    (replaced,) = api.call("POST", "/populate", other).json()["proxies"]
    assert replaced["upstream"] == f"127.0.0.1:{greeter}"
    assert replaced["toxics"] == []  # a new proxy
    assert replaced["listen"] == listen


def test_populate_checks_every_proxy_before_creating_any(api: Api, echo: int) -> None:
    body = [{"name": "ok", "upstream": f"127.0.0.1:{echo}"}, {"upstream": "127.0.0.1:1"}]
    response = api.call("POST", "/populate", body)
    assert response.status_code == 400
    assert response.json()["error"] == "missing required field: name at proxy 2"
    assert api.call("GET", "/proxies").json() == {}
    empty = api.call("POST", "/populate", [])
    assert (empty.status_code, empty.json()) == (201, {"proxies": None})


def test_populate_can_create_disabled_proxies(api: Api, echo: int) -> None:
    body = [{"name": "off", "listen": "127.0.0.1:0", "upstream": "x:1", "enabled": False}]
    (proxy,) = api.call("POST", "/populate", body).json()["proxies"]
    assert proxy["enabled"] is False
    assert proxy["listen"] == "127.0.0.1:0"  # not resolved until it listens


def test_reset_enables_proxies_and_removes_toxics(api: Api, echo: int) -> None:
    port = api.proxy(echo)
    api.toxic(type="timeout", attributes={"timeout": 0})
    assert api.call("POST", "/proxies/p", {"enabled": False}).json()["enabled"] is False
    response = api.call("POST", "/reset")
    assert (response.status_code, response.content) == (204, b"")
    proxy = api.call("GET", "/proxies/p").json()
    assert proxy["enabled"] is True
    assert proxy["toxics"] == []
    assert _roundtrip(port)[0] == b"ping"


# -- data path ------------------------------------------------------------------------------


def test_data_passes_both_ways_without_toxics(api: Api, echo: int) -> None:
    port = api.proxy(echo)
    payload = os.urandom(200_000)
    # Only the bytes: 200 KB through a loaded machine can take longer than FAST with no toxic.
    assert _roundtrip(port, payload)[0] == payload


def test_disable_closes_connections_and_enable_listens_again(api: Api, echo: int) -> None:
    port = api.proxy(echo)
    with _connect(port) as sock:
        assert _exchange(sock)[0] == b"ping"
        assert api.call("POST", "/proxies/p", {"enabled": False}).status_code == 200
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(1) == b""
    with pytest.raises(ConnectionRefusedError):
        _connect(port)
    enabled = api.call("PATCH", "/proxies/p", {"enabled": True}).json()
    assert enabled["enabled"] is True
    assert enabled["listen"] == f"127.0.0.1:{port}"
    assert _roundtrip(port)[0] == b"ping"


def test_a_dead_upstream_closes_the_client(api: Api) -> None:
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        dead = spare.getsockname()[1]
    port = api.proxy(dead)
    with _connect(port) as sock:
        assert _recv_until_eof(sock) == b""


def test_latency_delays_downstream_data(api: Api, echo: int) -> None:
    port = api.proxy(echo)
    assert _roundtrip(port)[1] < FAST
    api.toxic(type="latency", attributes={"latency": LATENCY_MS})
    data, elapsed = _roundtrip(port)
    assert data == b"ping"
    assert SLOW <= elapsed < 3.0


def test_latency_stream_picks_the_direction(api: Api, greeter: int) -> None:
    port = api.proxy(greeter)
    api.toxic(type="latency", stream="upstream", attributes={"latency": LATENCY_MS})
    with _connect(port) as sock:
        started = time.monotonic()
        assert _recv_exactly(sock, 3) == b"hi\n"  # the server's greeting isn't delayed
        assert time.monotonic() - started < FAST
        data, elapsed = _exchange(sock)  # what the client sends is
        assert data == b"ping"
        assert elapsed >= SLOW
    api.call("DELETE", "/proxies/p/toxics/latency_upstream")
    api.toxic(type="latency", stream="downstream", attributes={"latency": LATENCY_MS})
    with _connect(port) as sock:
        started = time.monotonic()
        assert _recv_exactly(sock, 3) == b"hi\n"
        assert time.monotonic() - started >= SLOW


def test_toxics_added_and_removed_affect_open_connections(api: Api, echo: int) -> None:
    port = api.proxy(echo)
    with _connect(port) as sock:
        assert _exchange(sock)[1] < FAST
        api.toxic(type="latency", attributes={"latency": LATENCY_MS})
        assert _exchange(sock)[1] >= SLOW
        api.call("DELETE", "/proxies/p/toxics/latency_downstream")
        data, elapsed = _exchange(sock)
        assert data == b"ping"
        assert elapsed < FAST


def test_removing_latency_releases_held_data_at_once(api: Api, echo: int) -> None:
    port = api.proxy(echo)
    api.toxic(type="latency", attributes={"latency": 5000})
    with _connect(port) as sock:
        started = time.monotonic()
        sock.sendall(b"ping")
        _assert_silent(sock, 0.2)
        api.call("DELETE", "/proxies/p/toxics/latency_downstream")
        sock.settimeout(3)
        assert _recv_exactly(sock, 4) == b"ping"
        assert time.monotonic() - started < 2.0


def test_toxicity_zero_never_applies_and_one_always(api: Api, echo: int) -> None:
    port = api.proxy(echo)
    api.toxic(name="never", type="latency", toxicity=0.0, attributes={"latency": LATENCY_MS})
    assert all(_roundtrip(port)[1] < FAST for _ in range(3))
    api.call("PATCH", "/proxies/p/toxics/never", {"toxicity": 1.0})
    assert all(_roundtrip(port)[1] >= SLOW for _ in range(2))


def test_an_updated_toxicity_applies_to_open_connections(api: Api, echo: int) -> None:
    port = api.proxy(echo)
    api.toxic(type="latency", attributes={"latency": LATENCY_MS})
    with _connect(port) as sock:
        assert _exchange(sock)[1] >= SLOW
        api.call("POST", "/proxies/p/toxics/latency_downstream", {"toxicity": 0})
        assert _exchange(sock)[1] < FAST


def test_bandwidth_limits_the_rate(api: Api, echo: int) -> None:
    port = api.proxy(echo)
    payload = os.urandom(25_000)
    assert _roundtrip(port, payload)[1] < FAST
    api.toxic(type="bandwidth", attributes={"rate": 50})  # 50 KB/s: 25 KB take 0.5 s
    data, elapsed = _roundtrip(port, payload)
    assert data == payload
    assert 0.4 <= elapsed < 3.0


def test_timeout_drops_data_and_closes_after_the_timeout(api: Api, echo: int) -> None:
    port = api.proxy(echo)
    api.toxic(type="timeout", attributes={"timeout": LATENCY_MS})
    with _connect(port) as sock:
        started = time.monotonic()
        sock.sendall(b"ping")
        assert _recv_until_eof(sock) == b""
        assert SLOW <= time.monotonic() - started < 3.0


def test_timeout_zero_holds_until_removed(api: Api, echo: int) -> None:
    port = api.proxy(echo)
    with _connect(port) as sock:
        assert _exchange(sock)[0] == b"ping"
        api.toxic(type="timeout", attributes={"timeout": 0})
        sock.sendall(b"ping")
        _assert_silent(sock, 0.5)  # no data, no close
        api.call("DELETE", "/proxies/p/toxics/timeout_downstream")
        sock.settimeout(3)
        assert _recv_until_eof(sock) == b""  # upstream closes what a timeout held


def test_a_timeout_added_to_an_idle_connection_closes_it(api: Api, echo: int) -> None:
    port = api.proxy(echo)
    with _connect(port) as sock:
        assert _exchange(sock)[0] == b"ping"
        started = time.monotonic()
        api.toxic(type="timeout", stream="upstream", attributes={"timeout": 200})
        assert _recv_until_eof(sock) == b""
        assert 0.18 <= time.monotonic() - started < 3.0


def test_reset_peer_resets_the_connection(api: Api, echo: int) -> None:
    port = api.proxy(echo)
    api.toxic(type="reset_peer", attributes={"timeout": 0})
    with _connect(port) as sock:
        sock.sendall(b"ping")
        with pytest.raises(ConnectionResetError):
            _recv_until_eof(sock)


def test_reset_peer_waits_its_timeout_on_open_connections(api: Api, echo: int) -> None:
    port = api.proxy(echo)
    with _connect(port) as sock:
        assert _exchange(sock)[0] == b"ping"
        api.toxic(type="reset_peer", stream="upstream", attributes={"timeout": LATENCY_MS})
        started = time.monotonic()
        sock.sendall(b"ping")
        with pytest.raises(ConnectionResetError):
            _recv_until_eof(sock)
        assert SLOW <= time.monotonic() - started < 3.0


def test_limit_data_closes_after_the_limit(api: Api, echo: int) -> None:
    port = api.proxy(echo)
    api.toxic(type="limit_data", attributes={"bytes": 10})
    with _connect(port) as sock:
        sock.sendall(bytes(range(100)))
        assert _recv_until_eof(sock) == bytes(range(10))


def test_limit_data_counts_from_when_it_was_added(api: Api, echo: int) -> None:
    port = api.proxy(echo)
    with _connect(port) as sock:
        assert _exchange(sock, b"x" * 50)[0] == b"x" * 50
        api.toxic(type="limit_data", attributes={"bytes": 6})
        sock.sendall(b"abcdefghij")
        assert _recv_until_eof(sock) == b"abcdef"


def test_limit_data_upstream_limits_what_the_server_gets(api: Api) -> None:
    received: list[bytes] = []
    done = threading.Event()

    def record(conn: socket.socket) -> None:
        while data := conn.recv(65536):
            received.append(data)
        done.set()

    for upstream in _serve(record):
        port = api.proxy(upstream)
        api.toxic(type="limit_data", stream="upstream", attributes={"bytes": 6})
        with _connect(port) as sock:
            sock.sendall(b"abcdefghij")
            assert _recv_until_eof(sock) == b""  # the upstream side closed: so does the client
        assert done.wait(3)
    assert b"".join(received) == b"abcdef"


def test_slicer_sends_data_in_delayed_pieces(api: Api, echo: int) -> None:
    port = api.proxy(echo)
    payload = bytes(range(100))
    attributes = {"average_size": 10, "size_variation": 0, "delay": 20_000}  # 20 ms apart
    api.toxic(type="slicer", attributes=attributes)
    with _connect(port) as sock:
        started = time.monotonic()
        sock.sendall(payload)
        parts: list[bytes] = []
        while sum(map(len, parts)) < len(payload):
            part = sock.recv(1000)
            assert part
            parts.append(part)
        elapsed = time.monotonic() - started
    assert b"".join(parts) == payload
    assert len(parts) >= 5
    assert all(len(part) <= 20 for part in parts[:-1])
    assert 0.15 <= elapsed < 3.0


def test_slow_close_delays_the_close(api: Api, closer: int) -> None:
    port = api.proxy(closer)
    with _connect(port) as sock:
        started = time.monotonic()
        assert _recv_until_eof(sock) == b"bye\n"
        assert time.monotonic() - started < FAST
    api.toxic(type="slow_close", attributes={"delay": LATENCY_MS})
    with _connect(port) as sock:
        started = time.monotonic()
        assert _recv_exactly(sock, 4) == b"bye\n"
        assert time.monotonic() - started < FAST  # data isn't delayed, only the close
        assert _recv_until_eof(sock) == b""
        assert SLOW <= time.monotonic() - started < 3.0


# -- the process ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_process_populates_from_config_logs_and_exits_on_sigterm(
    tmp_path: Path, echo: int
) -> None:
    proxy_port, api_port = _free_port(), _free_port()
    config = tmp_path / "proxies.json"
    proxies = [{"name": "e", "listen": f"127.0.0.1:{proxy_port}", "upstream": f"127.0.0.1:{echo}"}]
    config.write_text(json.dumps(proxies))
    env = {**os.environ, "PYTHONPATH": str(SERVICES)}
    command = [sys.executable, "-m", "toxiproxy", "--host", "127.0.0.1", "--port", str(api_port)]
    process = subprocess.Popen(
        [*command, "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                response = requests.get(f"http://127.0.0.1:{api_port}/proxies", timeout=1)
                break
            except requests.ConnectionError:
                assert process.poll() is None, "the server exited early"
                assert time.monotonic() < deadline, "the server did not start listening"
                threading.Event().wait(0.05)
        assert response.json()["e"]["listen"] == f"127.0.0.1:{proxy_port}"
        assert _roundtrip(proxy_port)[0] == b"ping"
        process.terminate()
        output, _ = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert "populated 1 proxies" in output
    assert "api GET /proxies -> 200" in output
    assert "proxy e: accepted client" in output
