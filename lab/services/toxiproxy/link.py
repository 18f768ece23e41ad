"""Live connections: each direction of a proxied connection is a link through a toxic chain.

A link reads chunks from its source into a small queue and one pump task passes each chunk
through the link's stages (one per toxic, in the order the toxics were added) to its
destination. Stages are attached, reconfigured and detached while the link runs: a sleeping
stage is woken so that the chunk it holds passes on at once, as upstream's interrupts do.
Time-driven effects (the `timeout` toxic) run on timers, so they act on idle connections too.

Like upstream, the end of one direction closes the other side's socket completely (no
half-close), and `reset_peer` closes both sockets with SO_LINGER 0, which sends a TCP RST.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .toxics import (
    BANDWIDTH_SLICE_SECONDS,
    BandwidthShaper,
    Direction,
    LimitCounter,
    Toxic,
    applies,
    latency_delay,
    remaining_delay,
    slice_spans,
)

_logger = logging.getLogger(__name__)

READ_SIZE = 32 * 1024
QUEUE_CHUNKS = 8
_FOREVER = 3600.0


@dataclass(frozen=True)
class Chunk:
    """Bytes read from a link's source and when (loop time) they arrived."""

    data: bytes
    received: float


Emit = Callable[[Chunk], Awaitable[None]]


class LinkClosed(Exception):
    """A stage ends its link; with `reset` the sockets close with a TCP RST."""

    def __init__(self, reset: bool = False) -> None:
        super().__init__("reset" if reset else "closed")
        self.reset = reset


