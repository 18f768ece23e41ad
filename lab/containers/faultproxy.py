"""The lab's fault proxy: the Toxiproxy-API service in `lab/services/toxiproxy`."""

from __future__ import annotations

from testcontainers.core.wait_strategies import HttpWaitStrategy

from lab.containers.base import POLL_INTERVAL_S, LabContainer

API_PORT = 8474


class FaultProxyContainer(LabContainer):
    """Every proxied service's listen port is published up front, since proxies are created
    through the API after the container is running."""

    service = "faultproxy"

    def _configure_service(self) -> None:
        self.with_published_port(API_PORT, self._published.get(API_PORT))
        self.waiting_for(
            HttpWaitStrategy(API_PORT, "/version")
            .for_status_code(200)
            .with_startup_timeout(int(self.startup_timeout))
            .with_poll_interval(POLL_INTERVAL_S)
        )
