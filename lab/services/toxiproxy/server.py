"""The fault proxy server: the API on one port, proxies on theirs, one asyncio event loop.

`python3 -m toxiproxy --host 0.0.0.0 --port 8474 [--config FILE] [--seed N]` runs it (the
single-dash spellings of toxiproxy-server, `-host` etc., work too). It logs one line per API
request and per proxy event to stdout and exits 0 on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import signal
import sys
import threading
from collections.abc import Coroutine, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from .api import VERSION, Api, parse_populate
from .errors import ApiError
from .http import HttpServer
from .proxy import ProxyCollection, format_address

_logger = logging.getLogger(__name__)

T = TypeVar("T")


class ToxiproxyServer:
    """The API server and its proxies, living on the running event loop.

    Example:
        server = ToxiproxyServer("127.0.0.1", 0)
        await server.start()
        print(server.url)
        ...
        await server.close()
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8474, seed: int | None = None):
        self.host = host
        self.port = port
        self.collection = ProxyCollection(random.Random(seed))
        self.api = Api(self.collection)
        self._http = HttpServer(self.api.handle)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{format_address(host, self.port)}"

    async def start(self) -> None:
        """Listen for the API; a port 0 becomes the bound port."""
        _, self.port = await self._http.start(self.host, self.port)
        _logger.info(
            "toxiproxy API %s listening on %s", VERSION, format_address(self.host, self.port)
        )

    async def populate_file(self, path: Path) -> None:
        """Create the proxies listed in a JSON file, like toxiproxy-server's `-config`.

        Errors are logged, not raised, as upstream does.
        """
        try:
            specs = parse_populate(path.read_bytes())
        except OSError as exc:
            _logger.error("error reading config file %s: %s", path, exc)
            return
        except ApiError as exc:
            _logger.error("failed to populate proxies from file %s: %s", path, exc.message)
            return
        async with self.api._lock:
            done, error = await self.collection.populate(specs)
        if error is not None:
            _logger.error("failed to populate proxies from file %s: %s", path, error.message)
        else:
            _logger.info("populated %d proxies from file %s", len(done), path)

    async def close(self) -> None:
        """Stop the API and every proxy, closing all connections."""
        await self._http.close()
        await self.collection.close()
        _logger.info("toxiproxy stopped")


class ServerThread:
    """A `ToxiproxyServer` on its own event loop in a daemon thread (for tests and tools).

    Example:
        with ServerThread() as server:
            requests.get(f"{server.url}/version")
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, seed: int | None = None):
        self.server = ToxiproxyServer(host, port, seed)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="toxiproxy", daemon=True)
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return self.server.url

    def __enter__(self) -> ServerThread:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = 10.0) -> None:
        """Start the thread and wait until the API listens.

        Raises:
            RuntimeError: the server did not start within `timeout` seconds.
        """
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("toxiproxy server thread did not start")
        if self._error is not None:
            raise RuntimeError(f"toxiproxy server failed to start: {self._error}")

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run a coroutine on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Close the server and join the thread."""
        if self._stop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            raise
        self._ready.set()
        await self._stop.wait()
        await self.server.close()


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="toxiproxy", description="A TCP fault proxy speaking Toxiproxy's v2 HTTP API."
    )
    parser.add_argument("--host", "-host", default="localhost", help="API host to listen on")
    parser.add_argument("--port", "-port", type=int, default=8474, help="API port")
    parser.add_argument(
        "--config", "-config", type=Path, help="JSON list of proxies to create on start"
    )
    parser.add_argument("--seed", "-seed", type=int, help="seed for toxicity and jitter")
    parser.add_argument("--version", "-version", action="store_true", help="print the version")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    server = ToxiproxyServer(args.host, args.port, args.seed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    _logger.info("starting toxiproxy %s", VERSION)
    if args.config is not None:
        await server.populate_file(args.config)
    await server.start()
    await stop.wait()
    _logger.info("shutdown started")
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(server.close(), 5.0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGTERM/SIGINT; returns the exit status."""
    args = _parse_args(argv)
    if args.version:
        print(f"toxiproxy-server version {VERSION}", flush=True)
        return 0
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    package = logging.getLogger(__package__)
    package.addHandler(handler)
    package.setLevel(logging.INFO)
    try:
        asyncio.run(_serve(args))
    except OSError as exc:
        _logger.error("toxiproxy failed: %s", exc)
        return 1
    return 0
