"""Container faults reach only the configured lab's services (a fake engine, no Docker)."""

from __future__ import annotations

from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed  # type: ignore[import-untyped]

from harness.chaos import actions
from harness.chaos.runner import _fault_of
from lab import labels


class FakeContainer:
    def __init__(self, lab_id: str, service: str) -> None:
        self.labels = {labels.LAB: lab_id, labels.SERVICE: service}
        self.killed = False

    def kill(self, signal: str) -> None:
        self.killed = True


class FakeEngine:
    """Answers every list with every container, as an engine ignoring the filter would."""

    def __init__(self, *found: FakeContainer) -> None:
        self.found = list(found)
        self.containers = self

    def list(self, **kwargs: Any) -> list[FakeContainer]:
        return self.found


def test_a_container_of_another_lab_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    other = FakeContainer("someone-elses-lab", "registry")
    monkeypatch.setattr(actions, "docker_client", lambda: FakeEngine(other))
    with pytest.raises(ActivityFailed, match="lab mine has 0 registry containers"):
        actions.kill_container("registry", configuration={"lab_id": "mine"})
    assert not other.killed


def test_the_fault_proxy_and_unknown_services_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(actions, "docker_client", lambda: pytest.fail("the engine was asked"))
    for service in ("faultproxy", "claim", "../registry"):
        with pytest.raises(ActivityFailed, match="may not be faulted"):
            actions.pause_container(service, configuration={"lab_id": "mine"})


def test_without_lab_vars_nothing_is_touched() -> None:
    with pytest.raises(ActivityFailed, match=r"configuration\.lab_id is not set"):
        actions.lab_container(None, "registry")


@pytest.mark.parametrize(
    ("module", "func", "arguments", "fault"),
    [
        (
            "chaostoxi.toxic.actions",
            "create_latency_toxic",
            {"for_proxy": "registry"},
            "toxic:latency on registry",
        ),
        (
            "harness.chaos.actions",
            "add_toxic",
            {"proxy": "rekor", "type": "reset_peer"},
            "toxic:reset_peer on rekor",
        ),
        (
            "harness.chaos.actions",
            "pause_container",
            {"service": "rekor"},
            "container:pause on rekor",
        ),
        ("harness.chaos.actions", "remove_toxic", {"proxy": "rekor"}, None),
    ],
)
def test_faults_are_named_for_the_record(
    module: str, func: str, arguments: dict[str, Any], fault: str | None
) -> None:
    activity = {
        "type": "action",
        "provider": {"module": module, "func": func, "arguments": arguments},
    }
    assert _fault_of(activity) == fault
