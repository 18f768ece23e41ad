"""`list_labs` reads owners, states and ages from labels alone (a fake engine, no Docker)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import docker.errors
import pytest
import requests

from lab import labels
from lab.cleanup import LabSummary, list_labs, remove_container_once
from lab.containers.base import Hardening
from lab.containers.faultproxy import FaultProxyContainer
from lab.containers.registry import RegistryContainer


@dataclass
class _Listing:
    items: list[Any] = field(default_factory=list)

    def list(self, filters: object = None) -> list[Any]:
        return self.items


@dataclass
class _Api:
    entries: list[dict[str, Any]]

    def containers(self, all: bool = False, filters: object = None) -> list[dict[str, Any]]:
        return self.entries


class _Engine:
    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.api = _Api(entries)
        self.networks = _Listing()
        self.volumes = _Listing()


def _entry(name: str, lab_labels: dict[str, str], service: str, state: str) -> dict[str, Any]:
    return {
        "Id": name,
        "Names": ["/" + name],
        "Labels": {**lab_labels, labels.SERVICE: service},
        "State": state,
        "Created": 1_700_000_000,
    }


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(done.stdout)


def _lab(
    lab_id: str, *, persistent: bool, claim: str, pid: int, running: bool = True
) -> list[dict[str, Any]]:
    lab_labels = labels.resource_labels(lab_id, "s", persistent=persistent, owner="me~1")
    lab_labels[labels.OWNER_PID] = str(pid)
    state = "running" if running else "exited"
    return [
        _entry(f"{lab_id}{claim}", lab_labels, labels.CLAIM_SERVICE, "created"),
        _entry(f"{lab_id}-registry", lab_labels, "registry", state),
        _entry(f"{lab_id}-faultproxy", lab_labels, "faultproxy", "running"),
    ]


def _summaries(entries: list[dict[str, Any]]) -> dict[str, LabSummary]:
    engine: Any = _Engine(entries)
    found: list[LabSummary] = list_labs(engine)
    return {lab.lab_id: lab for lab in found}


def test_states_follow_claims_starters_and_containers() -> None:
    dead, alive = _dead_pid(), os.getpid()
    found = _summaries(
        _lab("up", persistent=True, claim="-ready", pid=dead)
        + _lab("killed", persistent=True, claim="-claim", pid=dead)
        + _lab("starting", persistent=True, claim="-claim", pid=alive)
        + _lab("test-dead", persistent=False, claim="-ready", pid=dead)
        + _lab("broken", persistent=True, claim="-ready", pid=dead, running=False)
    )
    assert {name: lab.state for name, lab in found.items()} == {
        "up": "running",
        "killed": "stale",
        "starting": "starting",
        "test-dead": "stale",
        "broken": "degraded",
    }
    up = found["up"]
    assert up.owner == "me~1" and up.ready and up.persistent
    assert up.services == ("faultproxy", "registry"), "the claim is not a service"
    assert up.created == datetime.fromtimestamp(1_700_000_000, UTC)
    assert up.age_seconds(datetime.fromtimestamp(1_700_000_060, UTC)) == 60


def test_every_lab_service_is_hardened() -> None:
    for container_class in (RegistryContainer, FaultProxyContainer):
        posture = container_class.hardening.docker_kwargs()
        assert posture["cap_drop"] == ["ALL"]
        assert posture["security_opt"] == ["no-new-privileges:true"]
        assert posture["read_only"] is True
        assert posture["pids_limit"] > 0 and posture["mem_limit"]
        assert not posture["user"].startswith("0:")
    assert Hardening(writable=("/etc/x",)).docker_kwargs()["mounts"][0]["Target"] == "/etc/x"


def _refusal(status: int, said: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError(f"{status} Client Error", response, explanation=said)


class _Removing:
    """A container whose removal the engine refuses with `refusal`."""

    id = "c0ffee"

    def __init__(self, refusal: docker.errors.APIError) -> None:
        self.refusal = refusal

    def remove(self, **_: object) -> None:
        raise self.refusal


class _InspectingApi:
    """The container is there for `polls` inspections, then gone."""

    def __init__(self, polls: int) -> None:
        self.polls = polls
        self.asked = 0

    def inspect_container(self, _container: str) -> dict[str, Any]:
        self.asked += 1
        if self.asked > self.polls:
            raise docker.errors.NotFound("No such container: c0ffee")
        return {"Id": "c0ffee"}


def test_a_container_another_process_is_removing_is_waited_for() -> None:
    """Two sessions cleaning one stale lab at once: the second waits for the first's removal
    (before, the 409 was a traceback out of `lab up`, seen in CI)."""
    engine = SimpleNamespace(api=_InspectingApi(polls=2))
    in_progress = _refusal(409, "removal of container c0ffee is already in progress")
    remove_container_once(engine, _Removing(in_progress))  # type: ignore[arg-type]
    assert engine.api.asked == 3


def test_another_refusal_to_remove_a_container_is_not_swallowed() -> None:
    engine = SimpleNamespace(api=_InspectingApi(polls=0))
    paused = _refusal(409, "cannot remove a paused container")
    with pytest.raises(docker.errors.APIError, match="paused"):
        remove_container_once(engine, _Removing(paused))  # type: ignore[arg-type]
    assert engine.api.asked == 0
