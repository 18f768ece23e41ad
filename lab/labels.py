"""Labels on every container, network, volume and image the lab creates; cleanup goes by them."""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path

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
OWNER = f"{NAMESPACE}.owner"
"""Who the lab belongs to: `<user>~<hash of host and HOME>` (see `caller_owner`)."""
API_PORT = f"{NAMESPACE}.api-port"
"""On the fault proxy container (host network): the 127.0.0.1 port of its Toxiproxy API."""
CLAIM_SERVICE = "claim"
"""The service label of a lab's claim container: created (never started) first, so a second
`up` of the same name fails on the engine's unique container name; renamed `<lab>-ready` once
the lab is up."""
READY_SUFFIX = "-ready"
CLAIM_SUFFIX = "-claim"
PERSISTENT = f"{NAMESPACE}.persistent"
"""'true' for labs brought up by `cihub lab up`: they live until `cihub lab down`."""
IMAGE = f"{NAMESPACE}.image"
"""The lab image name (base, registry, faultproxy, ...) on images."""
CONTENT_HASH = f"{NAMESPACE}.content-hash"
"""The content hash of an image's Dockerfile, context and base."""
ENDPOINT_PREFIX = f"{NAMESPACE}.endpoint."
"""On the fault proxy container: `<prefix><proxy name>` = "<listen port>=<upstream>"."""


_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def _short_hash(*parts: str, length: int = 6) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:length]


def _user(environ: Mapping[str, str]) -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = environ.get("USER") or str(os.getuid())
    return re.sub(r"[^a-z0-9_.-]", "-", user.lower()) or "user"


def caller_owner(environ: Mapping[str, str] = os.environ) -> str:
    """The calling user as a lab owner: `<user>~<hash of host name and HOME>`, so two users,
    or one user with two HOMEs (two CI jobs), are two owners."""
    home = environ.get("HOME") or str(Path.home())
    return f"{_user(environ)}~{_short_hash(socket.gethostname(), home)}"


def default_lab_name(
    project_dir: Path | None = None, environ: Mapping[str, str] = os.environ
) -> str:
    """The lab name `cihub lab up` uses without `--name`: one per owner and project folder,
    `cihub-<user>-<8 hex>`, so two users or two checkouts never collide."""
    folder = (project_dir or Path.cwd()).resolve()
    return f"cihub-{_user(environ)}-{_short_hash(caller_owner(environ), str(folder), length=8)}"


def check_lab_name(name: str) -> str:
    """Return `name` if it can name a lab (it prefixes container, network and volume names).

    Raises:
        ValueError: it can't; the message says what is allowed.
    """
    if not _NAME_RE.match(name):
        raise ValueError(
            f"lab name {name!r}: use 1-63 lowercase letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def resource_labels(
    lab_id: str,
    session: str,
    *,
    persistent: bool,
    service: str | None = None,
    owner: str | None = None,
) -> dict[str, str]:
    """The labels of one lab resource; the starter is the calling process."""
    labels = {
        MANAGED: "true",
        LAB: lab_id,
        SESSION: session,
        OWNER: owner or caller_owner(),
        OWNER_PID: str(os.getpid()),
        OWNER_HOST: socket.gethostname(),
        PERSISTENT: "true" if persistent else "false",
    }
    if service is not None:
        labels[SERVICE] = service
    return labels


def starter_alive(labels: Mapping[str, str]) -> bool:
    """Whether the process that started a lab still runs. A lab of another host, or one
    without a starter pid (e.g. from compose.yaml), counts as alive: nothing here can tell."""
    if labels.get(OWNER_HOST) != socket.gethostname() or OWNER_PID not in labels:
        return True
    try:
        pid = int(labels[OWNER_PID])
    except ValueError:
        return False
    return _pid_alive(pid)


def is_stale(labels: Mapping[str, str], *, ready: bool = True) -> bool:
    """True when a lab's starter on this host is gone and nothing else keeps the lab: a test
    lab (not persistent) lives only as long as its run; a persistent lab (`cihub lab up`)
    outlives its starter only once it was `ready`, so a start killed half way is stale."""
    if labels.get(PERSISTENT) == "true" and ready:
        return False
    return not starter_alive(labels)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