class Stage:
    """One toxic on one link: whether it applies there and its per-connection state."""

    def __init__(self, toxic: Toxic, link: Link, rng: random.Random) -> None:
        self.toxic = toxic
        self.link = link
        self._rng = rng
        self.removed = False
        self.active = applies(toxic.toxicity, rng)
        self.limit = LimitCounter()
        self.shaper = BandwidthShaper()
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._start()

    # -- lifecycle, driven by the toxic collection --------------------------------------

    def _start(self) -> None:
        self.shaper = BandwidthShaper()
        if self.active and self.toxic.type == "timeout":
            self._arm_timeout()

    def reconfigure(self) -> None:
        """The toxic was updated: decide again whether it applies and restart its effect."""
        self._cancel_timer()
        self._interrupt()
        self.active = applies(self.toxic.toxicity, self._rng)
        self._start()

    def remove(self) -> None:
        """The toxic was removed: release what it holds. Removing an active `timeout` closes
        the link, as upstream's cleanup of that toxic does."""
        self.removed = True
        self._cancel_timer()
        self._interrupt()
        if self.active and self.toxic.type == "timeout":
            self.link.shutdown(reset=False)

    def cancel(self) -> None:
        self._cancel_timer()

    def _interrupt(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()

    def _arm_timeout(self) -> None:
        self._cancel_timer()
        timeout = self.toxic.attr("timeout")
        if timeout > 0:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(timeout / 1000.0, self._timeout_fired)

    def _timeout_fired(self) -> None:
        self._timer = None
        _logger.info(
            "toxic %s closed an idle connection on proxy %s", self.toxic.name, self.link.proxy
        )
        self.link.shutdown(reset=False)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _sleep(self, seconds: float) -> bool:
        """Sleep; False when woken early by an update or removal of the toxic."""
        if seconds <= 0:
            return True
        wake = self._wake
        try:
            await asyncio.wait_for(wake.wait(), seconds)
        except TimeoutError:
            return True
        return False

    # -- data path ----------------------------------------------------------------------

    async def process(self, chunk: Chunk, emit: Emit) -> None:
        """Pass `chunk` on through `emit`, applying the toxic's effect."""
        if self.removed or not self.active:
            await emit(chunk)
            return
        kind = self.toxic.type
        if kind == "latency":
            await self._latency(chunk, emit)
        elif kind == "bandwidth":
            await self._bandwidth(chunk, emit)
        elif kind == "slicer":
            await self._slicer(chunk, emit)
        elif kind == "limit_data":
            allowed, close = self.limit.admit(len(chunk.data), self.toxic.attr("bytes"))
            if allowed:
                await emit(Chunk(chunk.data[:allowed], chunk.received))
            if close:
                raise LinkClosed()
        elif kind == "timeout":
            self._arm_timeout()  # data is dropped, and it restarts the idle timer
        elif kind == "reset_peer":
            await asyncio.sleep(self.toxic.attr("timeout") / 1000.0)
            raise LinkClosed(reset=True)
        else:
            await emit(chunk)

    async def on_eof(self) -> None:
        """The source ended: `slow_close` delays the close and `reset_peer` turns it into a
        reset after its timeout."""
        if self.removed or not self.active:
            return
        if self.toxic.type == "slow_close":
            await self._sleep(self.toxic.attr("delay") / 1000.0)
        elif self.toxic.type == "reset_peer":
            await asyncio.sleep(self.toxic.attr("timeout") / 1000.0)
            raise LinkClosed(reset=True)

    async def _latency(self, chunk: Chunk, emit: Emit) -> None:
        delay = latency_delay(self.toxic.attr("latency"), self.toxic.attr("jitter"), self._rng)
        loop = asyncio.get_running_loop()
        wait = remaining_delay(delay, chunk.received, loop.time())
        if await self._sleep(wait):
            chunk = Chunk(chunk.data, chunk.received + wait)
        await emit(chunk)

    async def _bandwidth(self, chunk: Chunk, emit: Emit) -> None:
        while self.toxic.attr("rate") <= 0:  # a zero rate lets nothing through
            if not self.active or self.removed:
                await emit(chunk)
                return
            await self._sleep(_FOREVER)
        data = chunk.data
        sizes = self.shaper.split(len(data), self.toxic.attr("rate"))
        offset = 0
        for size in sizes[:-1]:
            if not await self._sleep(BANDWIDTH_SLICE_SECONDS):
                await emit(Chunk(data[offset:], chunk.received))
                return
            await emit(Chunk(data[offset : offset + size], chunk.received))
            offset += size
        loop = asyncio.get_running_loop()
        started = loop.time()
        if await self._sleep(self.shaper.wait_before_last()):
            self.shaper.record_wait(loop.time() - started)
        await emit(Chunk(data[offset:], chunk.received))

    async def _slicer(self, chunk: Chunk, emit: Emit) -> None:
        spans = slice_spans(
            len(chunk.data),
            self.toxic.attr("average_size"),
            self.toxic.attr("size_variation"),
            self._rng,
        )
        delay = self.toxic.attr("delay") / 1_000_000.0
        for start, end in spans:
            await emit(Chunk(chunk.data[start:end], chunk.received))
            if not await self._sleep(delay):
                if end < len(chunk.data):
                    await emit(Chunk(chunk.data[end:], chunk.received))
                return


class Link:
    """One direction of a connection: source reader -> stages -> destination writer."""

    def __init__(
        self,
        connection: Connection,
        direction: Direction,
        source: asyncio.StreamReader,
        destination: asyncio.StreamWriter,
    ) -> None:
        self.connection = connection
        self.direction = direction
        self.proxy = connection.proxy
        self.source = source
        self.destination = destination
        self.stages: list[Stage] = []
        self._queue: asyncio.Queue[Chunk | None] = asyncio.Queue(QUEUE_CHUNKS)
        self._pump_task: asyncio.Task[None] | None = None
        self._reset = False
        self._closing = False

    # -- toxic chain --------------------------------------------------------------------

    def attach(self, toxic: Toxic, rng: random.Random) -> None:
        self.stages.append(Stage(toxic, self, rng))

    def reconfigure(self, toxic: Toxic) -> None:
        for stage in self.stages:
            if stage.toxic is toxic:
                stage.reconfigure()

    def detach(self, toxic: Toxic) -> None:
        for stage in [s for s in self.stages if s.toxic is toxic]:
            self.stages.remove(stage)
            stage.remove()

    # -- running ------------------------------------------------------------------------

    def shutdown(self, reset: bool) -> None:
        """End the link now (from a timer or a toxic removal): close its destination."""
        self._reset = self._reset or reset
        self._closing = True
        if self._pump_task is not None:
            self._pump_task.cancel()

    async def run(self) -> None:
        reader = asyncio.create_task(self._read())
        pump = self._pump_task = asyncio.create_task(self._pump())
        if self._closing:
            pump.cancel()
        try:
            await asyncio.wait([pump])
        finally:
            reader.cancel()
            pump.cancel()
            try:
                await asyncio.gather(reader, pump, return_exceptions=True)
            finally:
                for stage in self.stages:
                    stage.cancel()
                self._note_outcome(pump)
                self._close_destination()

    def _note_outcome(self, pump: asyncio.Task[None]) -> None:
        if not pump.done() or pump.cancelled():
            return
        error = pump.exception()
        if isinstance(error, LinkClosed):
            self._reset = self._reset or error.reset
        elif error is not None and not isinstance(error, OSError):
            _logger.error("proxy %s: %s link failed: %r", self.proxy, self.direction, error)

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await self.source.read(READ_SIZE)
            except OSError:
                data = b""
            if not data:
                await self._queue.put(None)
                return
            await self._queue.put(Chunk(data, loop.time()))

    async def _pump(self) -> None:
        while True:
            item = await self._queue.get()
            stages = tuple(self.stages)
            if item is None:
                for stage in stages:
                    await stage.on_eof()
                return
            await self._through(stages, 0, item)

    async def _through(self, stages: tuple[Stage, ...], index: int, chunk: Chunk) -> None:
        if index == len(stages):
            self.destination.write(chunk.data)
            await self.destination.drain()
            return

        async def emit(out: Chunk) -> None:
            await self._through(stages, index + 1, out)

        await stages[index].process(chunk, emit)

    def _close_destination(self) -> None:
        if self._reset:
            self.connection.set_linger_zero()
            self.destination.transport.abort()
            _logger.info("proxy %s: %s link reset", self.proxy, self.direction)
        else:
            self.destination.close()


class Connection:
    """A client connection and its upstream connection, joined by two links."""

    def __init__(
        self,
        proxy: str,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.proxy = proxy
        self.client_writer = client[1]
        self.upstream_writer = upstream[1]
        peer = client[1].get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.links = {
            Direction.UPSTREAM: Link(self, Direction.UPSTREAM, client[0], upstream[1]),
            Direction.DOWNSTREAM: Link(self, Direction.DOWNSTREAM, upstream[0], client[1]),
        }

    async def run(self) -> None:
        """Run both links until both have ended (or until cancelled)."""
        tasks = [asyncio.create_task(link.run()) for link in self.links.values()]
        try:
            await asyncio.wait(tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def set_linger_zero(self) -> None:
        """Make both sockets send a RST instead of a FIN when they close."""
        linger = struct.pack("ii", 1, 0)
        for writer in (self.client_writer, self.upstream_writer):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)

    def close(self) -> None:
        """Close both sockets (the proxy was disabled or deleted)."""
        for writer in (self.client_writer, self.upstream_writer):
            writer.close()
