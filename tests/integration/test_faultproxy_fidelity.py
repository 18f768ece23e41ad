"""Every toxic as a client on the host sees it, through the lab's own fault proxy container.

A small upstream on 127.0.0.1 (in this process) answers `SEND <n> [<hold ms>]` with n bytes
and a close (after holding the connection open that long);
the lab's fault proxy, on the host network, gets one extra proxy to it. Each test asks for a
toxic and measures what the client sees against what was asked, with tolerances wide enough
for a loaded two-core machine: lower bounds are what the toxic must at least do, upper bounds
only catch a toxic that does far more (or never stops).
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from lab import Lab

pytestmark = pytest.mark.integration

_PATTERN = bytes(range(256))


class _Upstream(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        line = self.rfile.readline().decode().split()
        if len(line) not in (2, 3) or line[0] != "SEND":
            return
        size = int(line[1])
        self.wfile.write((_PATTERN * (size // len(_PATTERN) + 1))[:size])
        self.wfile.flush()
        if len(line) == 3:
            # Like Toxiproxy, a timeout toxic closes at once when the upstream closes: hold
            # the upstream open to see the toxic's own timing.
            self.connection.settimeout(int(line[2]) / 1000)
            with contextlib.suppress(OSError):
                self.connection.recv(1)


@dataclass
class _Seen:
    """What one client saw: bytes, when (seconds after sending), and how it ended."""

    data: bytes = b""
    chunks: list[int] = field(default_factory=list)
    first_byte: float | None = None
    end: float | None = None
    error: BaseException | None = None


@pytest.fixture(scope="module")
def proxy_port(lab: Lab) -> Iterator[int]:
    """A proxy in the lab's fault proxy to the upstream above; its 127.0.0.1 port."""
    server = _Upstream(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    name = f"fidelity-{uuid.uuid4().hex[:8]}"
    upstream = f"127.0.0.1:{server.server_address[1]}"
    proxy = lab.toxiproxy.create_proxy(name, "127.0.0.1:0", upstream)
    try:
        yield proxy.listen_port
    finally:
        lab.toxiproxy.delete_proxy(name)
        server.shutdown()
        server.server_close()


@pytest.fixture
def proxy_name(lab: Lab, proxy_port: int) -> str:
    return next(p.name for p in lab.toxiproxy.proxies().values() if p.listen_port == proxy_port)


def _fetch(port: int, size: int, *, idle_timeout: float = 15.0, hold_ms: int = 0) -> _Seen:
    seen = _Seen()
    with socket.create_connection(("127.0.0.1", port), timeout=idle_timeout) as conn:
        started = time.monotonic()
        conn.sendall((f"SEND {size} {hold_ms}" if hold_ms else f"SEND {size}").encode() + b"\n")
        try:
            while chunk := conn.recv(65536):
                if seen.first_byte is None:
                    seen.first_byte = time.monotonic() - started
                seen.data += chunk
                seen.chunks.append(len(chunk))
        except OSError as exc:  # reset, or the idle timeout
            seen.error = exc
        seen.end = time.monotonic() - started
    return seen


def _expected(size: int) -> bytes:
    return (_PATTERN * (size // len(_PATTERN) + 1))[:size]


def test_control_without_toxics_is_fast_and_whole(proxy_port: int) -> None:
    seen = _fetch(proxy_port, 100_000)
    assert seen.data == _expected(100_000) and seen.error is None
    assert seen.end is not None and seen.end < 2.0


def test_latency_delays_the_answer_by_what_was_asked(
    lab: Lab, proxy_port: int, proxy_name: str
) -> None:
    base = statistics.median(_first_byte(proxy_port) for _ in range(3))
    with lab.toxiproxy.toxic(proxy_name, "latency", {"latency": 300, "jitter": 0}):
        delayed = statistics.median(_first_byte(proxy_port) for _ in range(3))
    added = delayed - base
    assert 0.27 <= added <= 0.9, f"asked 300 ms latency, the client saw {added * 1000:.0f} ms"


def test_jitter_varies_the_delay_within_what_was_asked(
    lab: Lab, proxy_port: int, proxy_name: str
) -> None:
    with lab.toxiproxy.toxic(proxy_name, "latency", {"latency": 250, "jitter": 150}):
        delays = [_first_byte(proxy_port) for _ in range(12)]
    assert min(delays) >= 0.09, f"asked 250±150 ms, the client saw as little as {min(delays)}"
    assert max(delays) <= 0.4 + 0.6, f"asked 250±150 ms, the client saw up to {max(delays)}"
    assert max(delays) - min(delays) >= 0.05, f"jitter asked, delays did not vary: {delays}"


def test_bandwidth_limits_throughput_to_the_rate_asked(
    lab: Lab, proxy_port: int, proxy_name: str
) -> None:
    size = 100_000
    with lab.toxiproxy.toxic(proxy_name, "bandwidth", {"rate": 100}):  # KB/s
        seen = _fetch(proxy_port, size)
    assert seen.data == _expected(size)
    assert seen.end is not None
    rate_kb = size / seen.end / 1000
    assert 55 <= rate_kb <= 110, f"asked 100 KB/s, the client saw {rate_kb:.0f} KB/s"


def test_timeout_drops_data_then_closes_after_the_time_asked(
    lab: Lab, proxy_port: int, proxy_name: str
) -> None:
    with lab.toxiproxy.toxic(proxy_name, "timeout", {"timeout": 500}):
        seen = _fetch(proxy_port, 1000, hold_ms=5000)
    assert seen.data == b"", "a timeout toxic lets no data through"
    assert seen.end is not None and 0.45 <= seen.end <= 2.0, f"closed after {seen.end} s"


def test_timeout_zero_holds_the_connection_open(lab: Lab, proxy_port: int, proxy_name: str) -> None:
    with lab.toxiproxy.toxic(proxy_name, "timeout", {"timeout": 0}):
        seen = _fetch(proxy_port, 1000, idle_timeout=1.5, hold_ms=4000)
    assert seen.data == b"" and isinstance(seen.error, TimeoutError), seen


def test_slicer_cuts_the_stream_into_small_delayed_pieces(
    lab: Lab, proxy_port: int, proxy_name: str
) -> None:
    size = 8192
    control = _fetch(proxy_port, size)
    attributes = {"average_size": 64, "size_variation": 32, "delay": 3000}  # delay in µs
    with lab.toxiproxy.toxic(proxy_name, "slicer", attributes):
        seen = _fetch(proxy_port, size)
    assert seen.data == _expected(size), "slicing keeps every byte, in order"
    assert len(control.chunks) <= 8, f"control: {control.chunks}"
    # ~128 slices of 32..96 bytes, 3 ms apart; the client may read two at once now and then.
    assert len(seen.chunks) >= 40, f"asked ~64-byte slices, saw {len(seen.chunks)} reads"
    assert statistics.median(seen.chunks) <= 2 * 96, f"slices: {seen.chunks[:20]}"


def test_limit_data_closes_after_the_bytes_asked(
    lab: Lab, proxy_port: int, proxy_name: str
) -> None:
    with lab.toxiproxy.toxic(proxy_name, "limit_data", {"bytes": 1000}):
        seen = _fetch(proxy_port, 10_000)
    assert seen.data == _expected(1000), f"asked 1000 bytes, got {len(seen.data)}"
    assert seen.error is None, "limit_data closes cleanly"


def test_slow_close_delays_the_close_by_the_time_asked(
    lab: Lab, proxy_port: int, proxy_name: str
) -> None:
    control = _fetch(proxy_port, 100)
    with lab.toxiproxy.toxic(proxy_name, "slow_close", {"delay": 700}):
        seen = _fetch(proxy_port, 100)
    assert seen.data == _expected(100)
    assert control.end is not None and seen.end is not None and seen.first_byte is not None
    held = seen.end - seen.first_byte
    assert 0.63 <= held <= 2.0, f"asked a 700 ms slow close, the close came {held:.3f} s late"
    assert control.end < 0.5


def test_toxicity_applies_the_toxic_to_that_share_of_connections(
    lab: Lab, proxy_port: int, proxy_name: str
) -> None:
    with lab.toxiproxy.toxic(proxy_name, "latency", {"latency": 400}, toxicity=0.5):
        delays = [_first_byte(proxy_port) for _ in range(30)]
    hit = sum(delay >= 0.3 for delay in delays)
    # Binomial(30, 0.5): outside 6..24 happens about once in 3000 runs.
    assert 6 <= hit <= 24, f"asked toxicity 0.5, {hit}/30 connections were delayed"
    assert all(delay < 0.3 or delay >= 0.36 for delay in delays), delays


def test_reset_peer_after_a_timeout_resets_at_that_time(
    lab: Lab, proxy_port: int, proxy_name: str
) -> None:
    with lab.toxiproxy.toxic(proxy_name, "reset_peer", {"timeout": 400}):
        seen = _fetch(proxy_port, 100)
    assert isinstance(seen.error, ConnectionResetError), seen
    assert seen.end is not None and 0.36 <= seen.end <= 2.0, f"reset after {seen.end} s"


def _first_byte(port: int) -> float:
    seen = _fetch(port, 64)
    assert seen.data == _expected(64) and seen.first_byte is not None
    return seen.first_byte
