import os
import socket
import subprocess
import sys

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
