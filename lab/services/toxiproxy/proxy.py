"""Proxies: listeners that join each client to the upstream through toxic links.

`ProxyCollection` keeps the named proxies with upstream's rules (409 on a duplicate name,
create-or-replace for `/populate`); `ToxicCollection` keeps one proxy's toxic chains and
applies every change to the links of the connections that are open.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .errors import (
    PROXY_ALREADY_EXISTS,
    PROXY_NOT_FOUND,
    TOXIC_ALREADY_EXISTS,
    TOXIC_NOT_FOUND,
    ApiError,
    internal,
)
from .link import Connection, Link
from .toxics import Direction, Toxic

_logger = logging.getLogger(__name__)

LISTEN_BACKLOG = 128


# -- addresses ----------------------------------------------------------------------------


def split_host_port(address: str) -> tuple[str, str]:
    """Split "host:port", "[v6]:port" or ":port" like Go's `net.SplitHostPort`.

    Raises:
        ApiError: 500 with Go's wording when the address has no port or too many colons.
    """
    if address.startswith("["):
        end = address.find("]")
        if end < 0:
            raise internal(f"address {address}: missing ']' in address")
        rest = address[end + 1 :]
        if not rest.startswith(":"):
            raise internal(f"address {address}: missing port in address")
        return address[1:end], rest[1:]
    if ":" not in address:
        raise internal(f"address {address}: missing port in address")
    host, port = address.rsplit(":", 1)
    if ":" in host:
        raise internal(f"address {address}: too many colons in address")
    return host, port


def _port_number(address: str, port: str) -> int:
    if port.isdigit() and int(port) <= 65535:
        return int(port)
    if not port:
        return 0
    try:
        return socket.getservbyname(port, "tcp")
    except OSError as exc:
        raise internal(f"lookup tcp/{port}: unknown port for {address}") from exc


def format_address(host: str, port: int) -> str:
    """`host:port`, with brackets around IPv6 hosts."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def resolve_address(address: str) -> tuple[str, int, socket.AddressFamily | None]:
    """Resolve an address the way Go's `ResolveTCPAddr("tcp", ...)` does: IP literals as
    they are, host names to their first IPv4 address (else the first address), and an empty
    host to the wildcard (family None).

    Raises:
        ApiError: 500 when the address is malformed or the host doesn't resolve.
    """
    # Go treats an empty address as ":0": every interface, a free port.
    host, port_text = split_host_port(address) if address else ("", "0")
    port = _port_number(address, port_text)
    if not host:
        return "", port, None
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    else:
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        return str(ip) if "%" not in host else host, port, family
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise internal(f"lookup {host}: {exc.strerror or exc}") from exc
    if not infos:
        raise internal(f"lookup {host}: no such host")
    ipv4 = [info for info in infos if info[0] == socket.AF_INET]
    chosen = (ipv4 or infos)[0]
    return str(chosen[4][0]), port, chosen[0]


async def canonical_address(address: str) -> str:
    """The address as Go's `TCPAddr.String()` prints it once resolved."""
    host, port, _ = await resolve_address(address)
    return format_address(host, port)


