"""The lab's fault proxy: the Toxiproxy-API service in `lab/services/toxiproxy`.

It runs on the host's network, bound to 127.0.0.1, not behind published ports: Docker's
userland proxy sits behind every published 127.0.0.1 port and turns a `reset_peer` RST into a
clean close, so a client on the host would never see ECONNRESET. On the host network the
client's connection ends at the fault proxy itself, as with a real Toxiproxy. It reaches the
services through their published 127.0.0.1 ports.
"""

from __future__ import annotations

from lab.containers.base import LOOPBACK, Hardening, LabContainer
from lab.errors import PortInUse

API_PORT = 8474
"""The API port inside compose.yaml's lab and in Toxiproxy's documentation."""


class FaultProxyContainer(LabContainer):
    """The fault proxy on the host network: its API on `api_port` of 127.0.0.1; proxies are
    created through the API once it answers (listening on 127.0.0.1 too)."""

    service = "faultproxy"
    hardening = Hardening(pids_limit=64, mem_limit="256m")

    def with_api_port(self, port: int) -> FaultProxyContainer:
        self.api_port = port
        return self

    def _configure_service(self) -> None:
        self.with_docker_kwarg("network_mode", "host")
        self.with_command(["--host", LOOPBACK, "--port", str(self.api_port)])

    @property
    def api_url(self) -> str:
        return f"http://{LOOPBACK}:{self.api_port}"

    def start(self) -> FaultProxyContainer:
        """Start the container, then wait until its API answers `/version`.

        Raises:
            PortInUse: the API port was taken (the server exited saying so).
            RuntimeError: the container exited for another reason.
            TimeoutError: no answer within `startup_timeout`.
        """
        super().start()
        try:
            self.wait_http(self.api_url + "/version")
        except RuntimeError:
            if "address already in use" in self.logs_text().lower():
                raise PortInUse(
                    f"faultproxy: its API port {self.api_port} on {LOOPBACK} is already in use"
                ) from None
            raise
        return self
