"""Find labs by label and remove them: containers, then networks, then volumes."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
    """One lab found on the engine by its labels."""

    lab_id: str
    persistent: bool
    stale: bool
    containers: tuple[str, ...]
    running: bool


def list_labs(client: docker.DockerClient) -> list[LabSummary]:
    """Every lab with a labelled container, network or volume on the engine, sorted by id."""
    by_lab: dict[str, dict[str, str]] = {}
    members: dict[str, list[str]] = {}
    running: dict[str, bool] = {}
    managed: _Filters = {"label": f"{labels.MANAGED}=true"}
    for container in client.containers.list(all=True, filters=managed):
        lab_id = container.labels.get(labels.LAB)
        if not lab_id:
            continue
        by_lab.setdefault(lab_id, dict(container.labels))
        members.setdefault(lab_id, []).append(container.name or container.id or "?")
        running[lab_id] = running.get(lab_id, False) or container.status == "running"
    for resource in [*client.networks.list(filters=managed), *client.volumes.list(filters=managed)]:
        resource_labels = resource.attrs.get("Labels") or {}
        lab_id = resource_labels.get(labels.LAB)
        if lab_id:
            by_lab.setdefault(lab_id, dict(resource_labels))
            members.setdefault(lab_id, [])
    return [
        LabSummary(
            lab_id=lab_id,
            persistent=lab_labels.get(labels.PERSISTENT) == "true",
            stale=labels.is_stale(lab_labels),
            containers=tuple(sorted(members[lab_id])),
            running=running.get(lab_id, False),
        )
        for lab_id, lab_labels in sorted(by_lab.items())
    ]


def remove_lab(client: docker.DockerClient, lab_id: str) -> None:
    """Remove every container, network and volume labelled with `lab_id`, and the lab's state
    folder (its keys and trust config). Missing is fine."""
    selector = _lab_selector(lab_id)
    # Removed in this order because a network or volume in use by a container can't go first.
    for container in client.containers.list(all=True, filters=selector):
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True, v=True)
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
    for container in client.containers.list(all=True, filters=selector):
        service = container.labels.get(labels.SERVICE) or container.name or "container"
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
