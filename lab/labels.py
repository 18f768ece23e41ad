"""Labels on every container, network, volume and image the lab creates; cleanup goes by them."""

from __future__ import annotations

import os
import socket

NAMESPACE = "org.cihub"
MANAGED = f"{NAMESPACE}.managed"
"""Present, with value "true", on everything the lab made."""
LAB = f"{NAMESPACE}.lab"
"""The lab id a container, network or volume belongs to."""
SESSION = f"{NAMESPACE}.session"
"""The uuid of the process session (pytest run or CLI call) that made it."""
SERVICE = f"{NAMESPACE}.service"
"""The lab service a container or volume serves (registry, faultproxy, ...)."""
OWNER_PID = f"{NAMESPACE}.owner-pid"
"""The pid that owns a non-persistent lab; when that process is gone the lab is stale."""
OWNER_HOST = f"{NAMESPACE}.owner-host"
PERSISTENT = f"{NAMESPACE}.persistent"
"""'true' for labs brought up by `cihub lab up`: they live until `cihub lab down`."""
IMAGE = f"{NAMESPACE}.image"
"""The lab image name (base, registry, faultproxy, ...) on images."""
CONTENT_HASH = f"{NAMESPACE}.content-hash"
"""The content hash of an image's Dockerfile, context and base."""
ENDPOINT_PREFIX = f"{NAMESPACE}.endpoint."
"""On the fault proxy container: `<prefix><proxy name>` = "<listen port>=<upstream>"."""


def resource_labels(
    lab_id: str, session: str, *, persistent: bool, service: str | None = None
) -> dict[str, str]:
    """The labels of one lab resource; the owner is the calling process."""
    labels = {
        MANAGED: "true",
        LAB: lab_id,
        SESSION: session,
        OWNER_PID: str(os.getpid()),
        OWNER_HOST: socket.gethostname(),
        PERSISTENT: "true" if persistent else "false",
    }
    if service is not None:
        labels[SERVICE] = service
    return labels


def is_stale(labels: dict[str, str]) -> bool:
    """True when a lab's owner process on this host is gone and the lab was not persistent."""
    if labels.get(PERSISTENT) == "true" or labels.get(OWNER_HOST) != socket.gethostname():
        return False
    try:
        pid = int(labels.get(OWNER_PID, ""))
    except ValueError:
        return True
    return not _pid_alive(pid)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
