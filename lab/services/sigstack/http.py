"""A tiny HTTP/1.1 JSON server on the standard library, shared by the sigstack roles.

The API is small on purpose: a role writes one `Handler` (a function from `Request` to
`Response`), wraps it in `Server`, and calls `serve_until_signal`. Every request is logged as
one line on stdout (flushed), unexpected exceptions become a 500 JSON error with the
traceback on stderr, and SIGTERM/SIGINT stop the server and return exit status 0.

Example:
    def handle(request: Request) -> Response:
        if request.path == "/healthz":
            return json_response({"status": "ok"})
        raise HttpError(404, f"path {request.path} was not found")

    server = Server(handle, "0.0.0.0", 3000, name="rekor")
    raise SystemExit(serve_until_signal(server))
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

MAX_BODY = 32 * 1024 * 1024
IDLE_TIMEOUT = 60.0


class HttpError(Exception):
    """Raise from a handler to answer `{"code": code, "message": message}` with `status`."""

    def __init__(self, status: int, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = status if code is None else code


@dataclass(frozen=True)
class Request:
    """One request. `path` is percent-decoded and has no query; header names are lower case."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    client: str

    def param(self, name: str) -> str | None:
        """The first value of a query parameter."""
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        """The body parsed as JSON.

        Raises:
            HttpError: 400 if the body is not JSON.
        """
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HttpError(400, f"request body is not valid JSON: {exc}") from exc


@dataclass
class Response:
    """What a handler answers; Content-Length is added when sending."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


Handler = Callable[[Request], Response]


def json_response(
    value: Any, status: int = 200, headers: Iterable[tuple[str, str]] = ()
) -> Response:
    """A JSON response (compact, UTF-8)."""
    body = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(status, body, "application/json", list(headers))


def text_response(
    text: str | bytes, status: int = 200, content_type: str = "text/plain; charset=utf-8"
) -> Response:
    """A plain-text (or other `content_type`) response."""
    body = text.encode() if isinstance(text, str) else text
    return Response(status, body, content_type)


def error_response(status: int, message: str, code: int | None = None) -> Response:
    """`{"code": code, "message": message}`, as Rekor and Fulcio answer errors."""
    return json_response({"code": status if code is None else code, "message": message}, status)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpServer
    timeout = IDLE_TIMEOUT
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed ACK

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        started = time.perf_counter()
        owner = self.server.owner
        try:
            body = self._read_body()
        except HttpError as exc:
            response = error_response(exc.status, exc.message, exc.code)
            self.close_connection = True
        else:
            split = urlsplit(self.path)
            request = Request(
                method=self.command,
                path=unquote(split.path) or "/",
                query=parse_qs(split.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                client=f"{self.client_address[0]}:{self.client_address[1]}",
            )
            response = owner.call(request)
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)
        elapsed = (time.perf_counter() - started) * 1000
        owner.log_request(
            f'{self.client_address[0]} "{self.command} {self.path}" '
            f"{response.status} {len(response.body)} {elapsed:.1f}ms"
        )

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length_text = self.headers.get("Content-Length")
        if not length_text:
            return b""
        if not length_text.strip().isdigit():
            raise HttpError(400, "malformed Content-Length")
        length = int(length_text)
        if length > MAX_BODY:
            raise HttpError(413, "request body too large")
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise HttpError(400, "malformed chunk size") from exc
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY:
                raise HttpError(413, "request body too large")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request is written by _dispatch


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # listen backlog; the default 5 resets bursts of connections
    owner: Server


class Server:
    """A threaded HTTP server around one handler.

    `start()` serves on a background thread (for tests and in-process use); `stop()` ends it.
    Port 0 picks a free port; `address` and `url` tell which.
    """

    def __init__(
        self,
        handler: Handler,
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "sigstack",
        log: bool = True,
    ) -> None:
        """`log=False` silences the per-request lines; `log()` lines are always written."""
        self.handler = handler
        self.name = name
        self._log_enabled = log
        self._log_lock = threading.Lock()
        self._httpd = _HttpServer((host, port), _Handler)
        self._httpd.owner = self
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound host and port."""
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        """`http://host:port`, with 127.0.0.1 for a wildcard host."""
        host, port = self.address
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"http://{host}:{port}"

    def call(self, request: Request) -> Response:
        """Run the handler; map `HttpError` and unexpected exceptions to JSON errors."""
        try:
            return self.handler(request)
        except HttpError as exc:
            return error_response(exc.status, exc.message, exc.code)
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            return error_response(500, f"internal error: {type(exc).__name__}: {exc}")

    def log(self, line: str) -> None:
        """Write one timestamped line to stdout and flush it (always, even when quiet)."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self._log_lock:
            sys.stdout.write(f"{stamp} {self.name} {line}\n")
            sys.stdout.flush()

    def log_request(self, line: str) -> None:
        """Log one request line, unless the server was made with `log=False`."""
        if self._log_enabled:
            self.log(line)

    def serve_forever(self) -> None:
        """Serve on the calling thread until `stop()`."""
        self._httpd.serve_forever(poll_interval=0.2)

    def start(self) -> Server:
        """Serve on a daemon thread; returns self."""
        self._thread = threading.Thread(
            target=self.serve_forever, name=f"{self.name}-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket (in-flight requests are abandoned)."""
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None


def serve_until_signal(server: Server, on_stop: Callable[[], None] | None = None) -> int:
    """Serve until SIGTERM or SIGINT, then stop, run `on_stop`, and return 0.

    Must be called from the main thread (signal handlers can only be set there).
    """
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        server.log(f"listening on {server.address[0]}:{server.address[1]}")
        while not stop.wait(0.5):
            pass
        server.log("stopping")
    finally:
        server.stop()
        if on_stop is not None:
            on_stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


__all__ = [
    "Handler",
    "HttpError",
    "Request",
    "Response",
    "Server",
    "error_response",
    "json_response",
    "serve_until_signal",
    "text_response",
]
