"""`LabConfig`: everything that shapes one lab, passed in explicitly (no global settings)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lab.images import ImageMode


@dataclass(frozen=True)
class ProxiedService:
    """A lab service the harness reaches only through a named fault-proxy proxy.

    Attributes:
        name: the proxy's name in the fault proxy (what chaos experiments target).
        upstream_host: the service (its container's alias on the lab network); a `Lab`'s fault
            proxy, on the host network, reaches it on the 127.0.0.1 port `upstream_port` is
            published on.
        upstream_port: the service's port inside its container.
        listen_port: the proxy's fixed listen port in compose.yaml's lab; a `Lab` listens on
            127.0.0.1 on a port the kernel chooses (or `LabConfig.host_ports[name]`).
        scheme: the URL scheme clients use for the endpoint.
    """

    name: str
    upstream_host: str
    upstream_port: int
    listen_port: int
    scheme: str = "http"

    @property
    def upstream(self) -> str:
        return f"{self.upstream_host}:{self.upstream_port}"

    @property
    def listen(self) -> str:
        return f"0.0.0.0:{self.listen_port}"


PROXIED_SERVICES: tuple[ProxiedService, ...] = (
    ProxiedService("registry", "registry", 5000, 15000),
)
"""The proxied endpoints every lab has."""

SIGSTORE_PROXIED_SERVICES: tuple[ProxiedService, ...] = (
    ProxiedService("rekor", "rekor", 3000, 15001),
    ProxiedService("fulcio", "fulcio", 5555, 15002),
    ProxiedService("tsa", "tsa", 3004, 15003),
)
"""The proxied endpoints of the Sigstore stack: one proxy each, so chaos can hit one alone."""

DEFAULT_IDENTITY = "lab@cihub.test"
DEFAULT_ISSUER = "https://oidc.lab.cihub"


def new_lab_id(suffix: str | None = None) -> str:
    """`cihub-<8 hex>[-<suffix>]`: unique per call, e.g. suffixed with the xdist worker id."""
    base = f"cihub-{uuid.uuid4().hex[:8]}"
    return f"{base}-{suffix}" if suffix else base


@dataclass(frozen=True)
class LabConfig:
    """How to bring a lab up.

    Attributes:
        lab_id: names the lab's network, volumes and containers (`<lab_id>-<service>`).
        session: the uuid of the run that owns the lab (a label on everything it makes).
        images: "offline" (bootstrap from Debian packages) or "upstream" (pinned public base).
        registry_auth: turn on htpasswd auth with per-lab generated credentials.
        persistent: the lab outlives this process (`cihub lab up`); otherwise it is stale once
            its owner process is gone.
        evidence_dir: where container logs are saved at teardown (`<dir>/lab/<lab_id>/`).
        host_ports: fixed host ports by endpoint name ("faultproxy" for the API, or a proxy
            name); the engine chooses every other port.
        startup_timeout: seconds each service may take to become healthy.
        keep: leave the lab running at `stop()` (logs are still saved).
        sigstore: run the Sigstore stack (rekor, fulcio, tsa) and write a trust config.
        identity: the identity lab tokens carry by default (an email or a URI).
        issuer: the lab OIDC issuer that tokens name and Fulcio trusts.
        trust_domain: the trust domain's folder (keys, logs, trust config) that this lab
            uses and keeps; None: the user's default (`lab.trust_domain.trust_domain_dir()`).
            Tests that restore old logs name a private one (e.g. in tmp_path).
        owner: who the lab belongs to (default: the caller, `lab.labels.caller_owner()`).
    """

    lab_id: str = field(default_factory=new_lab_id)
    session: str = field(default_factory=lambda: str(uuid.uuid4()))
    images: ImageMode = "offline"
    registry_auth: bool = False
    persistent: bool = False
    evidence_dir: Path = Path("evidence")
    host_ports: Mapping[str, int] = field(default_factory=dict)
    startup_timeout: float = 60.0
    keep: bool = False
    sigstore: bool = True
    identity: str = DEFAULT_IDENTITY
    issuer: str = DEFAULT_ISSUER
    trust_domain: Path | None = None
    owner: str | None = None

    @property
    def log_dir(self) -> Path:
        return self.evidence_dir / "lab" / self.lab_id

    @property
    def proxied(self) -> tuple[ProxiedService, ...]:
        """Every proxied endpoint of this lab, in the order they are created."""
        return PROXIED_SERVICES + (SIGSTORE_PROXIED_SERVICES if self.sigstore else ())
