"""Find labs by label and remove them: containers, then networks, then volumes."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import docker.errors

from lab import labels
from lab.state import remove_lab_state

_logger = logging.getLogger(__name__)

_Filters = dict[str, str | list[str] | bool]


def _lab_selector(lab_id: str) -> _Filters:
    return {"label": [f"{labels.MANAGED}=true", f"{labels.LAB}={lab_id}"]}


@dataclass(frozen=True)
class LabSummary:
    """One lab found on the engine by its labels.

    Attributes:
        owner: who started it (`lab.labels.caller_owner`), "-" when unknown.
        created: when its first resource was made (UTC), when known.
        ready: its start finished (its claim container was renamed `<lab>-ready`); labs from
            before claims, and compose labs, count as ready.
        starting: its start is still under way in a live process.
        services: the services its containers serve (the claim excluded).
        running_services: those whose container is running.
    """

    lab_id: str
    persistent: bool
    stale: bool
    containers: tuple[str, ...]
    running: bool
    owner: str = "-"
    created: datetime | None = None
    ready: bool = True
    starting: bool = False
    services: tuple[str, ...] = ()
    running_services: tuple[str, ...] = ()

    @property
    def state(self) -> str:
        """stale, starting, running, degraded (some services down) or stopped."""
        if self.stale:
            return "stale"
        if self.starting:
            return "starting"
        if self.services and set(self.running_services) == set(self.services):
            return "running"
        return "degraded" if self.running_services else "stopped"

    def age_seconds(self, now: datetime | None = None) -> float | None:
        if self.created is None:
            return None
        return max(0.0, ((now or datetime.now(UTC)) - self.created).total_seconds())


def _created(attrs: dict[str, object]) -> datetime | None:
    text = attrs.get("Created") or attrs.get("CreatedAt")
    if isinstance(text, int):  # the engine's container list gives seconds since the epoch
        return datetime.fromtimestamp(text, UTC)
    if not isinstance(text, str):
        return None
    # The engine writes nanoseconds ("2026-11-30T05:37:12.123456789Z"); Python takes micro.
    head, _, frac = text.rstrip("Z").partition(".")
    try:
        when = datetime.fromisoformat(head + ("." + frac[:6] if frac else ""))
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def list_labs(client: docker.DockerClient) -> list[LabSummary]:
    """Every lab with a labelled container, network or volume on the engine, sorted by id."""
    by_lab: dict[str, dict[str, str]] = {}
    members: dict[str, list[str]] = {}
    services: dict[str, set[str]] = {}
    running: dict[str, set[str]] = {}
    created: dict[str, datetime] = {}
    claims: dict[str, str] = {}
    managed: _Filters = {"label": f"{labels.MANAGED}=true"}

    def seen(lab_id: str, resource_labels: dict[str, str], attrs: dict[str, object]) -> None:
        by_lab.setdefault(lab_id, dict(resource_labels))
        members.setdefault(lab_id, [])
        when = _created(attrs)
        if when is not None and (lab_id not in created or when < created[lab_id]):
            created[lab_id] = when

    # One list call, no inspect per container: other labs' containers come and go meanwhile.
    for entry in client.api.containers(all=True, filters=managed):
        container_labels: dict[str, str] = entry.get("Labels") or {}
        lab_id = container_labels.get(labels.LAB)
        if not lab_id:
            continue
        seen(lab_id, container_labels, entry)
        names = entry.get("Names") or [entry.get("Id", "?")]
        name = str(names[0]).lstrip("/")
        service = container_labels.get(labels.SERVICE) or name
        if service == labels.CLAIM_SERVICE:
            claims[lab_id] = name
            continue
        members[lab_id].append(name)
        services.setdefault(lab_id, set()).add(service)
        if entry.get("State") == "running":
            running.setdefault(lab_id, set()).add(service)
    for resource in [*client.networks.list(filters=managed), *client.volumes.list(filters=managed)]:
        resource_labels = resource.attrs.get("Labels") or {}
        lab_id = resource_labels.get(labels.LAB)
        if lab_id:
            seen(lab_id, dict(resource_labels), resource.attrs)
    found: list[LabSummary] = []
    for lab_id, lab_labels in sorted(by_lab.items()):
        claim = claims.get(lab_id)
        ready = claim is None or claim.endswith(labels.READY_SUFFIX)
        stale = labels.is_stale(lab_labels, ready=ready)
        found.append(
            LabSummary(
                lab_id=lab_id,
                persistent=lab_labels.get(labels.PERSISTENT) == "true",
                stale=stale,
                containers=tuple(sorted(members[lab_id])),
                running=bool(running.get(lab_id)),
                owner=lab_labels.get(labels.OWNER, "-"),
                created=created.get(lab_id),
                ready=ready,
                starting=not ready and not stale,
                services=tuple(sorted(services.get(lab_id, ()))),
                running_services=tuple(sorted(running.get(lab_id, ()))),
            )
        )
    return found


_REMOVAL_WAIT_S = 30.0
"""How long to wait for a container another process is removing (its stop can take a while)."""


def remove_container_once(client: docker.DockerClient, container: Any) -> None:
    """Remove `container` with its anonymous volumes. Gone already is fine; one that another
    process (another session's reap, a second `lab up`) is removing is waited for, so what
    depends on it (its network, its volumes) can go next.

    Raises:
        docker.errors.APIError: the engine refused otherwise, or the other removal never ended.
    """
    try:
        container.remove(force=True, v=True)
        return
    except docker.errors.NotFound:
        return
    except docker.errors.APIError as exc:
        if exc.status_code != 409 or "in progress" not in str(exc.explanation or exc):
            raise
        refused = exc
    deadline = time.monotonic() + _REMOVAL_WAIT_S
    while time.monotonic() < deadline:
        try:
            client.api.inspect_container(container.id)
        except docker.errors.NotFound:
            return
        time.sleep(0.1)
    raise refused


def remove_lab(client: docker.DockerClient, lab_id: str) -> None:
    """Remove every container, network and volume labelled with `lab_id`, and the lab's state
    folder (its keys and trust config). Missing is fine."""
    selector = _lab_selector(lab_id)
    # Removed in this order because a network or volume in use by a container can't go first.
    for container in client.containers.list(all=True, filters=selector, sparse=True):
        remove_container_once(client, container)
    for network in client.networks.list(filters=selector):
        with contextlib.suppress(docker.errors.NotFound):
            network.remove()
    for volume in client.volumes.list(filters=selector):
        with contextlib.suppress(docker.errors.NotFound):
            volume.remove(force=True)
    remove_lab_state(lab_id)
    _logger.info("lab %s removed", lab_id)


def remove_labs(
    client: docker.DockerClient, select: Callable[[LabSummary], bool]
) -> list[LabSummary]:
    """Remove every lab `select` picks; return the ones removed."""
    chosen = [lab for lab in list_labs(client) if select(lab)]
    for lab in chosen:
        remove_lab(client, lab.lab_id)
    return chosen


def save_logs(client: docker.DockerClient, lab_id: str, log_dir: Path) -> list[Path]:
    """Write the log of each of the lab's containers to `<log_dir>/<service>.log`."""
    selector = _lab_selector(lab_id)
    written: list[Path] = []
    for entry in client.api.containers(all=True, filters=selector):
        service = (entry.get("Labels") or {}).get(labels.SERVICE) or entry["Id"][:12]
        if service == labels.CLAIM_SERVICE:
            continue
        container = client.containers.prepare_model({"Id": entry["Id"]})
        try:
            data: bytes = container.logs(stdout=True, stderr=True, timestamps=True)
        except docker.errors.APIError as exc:
            data = f"(logs unavailable: {exc})\n".encode()
        log_dir.mkdir(parents=True, exist_ok=True)
        path = log_dir / f"{service}.log"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        written.append(path)
    return written
