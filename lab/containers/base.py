"""`LabContainer`: a testcontainers container that is labelled, named, on the lab network,
publishes its ports on 127.0.0.1 only, and runs hardened (see `Hardening`)."""

from __future__ import annotations

import http.client
import io
import posixpath
import socket
import tarfile
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self, cast
from urllib.parse import urlsplit

import docker.errors
from docker.types import Mount
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network
from testcontainers.core.transferable import Transferable

from lab.errors import ServiceStartError

LOOPBACK = "127.0.0.1"
POLL_INTERVAL_S = 0.02
"""How often health checks poll: testcontainers' default of 1 s would dominate start-up."""

_PORT_TAKEN_MARKERS = ("port is already allocated", "address already in use")
_PORT_ATTEMPTS = 3

NOBODY = "65534:65534"
"""The unprivileged user lab services run as unless a service needs another."""


def free_loopback_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now (the kernel's choice)."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class Hardening:
    """How a lab container is confined.

    Attributes:
        user: "uid:gid" the program runs as (never root where the program allows).
        cap_add: capabilities kept; every other one is dropped.
        pids_limit: most processes and threads at once.
        mem_limit: memory limit in the engine's notation ("256m").
        read_only: the root filesystem is read-only; `tmpfs` and `writable` are the exceptions.
        tmpfs: in-memory folders with their mount options.
        writable: folders that must take files before the container starts (config and keys
            copied in): each gets an anonymous volume, removed with the container.
    """

    user: str = NOBODY
    cap_add: tuple[str, ...] = ()
    pids_limit: int = 128
    mem_limit: str = "256m"
    read_only: bool = True
    tmpfs: tuple[tuple[str, str], ...] = (("/tmp", "rw,nosuid,nodev,size=16m,mode=1777"),)
    writable: tuple[str, ...] = ()

    def docker_kwargs(self) -> dict[str, Any]:
        """The keywords of the Docker SDK's `containers.create` that apply this posture."""
        return {
            "user": self.user,
            "cap_drop": ["ALL"],
            "cap_add": list(self.cap_add),
            "security_opt": ["no-new-privileges:true"],
            "pids_limit": self.pids_limit,
            "mem_limit": self.mem_limit,
            # No swap beyond the memory limit: the limit is the limit.
            "memswap_limit": self.mem_limit,
            "read_only": self.read_only,
            "mounts": [Mount(target=path, source=None, type="volume") for path in self.writable],
        }


class LabContainer(DockerContainer):
    """One lab service's container.

    Subclasses set `service` (also the container's alias on the lab network), `hardening`, and
    configure themselves in `_configure_service()`.

    Args:
        image: the image tag to run (already built; nothing is pulled).
        lab_id: the lab this container belongs to; the container is named `<lab_id>-<service>`.
        network: the lab's network (None: the subclass chooses, e.g. the host's).
        resource_labels: labels of the lab (see `lab.labels.resource_labels`).
        startup_timeout: seconds the wait strategy may take before the start fails.
    """

    service: ClassVar[str] = ""
    hardening: ClassVar[Hardening] = Hardening()

    def __init__(
        self,
        image: str,
        *,
        lab_id: str,
        network: Network | None,
        resource_labels: dict[str, str],
        startup_timeout: float = 60.0,
    ) -> None:
        super().__init__(image)
        self.startup_timeout = startup_timeout
        self._labels = resource_labels
        self._published: dict[int, int | None] = {}
        self._docker_kwargs: dict[str, Any] = {}
        self._health: tuple[int, str, Collection[int]] | None = None
        self.with_name(f"{lab_id}-{self.service}")
        if network is not None:
            self.with_network(network)
            self.with_network_aliases(self.service)

    def with_published_port(self, port: int, host_port: int | None = None) -> Self:
        """Publish `port` on 127.0.0.1: on `host_port`, or on a free port chosen at start.

        A chosen port is still a fixed binding, so a container stopped and started again (a
        DR drill) comes back on the same port and the fault proxy's route to it still holds;
        an engine-chosen one would move.
        """
        self._published[port] = host_port
        return self

    def with_http_health(self, port: int, path: str, statuses: Collection[int] = (200,)) -> Self:
        """Healthy once `GET http://127.0.0.1:<published port><path>` answers one of
        `statuses`. Polled over HTTP, not through the engine's API (as log waits are), so five
        services waiting at once don't load the engine they are starting on."""
        self._health = (port, path, statuses)
        return self

    def with_docker_kwarg(self, key: str, value: Any) -> Self:
        """Pass one more keyword to the Docker SDK's `containers.create`."""
        self._docker_kwargs[key] = value
        return self

    def _configure(self) -> None:
        self._configure_service()
        for port, host_port in self._published.items():
            # docker-py takes (host ip, host port); testcontainers types its port map as
            # int-valued, hence the cast.
            chosen = host_port or free_loopback_port()
            cast(dict[str, Any], self.ports)[f"{port}/tcp"] = (LOOPBACK, chosen)
        for path, options in self.hardening.tmpfs:
            self.tmpfs[path] = options
        self.with_kwargs(
            labels=self._labels, **{**self.hardening.docker_kwargs(), **self._docker_kwargs}
        )

    def _configure_service(self) -> None:
        """Subclass hook: set command, env, volumes and the wait strategy."""

    def start(self) -> Self:
        """Create, copy files in, start; then wait for the HTTP health check, if any.

        Raises:
            TimeoutError: not healthy within `startup_timeout`.
            RuntimeError: the container exited before it was healthy.
        """
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            try:
                super().start()
                break
            except docker.errors.APIError as exc:
                chosen_here = any(host is None for host in self._published.values())
                taken = any(marker in str(exc).lower() for marker in _PORT_TAKEN_MARKERS)
                if attempt == _PORT_ATTEMPTS or not (chosen_here and taken):
                    raise
                # Another process took the port between our choice and the engine's bind:
                # choose again.
                if self._container is not None:
                    self._container.remove(force=True, v=True)
                    self._container = None
        if self._health is not None:
            port, path, statuses = self._health
            self.wait_http(f"http://{LOOPBACK}:{self.published_port(port)}{path}", statuses)
        return self

    def wait_http(self, url: str, statuses: Collection[int] = (200,)) -> None:
        """Poll `url` until it answers one of `statuses` (see `with_http_health`)."""
        deadline = time.monotonic() + self.startup_timeout
        next_check = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            if _http_status(url) in statuses:
                return
            if time.monotonic() >= next_check:
                # Seldom: asking the engine is what this wait avoids doing often.
                next_check = time.monotonic() + 0.5
                assert self._container is not None
                self._container.reload()
                if self._container.status in ("exited", "dead"):
                    raise RuntimeError(f"{self.service} exited before it was healthy")
            time.sleep(POLL_INTERVAL_S)
        raise TimeoutError(f"{self.service}: no healthy answer at {url}")

    def _transfer_into_container(
        self, transferable: Transferable, destination_in_container: str, mode: int
    ) -> None:
        # testcontainers extracts at "/", which the engine refuses on a read-only root
        # filesystem; extracting into the destination's folder (a `writable` volume) works.
        # Files are owned by the service's user: with every capability dropped even root in
        # the container could not read another user's 0600 key.
        if self._container is None:
            raise ServiceStartError(f"{self.service}: no container to copy files into")
        uid, _, gid = self._file_owner().partition(":")
        owner = (int(uid), int(gid or uid))
        if isinstance(transferable, Path) and transferable.is_dir():
            target = destination_in_container.rstrip("/")
            data = _tar_tree(transferable, transferable.name, owner)
        else:
            target, name = posixpath.split(destination_in_container)
            content = transferable if isinstance(transferable, bytes) else transferable.read_bytes()
            data = _tar_file(name, content, mode, owner)
        if not self._container.put_archive(path=target or "/", data=data):
            raise ServiceStartError(
                f"{self.service}: could not copy files into {destination_in_container}"
            )

    def _file_owner(self) -> str:
        """ "uid:gid" that owns the files copied in: the user the service runs as."""
        return self.hardening.user

    def published_port(self, port: int) -> int:
        """The host port on 127.0.0.1 that `port` is published on.

        Raises:
            ServiceStartError: the port is not published (the container is not running).
        """
        try:
            return int(self.get_docker_client().port(self.get_container_id(), port))
        except Exception as exc:
            raise ServiceStartError(f"{self.service}: port {port} is not published") from exc

    def logs_text(self) -> str:
        """The container's stdout and stderr so far, or a note saying why there are none."""
        container = self._container
        if container is None:
            return "(container was never created)\n"
        try:
            data: bytes = container.logs(stdout=True, stderr=True, timestamps=True)
        except Exception as exc:  # the container may already be gone
            return f"(logs unavailable: {exc})\n"
        return data.decode("utf-8", errors="replace")


def _http_status(url: str) -> int | None:
    """The status of `GET url`, or None when nothing answers. Plain http.client: polled every
    few ms by several threads while the services start, and requests' per-call session costs
    CPU that the starting services on a two-core machine need more."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or LOOPBACK, parts.port, timeout=1)
    try:
        connection.request("GET", parts.path or "/")
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def _tar_file(name: str, content: bytes, mode: int, owner: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(content), mode
        info.uid, info.gid = owner
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _tar_tree(folder: Path, arcname: str, owner: tuple[int, int]) -> bytes:
    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid, info.gid = owner
        info.uname = info.gname = ""
        return info

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(str(folder), arcname=arcname, filter=owned)
    return buffer.getvalue()
