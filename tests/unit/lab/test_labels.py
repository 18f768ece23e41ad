import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lab import labels


def test_resource_labels_mark_the_owner() -> None:
    found = labels.resource_labels("cihub-1", "s", persistent=False, service="registry")
    assert found[labels.MANAGED] == "true"
    assert found[labels.LAB] == "cihub-1"
    assert found[labels.OWNER_PID] == str(os.getpid())
    assert found[labels.SERVICE] == "registry"


def test_a_lab_whose_owner_is_alive_or_persistent_is_not_stale() -> None:
    assert not labels.is_stale(labels.resource_labels("a", "s", persistent=False))
    dead = _dead_pid()
    persistent = labels.resource_labels("a", "s", persistent=True) | {labels.OWNER_PID: str(dead)}
    assert not labels.is_stale(persistent)


def test_a_lab_whose_owner_died_is_stale() -> None:
    lab_labels = labels.resource_labels("a", "s", persistent=False)
    lab_labels[labels.OWNER_PID] = str(_dead_pid())
    assert labels.is_stale(lab_labels)


def test_a_lab_of_another_host_is_left_alone() -> None:
    lab_labels = labels.resource_labels("a", "s", persistent=False)
    lab_labels[labels.OWNER_PID] = str(_dead_pid())
    lab_labels[labels.OWNER_HOST] = socket.gethostname() + "-elsewhere"
    assert not labels.is_stale(lab_labels)


def _dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(proc.stdout)


def test_a_persistent_lab_killed_before_it_was_ready_is_stale() -> None:
    lab_labels = labels.resource_labels("a", "s", persistent=True)
    lab_labels[labels.OWNER_PID] = str(_dead_pid())
    assert labels.is_stale(lab_labels, ready=False)
    assert not labels.is_stale(lab_labels, ready=True)
    # Still starting in a live process: not stale.
    alive = labels.resource_labels("a", "s", persistent=True)
    assert not labels.is_stale(alive, ready=False)


def test_a_lab_without_a_starter_pid_is_never_stale() -> None:
    # e.g. the compose.yaml lab: nothing here can tell whether its starter lives.
    compose = {labels.MANAGED: "true", labels.LAB: "compose"}
    assert not labels.is_stale(compose)
    assert not labels.is_stale(compose, ready=False)


def test_owner_and_default_name_follow_user_home_and_project() -> None:
    one = {"HOME": "/home/one", "USER": "x"}
    two = {"HOME": "/home/two", "USER": "x"}
    assert labels.caller_owner(one) != labels.caller_owner(two)
    assert labels.caller_owner(one) == labels.caller_owner(dict(one))
    here, there = Path("/srv/a"), Path("/srv/b")
    names = {
        labels.default_lab_name(here, one),
        labels.default_lab_name(there, one),
        labels.default_lab_name(here, two),
    }
    assert len(names) == 3
    assert labels.default_lab_name(here, one) == labels.default_lab_name(here, one)
    for name in names:
        assert labels.check_lab_name(name) == name


def test_resource_labels_record_the_owner() -> None:
    found = labels.resource_labels("a", "s", persistent=True, owner="someone~abc")
    assert found[labels.OWNER] == "someone~abc"
    assert labels.resource_labels("a", "s", persistent=True)[labels.OWNER] == (
        labels.caller_owner()
    )


@pytest.mark.parametrize("bad", ["", "UPPER", "-lead", "has space", "a/b", "x" * 64, "é"])
def test_lab_names_that_cannot_name_docker_objects_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="lab name"):
        labels.check_lab_name(bad)
