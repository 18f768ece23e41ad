"""A lab's claim on its name: the engine-side lock that makes `lab up` for one name atomic.

Container names are unique on an engine and checked atomically by it, so the first thing a lab
start does is create (never start) a container named `<lab>-claim`. A second start of the same
name gets HTTP 409 and either reaps the first (its starter died: stale) or refuses. Once every
service is healthy the claim is renamed `<lab>-ready`: a persistent lab whose claim was never
renamed and whose starter is gone was killed half way, and is stale.
"""

from __future__ import annotations

import logging

import docker
import docker.errors
from docker.models.containers import Container

from lab import labels
from lab.cleanup import LabSummary, list_labs, remove_lab
from lab.errors import LabAlreadyUp

_logger = logging.getLogger(__name__)


def claim_name(lab_id: str) -> str:
    return lab_id + labels.CLAIM_SUFFIX


def find_lab(client: docker.DockerClient, lab_id: str) -> LabSummary | None:
    return next((lab for lab in list_labs(client) if lab.lab_id == lab_id), None)


def claim(
    client: docker.DockerClient, lab_id: str, image: str, lab_labels: dict[str, str]
) -> Container:
    """Create the lab's claim container, reaping a stale lab of that name first.

    Raises:
        LabAlreadyUp: a live lab (starting or up) holds the name; the message says whose.
    """
    for _ in range(2):
        try:
            return client.containers.create(
                image,
                name=claim_name(lab_id),
                labels={**lab_labels, labels.SERVICE: labels.CLAIM_SERVICE},
                network_mode="none",
                # Never started; these only make sure it could not do anything if it were.
                entrypoint=["/bin/false"],
                cap_drop=["ALL"],
            )
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                raise
        holder = find_lab(client, lab_id)
        if holder is not None and holder.stale:
            _logger.info("reaping stale lab %s (its starter died)", lab_id)
            remove_lab(client, lab_id)
            continue
        raise LabAlreadyUp(_held_message(lab_id, holder))
    raise LabAlreadyUp(_held_message(lab_id, find_lab(client, lab_id)))


def mark_ready(client: docker.DockerClient, lab_id: str) -> None:
    """Rename the claim `<lab>-ready`: the lab is up and outlives a dead starter."""
    client.containers.get(claim_name(lab_id)).rename(lab_id + labels.READY_SUFFIX)


def _held_message(lab_id: str, holder: LabSummary | None) -> str:
    if holder is None:
        return f"lab {lab_id} is being started by another run: wait for it, then `cihub lab status`"
    owner = f" by {holder.owner}" if holder.owner != "-" else ""
    if holder.starting:
        return f"lab {lab_id} is being started{owner}: wait for it, then `cihub lab status`"
    return (
        f"lab {lab_id} is already up{owner}: use it (`cihub lab status`) or remove it "
        f"first (`cihub lab down --lab {lab_id}`)"
    )
