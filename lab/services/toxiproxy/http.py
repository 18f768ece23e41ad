"""A minimal HTTP/1.1 server on asyncio streams: enough for a JSON API and its clients.

It reads a request line, headers and a body (Content-Length or chunked), calls one handler,
and writes the response with Content-Length. Connections are kept alive as HTTP/1.1 says
(and for HTTP/1.0 only on request); idle ones are closed after a while.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

_logger = logging.getLogger(__name__)

MAX_LINE = 8 * 1024
MAX_HEADERS = 100
MAX_BODY = 16 * 1024 * 1024
READ_TIMEOUT = 15.0
IDLE_TIMEOUT = 60.0


@dataclass(frozen=True)
class Request:
    """One parsed request. `path` is percent-decoded; header names are lower case."""

    method: str
    target: str
    path: str
    version: str
    headers: dict[str, str]
    body: bytes
    client: str


@dataclass
class Response:
    """What a handler answers; Content-Length, Date and Connection are added on sending."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


Handler = Callable[[Request], Awaitable[Response]]


class BadRequest(Exception):
    """The bytes on the wire are not an acceptable HTTP request."""


class HttpServer:
    """Serve `handler` on a TCP address until `close()`.

    Example:
        server = HttpServer(handler)
        host, port = await server.start("127.0.0.1", 0)
        ...
        await server.close()
    """

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[object]] = set()

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen; returns the bound address (port 0 gets a free port)."""
        self._server = await asyncio.start_server(self._serve, host or None, port)
        name = self._server.sockets[0].getsockname()
        return str(name[0]), int(name[1])

    async def close(self) -> None:
        """Stop listening and drop every connection, idle or not."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        peer = writer.get_extra_info("peername")
        client = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        try:
            while True:
                try:
                    request = await _read_request(reader, writer, client)
                except BadRequest as exc:
                    await _send(writer, "HTTP/1.1", _bad_request(str(exc)), keep_alive=False)
                    return
                except (TimeoutError, asyncio.IncompleteReadError, OSError):
                    return
                if request is None:
                    return
                keep_alive = _keep_alive(request)
                response = await self._handler(request)
                await _send(writer, request.version, response, keep_alive, request.method)
                if not keep_alive:
                    return
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()


def _bad_request(reason: str) -> Response:
    return Response(
        400,
        f"400 Bad Request: {reason}".encode(),
        [("Content-Type", "text/plain; charset=utf-8")],
    )


def _keep_alive(request: Request) -> bool:
    tokens = {t.strip().lower() for t in request.headers.get("connection", "").split(",")}
    if request.version == "HTTP/1.1":
        return "close" not in tokens
    return "keep-alive" in tokens


async def _readline(reader: asyncio.StreamReader, timeout: float) -> bytes:
    try:
        line = await asyncio.wait_for(reader.readuntil(b"\n"), timeout)
    except asyncio.LimitOverrunError as exc:
        raise BadRequest("line too long") from exc
    if len(line) > MAX_LINE:
        raise BadRequest("line too long")
    return line


async def _read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: str
) -> Request | None:
    try:
        line = await _readline(reader, IDLE_TIMEOUT)
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise BadRequest("incomplete request line") from exc
        return None
    while line in (b"\r\n", b"\n"):  # tolerate blank lines between requests
        line = await _readline(reader, IDLE_TIMEOUT)
    parts = line.decode("latin-1").strip().split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest("malformed request line")
    method, target, version = parts
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        raw = await _readline(reader, READ_TIMEOUT)
        if raw in (b"\r\n", b"\n"):
            break
        name, sep, value = raw.decode("latin-1").partition(":")
        if not sep or not name.strip() or name != name.strip():
            raise BadRequest("malformed header line")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    else:
        raise BadRequest("too many headers")
    if headers.get("expect", "").lower() == "100-continue" and version == "HTTP/1.1":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = await _read_body(reader, headers)
    raw_path = target.split("?", 1)[0]
    if raw_path.startswith(("http://", "https://")):
        raw_path = "/" + raw_path.split("://", 1)[1].partition("/")[2]
    return Request(method, target, unquote(raw_path), version, headers, body, client)


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    encoding = headers.get("transfer-encoding", "").lower()
    if encoding:
        if encoding != "chunked":
            raise BadRequest(f"unsupported transfer encoding {encoding}")
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = await _readline(reader, READ_TIMEOUT)
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise BadRequest("malformed chunk size") from exc
            if size == 0:
                while (await _readline(reader, READ_TIMEOUT)) not in (b"\r\n", b"\n"):
                    pass  # trailers are ignored
                return b"".join(chunks)
            total += size
            if total > MAX_BODY:
                raise BadRequest("body too large")
            chunks.append(await asyncio.wait_for(reader.readexactly(size), READ_TIMEOUT))
            await _readline(reader, READ_TIMEOUT)
    length_text = headers.get("content-length")
    if length_text is None:
        return b""
    if not length_text.isdigit():
        raise BadRequest("malformed Content-Length")
    length = int(length_text)
    if length > MAX_BODY:
        raise BadRequest("body too large")
    return await asyncio.wait_for(reader.readexactly(length), READ_TIMEOUT)


async def _send(
    writer: asyncio.StreamWriter,
    version: str,
    response: Response,
    keep_alive: bool,
    method: str = "GET",
) -> None:
    try:
        reason = http.HTTPStatus(response.status).phrase
    except ValueError:
        reason = "Status"
    lines = [f"{version} {response.status} {reason}"]
    lines.extend(f"{name}: {value}" for name, value in response.headers)
    lines.append(f"Date: {email.utils.formatdate(time.time(), usegmt=True)}")
    no_body = response.status in (204, 304) or 100 <= response.status < 200
    if not no_body:
        lines.append(f"Content-Length: {len(response.body)}")
    if not keep_alive:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    writer.write(head if no_body or method == "HEAD" else head + response.body)
    with contextlib.suppress(ConnectionError):
        await writer.drain()
