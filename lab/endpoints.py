"""Where a running lab's services are reached from the host, and how to find that out again
from the labels and port bindings of its containers (`cihub lab status`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from lab import labels
from lab.containers.base import LOOPBACK
from lab.containers.faultproxy import API_PORT
from lab.errors import FaultProxyError, LabNotFound
from lab.state import TRUST_CONFIG_FILE, lab_state_dir
from lab.toxiproxy import ToxiproxyClient


@dataclass(frozen=True)
class ProxyEndpoint:
    """One proxied service as the harness sees it.

    Attributes:
        name: the proxy's name in the fault proxy.
        url: what clients use, e.g. "http://127.0.0.1:49153".
        listen: the proxy's listen address inside the fault-proxy container.
        upstream: the service's address on the lab network.
    """

    name: str
    url: str
    listen: str
    upstream: str

    @property
    def host_port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


@dataclass(frozen=True)
class Endpoints:
    """A lab's endpoints: the fault proxy's API and every proxied service."""

    lab_id: str
    faultproxy_api_url: str
    proxies: Mapping[str, ProxyEndpoint] = field(default_factory=dict)
    persistent: bool = False
    trust_config: Path | None = None
    """The lab's ClientTrustConfig file, when it runs the Sigstore stack."""

    @property
    def registry_url(self) -> str:
        """The registry's URL through the fault proxy."""
        return self.proxies["registry"].url

    def to_json(self) -> dict[str, Any]:
        return {
            "lab_id": self.lab_id,
            "persistent": self.persistent,
            "registry_url": self.registry_url,
            "faultproxy_api_url": self.faultproxy_api_url,
            "trust_config": str(self.trust_config) if self.trust_config else None,
            "proxies": {
                name: {"url": p.url, "listen": p.listen, "upstream": p.upstream}
                for name, p in sorted(self.proxies.items())
            },
        }

    @staticmethod
    def proxy_labels(proxies: Mapping[str, tuple[int, str]]) -> dict[str, str]:
        """Labels recording each proxy's listen port and upstream on the fault-proxy container."""
        return {
            f"{labels.ENDPOINT_PREFIX}{name}": f"{port}={upstream}"
            for name, (port, upstream) in proxies.items()
        }

    @classmethod
    def discover(cls, client: docker.DockerClient, lab_id: str) -> Endpoints:
        """Rebuild a running lab's endpoints from its fault-proxy container.

        Raises:
            LabNotFound: no running fault proxy carries that lab id.
        """
        found = client.containers.list(
            filters={"label": [f"{labels.LAB}={lab_id}", f"{labels.SERVICE}=faultproxy"]}
        )
        if not found:
            raise LabNotFound(f"lab {lab_id}: no running fault proxy (is the lab up?)")
        container = found[0]
        ports: Mapping[str, Any] = container.attrs["NetworkSettings"]["Ports"] or {}
        container_labels: Mapping[str, str] = container.labels
        trust_config = lab_state_dir(lab_id, create=False) / TRUST_CONFIG_FILE
        if labels.API_PORT in container_labels:
            # On the host network (lab.containers.faultproxy): the API's port is in a label,
            # and the proxies' listen ports are what the API says.
            api_url = f"http://{LOOPBACK}:{container_labels[labels.API_PORT]}"
            try:
                with ToxiproxyClient(api_url) as api:
                    listed = api.proxies()
            except FaultProxyError as exc:
                raise LabNotFound(
                    f"lab {lab_id}: its fault proxy API at {api_url} does not answer"
                ) from exc
            return cls(
                lab_id=lab_id,
                faultproxy_api_url=api_url,
                proxies={
                    name: ProxyEndpoint(
                        name, f"http://{LOOPBACK}:{proxy.listen_port}", proxy.listen, proxy.upstream
                    )
                    for name, proxy in listed.items()
                },
                persistent=container_labels.get(labels.PERSISTENT) == "true",
                trust_config=trust_config if trust_config.exists() else None,
            )

        def host_url(port: int, scheme: str = "http") -> str:
            bindings = ports.get(f"{port}/tcp") or []
            if not bindings:
                raise LabNotFound(f"lab {lab_id}: fault proxy port {port} is not published")
            return f"{scheme}://{LOOPBACK}:{bindings[0]['HostPort']}"

        proxies: dict[str, ProxyEndpoint] = {}
        for key, value in container_labels.items():
            if not key.startswith(labels.ENDPOINT_PREFIX):
                continue
            name = key.removeprefix(labels.ENDPOINT_PREFIX)
            listen_port, upstream = value.split("=", 1)
            proxies[name] = ProxyEndpoint(
                name, host_url(int(listen_port)), f"0.0.0.0:{listen_port}", upstream
            )
        return cls(
            lab_id=lab_id,
            faultproxy_api_url=host_url(API_PORT),
            proxies=proxies,
            persistent=container_labels.get(labels.PERSISTENT) == "true",
            trust_config=trust_config if trust_config.exists() else None,
        )
