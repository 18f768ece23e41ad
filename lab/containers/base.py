"""`LabContainer`: a testcontainers container that is labelled, named, on the lab network, and
publishes its ports on 127.0.0.1 only."""

from __future__ import annotations

from typing import Any, ClassVar, Self, cast

from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

from lab.errors import ServiceStartError

LOOPBACK = "127.0.0.1"
POLL_INTERVAL_S = 0.02
"""How often health checks poll: testcontainers' default of 1 s would dominate start-up."""


class LabContainer(DockerContainer):
    """One lab service's container.

    Subclasses set `service` (also the container's alias on the lab network) and configure
    themselves in `_configure_service()`.

    Args:
        image: the image tag to run (already built; nothing is pulled).
        lab_id: the lab this container belongs to; the container is named `<lab_id>-<service>`.
        network: the lab's network.
        resource_labels: labels of the lab (see `lab.labels.resource_labels`).
        startup_timeout: seconds the wait strategy may take before the start fails.
    """

    service: ClassVar[str] = ""

    def __init__(
        self,
        image: str,
        *,
        lab_id: str,
        network: Network,
        resource_labels: dict[str, str],
        startup_timeout: float = 60.0,
    ) -> None:
        super().__init__(image)
        self.startup_timeout = startup_timeout
        self._labels = resource_labels
        self._published: dict[int, int | None] = {}
        self._docker_kwargs: dict[str, Any] = {}
        self.with_name(f"{lab_id}-{self.service}")
        self.with_network(network)
        self.with_network_aliases(self.service)

    def with_published_port(self, port: int, host_port: int | None = None) -> Self:
        """Publish `port` on 127.0.0.1: on `host_port`, or on a port the engine chooses."""
        self._published[port] = host_port
        return self

    def with_docker_kwarg(self, key: str, value: Any) -> Self:
        """Pass one more keyword to the Docker SDK's `containers.create`."""
        self._docker_kwargs[key] = value
        return self

    def _configure(self) -> None:
        self._configure_service()
        for port, host_port in self._published.items():
            # docker-py takes (host ip, host port); None lets the engine choose the port.
            # testcontainers types its port map as int-valued, hence the cast.
            cast(dict[str, Any], self.ports)[f"{port}/tcp"] = (LOOPBACK, host_port)
        self.with_kwargs(labels=self._labels, **self._docker_kwargs)

    def _configure_service(self) -> None:
        """Subclass hook: set command, env, volumes and the wait strategy."""

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
