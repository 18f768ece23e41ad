"""`Lab`: bring the containerized lab up, hand out its endpoints, and take it down again.

Every resource is labelled (see `lab.labels`) and removed by label, so a crashed run leaves
nothing that `cihub lab down` cannot find. A lab that fails to start saves its containers' logs
and removes itself before the error reaches the caller.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import docker
import docker.errors
import requests
from docker.models.containers import Container
from testcontainers.core.network import Network

from lab import labels
from lab._internal.claim import claim, mark_ready
from lab._internal.docker import docker_client
from lab.cleanup import remove_lab, save_logs
from lab.config import LabConfig, ProxiedService
from lab.containers.base import LOOPBACK, LabContainer, free_loopback_port
from lab.containers.faultproxy import FaultProxyContainer
from lab.containers.registry import RegistryContainer, RegistryCredentials
from lab.containers.sigstack import FulcioContainer, RekorContainer, TsaContainer
from lab.endpoints import Endpoints, ProxyEndpoint
from lab.errors import FaultProxyError, LabError, PortInUse, ServiceStartError
from lab.images import ImageBuilder, ImageRef
from lab.sigstore_trust import LabTrustMaterial
from lab.state import TRUST_CONFIG_FILE, lab_state_dir
from lab.toxiproxy import ToxiproxyClient
from lab.trust_domain import TrustDomain

_logger = logging.getLogger(__name__)

_PORT_TAKEN_MARKERS = ("port is already allocated", "address already in use")


class Lab:
    """The lab: a network, a registry on a named volume, and the fault proxy in front of it.

    Args:
        config: what to bring up (see `LabConfig`).
        client: the Docker client (default: from the environment, with a clear error if no
            engine answers).
        builder: finds or builds the images (default: `ImageBuilder` in `config.images` mode).

    Example:
        >>> with Lab(LabConfig()) as lab:  # doctest: +SKIP
        ...     requests.get(lab.endpoints.registry_url + "/v2/")
    """

    def __init__(
        self,
        config: LabConfig,
        *,
        client: docker.DockerClient | None = None,
        builder: ImageBuilder | None = None,
    ) -> None:
        self.config = config
        self._client = client
        self._builder = builder
        self._network: Network | None = None
        self._containers: dict[str, LabContainer] = {}
        self._endpoints: Endpoints | None = None
        self._toxiproxy: ToxiproxyClient | None = None
        self.images: dict[str, ImageRef] = {}
        self.registry_credentials: RegistryCredentials | None = (
            RegistryCredentials.generate() if config.registry_auth else None
        )
        self.startup_seconds: float | None = None
        self.trust_material: LabTrustMaterial | None = None
        self.trust_domain: TrustDomain | None = None
        self._facts: dict[str, Any] | None = None

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = docker_client()
        return self._client

    @property
    def endpoints(self) -> Endpoints:
        if self._endpoints is None:
            raise LabError(f"lab {self.config.lab_id} is not up")
        return self._endpoints

    @property
    def toxiproxy(self) -> ToxiproxyClient:
        """A client of the fault proxy's Toxiproxy API."""
        if self._toxiproxy is None:
            raise LabError(f"lab {self.config.lab_id} is not up")
        return self._toxiproxy

    @property
    def volume_names(self) -> dict[str, str]:
        """Named volumes by service: the registry's storage. (Rekor's logs are not the lab's:
        they live in the trust domain's `logs/` folder and outlive the lab.)"""
        return {service: f"{self.config.lab_id}-{service}" for service in ("registry",)}

    def service_container(self, service: str) -> Container:
        """The running Docker container of a lab service (for drills that stop or restore it).

        Raises:
            LabError: the lab has no such service, or it was never started.
        """
        container = self._containers.get(service)
        if container is None or container._container is None:
            raise LabError(f"lab {self.config.lab_id} has no running {service} container")
        found: Container = container._container
        return found

    def wait_healthy(self, service: str) -> None:
        """Wait (bounded by the startup timeout) until a proxied service answers its health
        check through the fault proxy again, e.g. after a restart."""
        url = self.endpoints.proxies[service].url
        if service == "registry":
            self._wait_through_proxy(service, url + "/v2/", lambda status: status in (200, 401))
        else:
            self._wait_through_proxy(service, url + "/healthz", lambda status: status == 200)

    def mint_token(self, identity: str | None = None, *, lifetime: int = 300) -> str:
        """A fresh identity token from the lab's OIDC issuer, for `identity` (default: the
        lab's configured identity)."""
        if self.trust_material is None:
            raise LabError(f"lab {self.config.lab_id} has no Sigstore stack")
        who = identity or self.config.identity  # the trust domain serves many labs
        return self.trust_material.mint_identity_token(who, lifetime=lifetime)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Self:
        """Build what is missing, start every service, create the proxies, check health.

        Raises:
            LabError: a subclass naming the service that failed. Nothing is left running and
                the containers' logs are saved under `config.log_dir`.
        """
        started = time.monotonic()
        builder = self._builder or ImageBuilder(self.client, mode=self.config.images)
        self.images = builder.ensure(
            ["registry", "faultproxy", *(["sigstack"] if self.config.sigstore else [])]
        )
        # The engine-side lock on the name: a second start of it fails here, before it has
        # made anything, and so must not remove anything either.
        claim(self.client, self.config.lab_id, self.images["faultproxy"].tag, self._labels())
        try:
            self._start_services()
            mark_ready(self.client, self.config.lab_id)
        except BaseException:
            self.save_logs()
            self._remove()
            raise
        self.startup_seconds = time.monotonic() - started
        _logger.info("lab %s is up in %.1f s", self.config.lab_id, self.startup_seconds)
        return self

    def stop(self) -> None:
        """Save every container's log under `config.log_dir`, then remove the lab
        (unless `config.keep`)."""
        self.save_logs()
        if self.config.keep:
            _logger.info("keeping lab %s (cihub lab down removes it)", self.config.lab_id)
            return
        self._remove()

    def save_logs(self) -> list[Path]:
        """Write each container's log to `<config.log_dir>/<service>.log`; return the paths."""
        return save_logs(self.client, self.config.lab_id, self.config.log_dir)

    def facts(self) -> dict[str, Any]:
        """Facts for the pipeline_run record: image tags and IDs, service versions."""
        if self._facts is None:
            self._facts = {
                "lab_id": self.config.lab_id,
                "image_mode": self.config.images,
                "images": {
                    name: {"tag": ref.tag, "id": ref.image_id}
                    for name, ref in sorted(self.images.items())
                },
                "services": {
                    "registry": {"version": self._registry_version()},
                    "faultproxy": {"version": self._faultproxy_version()},
                },
                "startup_seconds": self.startup_seconds,
            }
        return self._facts

    # -- start-up -------------------------------------------------------------------------

    def _labels(self) -> dict[str, str]:
        config = self.config
        return labels.resource_labels(
            config.lab_id, config.session, persistent=config.persistent, owner=config.owner
        )

    def _start_services(self) -> None:
        config = self.config
        owner = self._labels()
        network = Network(docker_network_kw={"labels": owner})
        network.name = config.lab_id
        network.create()
        self._network = network
        for service, volume in self.volume_names.items():
            self.client.volumes.create(volume, labels={**owner, labels.SERVICE: service})

        def labelled(service: str, **extra: str) -> dict[str, Any]:
            return {
                "lab_id": config.lab_id,
                "network": network,
                "resource_labels": {**owner, labels.SERVICE: service, **extra},
                "startup_timeout": config.startup_timeout,
            }

        # On the host network (see lab.containers.faultproxy): its API port is chosen here and
        # recorded in a label, so `cihub lab status` finds the API and, through it, the proxies.
        api_port = config.host_ports.get("faultproxy") or free_loopback_port()
        faultproxy = FaultProxyContainer(
            self.images["faultproxy"].tag,
            **{
                **labelled("faultproxy", **{labels.API_PORT: str(api_port)}),
                "network": None,
            },
        ).with_api_port(api_port)
        registry = RegistryContainer(
            self.images["registry"].tag, **labelled("registry")
        ).with_storage_volume(self.volume_names["registry"])
        if self.registry_credentials is not None:
            registry.with_htpasswd(self.registry_credentials)
        # The engine starts containers one at a time, so the fault proxy, whose Python process
        # takes longest to listen after its container starts, goes first.
        self._containers = {"faultproxy": faultproxy, "registry": registry}
        if config.sigstore:
            self._containers.update(self._sigstack_containers(labelled))

        with ThreadPoolExecutor(max_workers=len(self._containers)) as pool:
            futures = [pool.submit(self._start_one, c) for c in self._containers.values()]
            for future in futures:
                future.result()

        api_url = faultproxy.api_url
        self._toxiproxy = ToxiproxyClient(api_url)
        proxies = {p.name: self._create_proxy(p) for p in config.proxied}
        trust_config = self._write_trust_config(proxies) if config.sigstore else None
        self._endpoints = Endpoints(
            config.lab_id, api_url, proxies, config.persistent, trust_config=trust_config
        )
        for proxied in config.proxied:
            self.wait_healthy(proxied.name)

    def _sigstack_containers(
        self, labelled: Callable[..., dict[str, Any]]
    ) -> dict[str, LabContainer]:
        config = self.config
        domain = TrustDomain.open(
            config.trust_domain, identity=config.identity, issuer=config.issuer
        )
        material = domain.material
        self.trust_domain, self.trust_material = domain, material
        # `cihub lab token` reads the lab's `sigstore/` folder: point it at the domain's keys.
        link = lab_state_dir(config.lab_id) / "sigstore"
        if not link.is_symlink():
            link.symlink_to(domain.material_dir, target_is_directory=True)
        folders = domain.service_dirs()
        image = self.images["sigstack"].tag
        rekor = (
            RekorContainer(image, **labelled("rekor"))
            .with_logs(domain.logs_dir, domain.log_user())
            .with_names(material.rekor_v1_name, material.rekor_origin)
        )
        return {
            "rekor": rekor.with_role_files(folders["rekor"]),
            "fulcio": FulcioContainer(image, **labelled("fulcio")).with_role_files(
                folders["fulcio"]
            ),
            "tsa": TsaContainer(image, **labelled("tsa")).with_role_files(folders["tsa"]),
        }

    def _create_proxy(self, proxied: ProxiedService) -> ProxyEndpoint:
        """Create the proxy on 127.0.0.1 (a fixed port if asked, else the kernel's choice) to
        the service's published port."""
        service = self._containers[proxied.upstream_host]
        upstream = f"{LOOPBACK}:{service.published_port(proxied.upstream_port)}"
        fixed = self.config.host_ports.get(proxied.name)
        listen = f"{LOOPBACK}:{fixed or 0}"
        try:
            created = self.toxiproxy.create_proxy(proxied.name, listen, upstream)
        except FaultProxyError as exc:
            if fixed and any(marker in str(exc).lower() for marker in _PORT_TAKEN_MARKERS):
                raise PortInUse(
                    f"faultproxy: proxy {proxied.name}: host port {fixed} on {LOOPBACK} is "
                    "already in use"
                ) from exc
            raise ServiceStartError(
                f"faultproxy: cannot create proxy {proxied.name} -> {upstream}"
            ) from exc
        url = f"{proxied.scheme}://{LOOPBACK}:{created.listen_port}"
        return ProxyEndpoint(proxied.name, url, created.listen, upstream)

    def _write_trust_config(self, proxies: dict[str, ProxyEndpoint]) -> Path:
        """The lab's trust config: the domain's stable trusted root + this lab's URLs."""
        assert self.trust_domain is not None
        path = lab_state_dir(self.config.lab_id) / TRUST_CONFIG_FILE
        urls = {
            "rekor_url": proxies["rekor"].url,
            "fulcio_url": proxies["fulcio"].url,
            "tsa_url": proxies["tsa"].url,
        }
        return self.trust_domain.write_lab_trust_config(path, urls)

    def _start_one(self, container: LabContainer) -> None:
        service = container.service
        _logger.info("starting %s", service)
        try:
            container.start()
        except docker.errors.APIError as exc:
            text = str(exc).lower()
            if any(marker in text for marker in _PORT_TAKEN_MARKERS):
                raise PortInUse(
                    f"{service}: a host port it publishes on {LOOPBACK} is already in use "
                    f"({_requested_ports(container)})"
                ) from exc
            if exc.status_code == 409:
                raise ServiceStartError(
                    f"{service}: a container named {container._name} already exists "
                    "(a stale lab? run `cihub lab down`)"
                ) from exc
            raise ServiceStartError(f"{service}: the engine refused to start it") from exc
        except TimeoutError as exc:
            raise ServiceStartError(
                f"{service}: not healthy within {self.config.startup_timeout:.0f} s; "
                f"its log is kept at {self.config.log_dir / (service + '.log')}"
            ) from exc
        except RuntimeError as exc:
            # testcontainers' wait strategies raise RuntimeError when the container exits.
            raise ServiceStartError(
                f"{service}: exited before it was healthy; "
                f"its log is kept at {self.config.log_dir / (service + '.log')}"
            ) from exc

    def _wait_through_proxy(self, service: str, url: str, healthy: Callable[[int], bool]) -> None:
        deadline = time.monotonic() + self.config.startup_timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                status = requests.get(url, timeout=2).status_code
            except requests.RequestException as exc:
                last = type(exc).__name__
            else:
                if healthy(status):
                    return
                last = f"HTTP {status}"
            time.sleep(0.1)
        raise ServiceStartError(
            f"{service}: not reachable through the fault proxy at {url} within "
            f"{self.config.startup_timeout:.0f} s (last: {last}); its log is kept at "
            f"{self.config.log_dir / (service + '.log')}"
        )

    def _remove(self) -> None:
        remove_lab(self.client, self.config.lab_id)
        self._endpoints = None
        self._toxiproxy = None

    # -- facts ----------------------------------------------------------------------------

    def _registry_version(self) -> str:
        container = self._containers.get("registry")
        if container is None or container._container is None:
            return "unknown"
        result = container._container.exec_run(["/usr/bin/docker-registry", "--version"])
        output = result.output if isinstance(result.output, bytes) else b""
        return output.decode(errors="replace").strip() or "unknown"

    def _faultproxy_version(self) -> str:
        try:
            return self.toxiproxy.version()
        except LabError:
            return "unknown"


def _requested_ports(container: LabContainer) -> str:
    fixed = [f"{host} for {port}" for port, host in container._published.items() if host]
    return ", ".join(fixed) if fixed else "engine-chosen ports"