async def open_listener(address: str) -> socket.socket:
    """A listening, non-blocking socket for `address` (SO_REUSEADDR, as Go sets).

    An empty host listens on all interfaces, dual-stack when IPv6 is available.

    Raises:
        ApiError: 500 with Go's wording when the address can't be bound.
    """
    host, port, family = await resolve_address(address)
    candidates: list[tuple[socket.AddressFamily, str]]
    if family is None:
        candidates = [(socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")]
        if not socket.has_ipv6:
            candidates = candidates[1:]
    else:
        candidates = [(family, host)]
    last: OSError | None = None
    for fam, bind_host in candidates:
        sock = socket.socket(fam, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if fam == socket.AF_INET6 and family is None:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((bind_host, port))
            sock.listen(LISTEN_BACKLOG)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        return sock
    reason = (last.strerror or str(last)) if last is not None else "no usable address"
    reason = reason[:1].lower() + reason[1:]
    raise internal(f"listen tcp {address}: bind: {reason}")


def listener_address(sock: socket.socket) -> str:
    name = sock.getsockname()
    return format_address(str(name[0]), int(name[1]))


# -- toxics of one proxy --------------------------------------------------------------------


class ToxicCollection:
    """One proxy's toxic chains (one per direction) and the links they apply to."""

    def __init__(self, proxy: str, rng: random.Random) -> None:
        self.proxy = proxy
        self._rng = rng
        self._chains: dict[Direction, list[Toxic]] = {d: [] for d in Direction}
        self._links: set[Link] = set()

    def all(self) -> list[Toxic]:
        """Every toxic: the upstream chain first, then the downstream one, like upstream."""
        return [toxic for direction in Direction for toxic in self._chains[direction]]

    def find(self, name: str) -> Toxic | None:
        for toxic in self.all():
            if toxic.name == name:
                return toxic
        return None

    def get(self, name: str) -> Toxic:
        """Raises: ApiError 404 when there's no such toxic."""
        toxic = self.find(name)
        if toxic is None:
            raise TOXIC_NOT_FOUND.error()
        return toxic

    def check_new_name(self, name: str) -> None:
        """Raises: ApiError 409 when a toxic of that name exists (in either direction)."""
        if self.find(name) is not None:
            raise TOXIC_ALREADY_EXISTS.error()

    def add(self, toxic: Toxic) -> None:
        self.check_new_name(toxic.name)
        self._chains[toxic.direction].append(toxic)
        for link in self._links:
            if link.direction == toxic.direction:
                link.attach(toxic, self._rng)
        _logger.info(
            "proxy %s: added toxic %s (%s, %s, toxicity %s, %s)",
            self.proxy,
            toxic.name,
            toxic.type,
            toxic.stream,
            toxic.toxicity,
            toxic.attributes,
        )

    def update(self, toxic: Toxic, attributes: dict[str, int], toxicity: float) -> None:
        toxic.attributes = attributes
        toxic.toxicity = toxicity
        for link in self._links:
            if link.direction == toxic.direction:
                link.reconfigure(toxic)
        _logger.info("proxy %s: updated toxic %s to %s", self.proxy, toxic.name, attributes)

    def remove(self, name: str) -> None:
        toxic = self.get(name)
        self._chains[toxic.direction].remove(toxic)
        for link in list(self._links):
            if link.direction == toxic.direction:
                link.detach(toxic)
        _logger.info("proxy %s: removed toxic %s", self.proxy, name)

    def reset(self) -> None:
        for toxic in self.all():
            self.remove(toxic.name)

    def register(self, link: Link) -> None:
        """A new connection's link starts with the current chain of its direction."""
        for toxic in self._chains[link.direction]:
            link.attach(toxic, self._rng)
        self._links.add(link)

    def unregister(self, link: Link) -> None:
        self._links.discard(link)


# -- proxies --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProxySpec:
    """What a client asks for: a proxy's fields before it exists."""

    name: str
    listen: str
    upstream: str
    enabled: bool = True


class Proxy:
    """A named listener forwarding to `upstream` through its toxics."""

    def __init__(self, spec: ProxySpec, rng: random.Random) -> None:
        self.name = spec.name
        self.listen = spec.listen
        self.upstream = spec.upstream
        self.enabled = False
        self.toxics = ToxicCollection(spec.name, rng)
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()
        self._handlers: set[asyncio.Task[object]] = set()
        self._generation = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": [toxic.to_json() for toxic in self.toxics.all()],
        }

    async def differs(self, listen: str, upstream: str) -> bool:
        """Whether `listen`/`upstream` differ from this proxy's (listen compared resolved).

        Raises:
            ApiError: 500 when `listen` can't be resolved.
        """
        return self.listen != await canonical_address(listen) or self.upstream != upstream

    async def start(self) -> None:
        """Listen; the listen address becomes the bound one (a port 0 gets a real port).

        Raises:
            ApiError: 500 when the address can't be bound.
        """
        if self.enabled:
            return
        sock = await open_listener(self.listen)
        self._generation += 1
        generation = self._generation

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._serve(reader, writer, generation)

        self._server = await asyncio.start_server(accept, sock=sock)
        self.listen = listener_address(sock)
        self.enabled = True
        _logger.info(
            "proxy %s: started, listen %s upstream %s", self.name, self.listen, self.upstream
        )

    def stop(self) -> None:
        """Stop listening and close every connection."""
        if not self.enabled:
            return
        self.enabled = False
        self._generation += 1
        if self._server is not None:
            self._server.close()
            self._server = None
        for connection in list(self._connections):
            connection.close()
        for task in list(self._handlers):
            task.cancel()
        _logger.info("proxy %s: terminated", self.name)

    async def wait_stopped(self, timeout: float = 5.0) -> None:
        """Wait until the connections of a stopped proxy have wound down."""
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=timeout)

    async def update(self, listen: str, upstream: str, enabled: bool) -> None:
        """Apply an update as upstream does: a changed address restarts the proxy.

        Raises:
            ApiError: 500 when `listen` can't be resolved or bound.
        """
        if await self.differs(listen, upstream):
            self.stop()
            self.listen = listen
            self.upstream = upstream
        if enabled != self.enabled:
            if enabled:
                await self.start()
            else:
                self.stop()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, generation: int
    ) -> None:
        task = asyncio.current_task()
        if task is None:
            return
        self._handlers.add(task)
        try:
            await self._forward(reader, writer, generation)
        except asyncio.CancelledError:
            # Cancelled by stop(); end quietly, as asyncio's stream callback would log it.
            writer.close()
        finally:
            self._handlers.discard(task)

    async def _forward(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, generation: int
    ) -> None:
        peer = writer.get_extra_info("peername")
        client = format_address(str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else "?"
        _logger.info("proxy %s: accepted client %s", self.name, client)
        try:
            host, port = split_host_port(self.upstream)
            up_reader, up_writer = await asyncio.open_connection(host, _port_number("", port))
        except (OSError, ApiError) as exc:
            _logger.warning(
                "proxy %s: unable to open connection to upstream %s for client %s: %s",
                self.name,
                self.upstream,
                client,
                exc,
            )
            writer.close()
            return
        if generation != self._generation:  # stopped while dialling
            writer.close()
            up_writer.close()
            return
        connection = Connection(self.name, (reader, writer), (up_reader, up_writer))
        self._connections.add(connection)
        for link in connection.links.values():
            self.toxics.register(link)
        try:
            await connection.run()
        finally:
            for link in connection.links.values():
                self.toxics.unregister(link)
            self._connections.discard(connection)
            _logger.info("proxy %s: client %s disconnected", self.name, client)


class ProxyCollection:
    """The server's proxies by name."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._proxies: dict[str, Proxy] = {}

    def all(self) -> dict[str, Proxy]:
        return dict(self._proxies)

    def get(self, name: str) -> Proxy:
        """Raises: ApiError 404 when there's no such proxy."""
        proxy = self._proxies.get(name)
        if proxy is None:
            raise PROXY_NOT_FOUND.error()
        return proxy

    async def add(self, spec: ProxySpec) -> Proxy:
        """Create a proxy, started when `spec.enabled`.

        Raises:
            ApiError: 409 on a duplicate name, 500 when it can't listen.
        """
        if spec.name in self._proxies:
            raise PROXY_ALREADY_EXISTS.error()
        proxy = Proxy(spec, self._rng)
        if spec.enabled:
            await proxy.start()
        self._proxies[spec.name] = proxy
        return proxy

    async def add_or_replace(self, spec: ProxySpec) -> Proxy:
        """Keep an existing proxy whose listen and upstream match, else replace it.

        Raises:
            ApiError: 500 when the address can't be resolved or bound.
        """
        existing = self._proxies.get(spec.name)
        if existing is not None:
            if not await existing.differs(spec.listen, spec.upstream):
                return existing
            existing.stop()
        proxy = Proxy(spec, self._rng)
        if spec.enabled:
            await proxy.start()
        self._proxies[spec.name] = proxy
        return proxy

    async def populate(self, specs: Iterable[ProxySpec]) -> tuple[list[Proxy], ApiError | None]:
        """Create or replace each proxy in order; stop at the first failure."""
        done: list[Proxy] = []
        for spec in specs:
            try:
                done.append(await self.add_or_replace(spec))
            except ApiError as exc:
                return done, exc
        return done, None

    def remove(self, name: str) -> None:
        """Raises: ApiError 404 when there's no such proxy."""
        proxy = self.get(name)
        proxy.stop()
        del self._proxies[name]
        _logger.info("proxy %s: deleted", name)

    async def close(self) -> None:
        """Delete every proxy and wait (briefly) for their connections to wind down."""
        proxies = list(self._proxies.values())
        for proxy in proxies:
            self.remove(proxy.name)
        for proxy in proxies:
            await proxy.wait_stopped()
