"""The containerized lab: images, services, lifecycle and fault controls.

Public API: `Lab`, `LabConfig`, `Endpoints`, and the errors in `lab.errors`. They are imported
on first use, so `lab.oci` (an OCI client needing only `requests`) imports without the Docker
side (docker, testcontainers) installed.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

# testcontainers reads its settings once, when it is first imported, so they are set here,
# before any lab module imports it. Its Ryuk reaper image can't be pulled on these machines (the
# lab cleans up by label instead), and the lab publishes every port on 127.0.0.1, which
# testcontainers must use even when it guesses it runs inside a container.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
os.environ.setdefault("TC_HOST", "127.0.0.1")

if TYPE_CHECKING:
    from lab.config import LabConfig
    from lab.endpoints import Endpoints, ProxyEndpoint
    from lab.lab import Lab

__all__ = ["Endpoints", "Lab", "LabConfig", "ProxyEndpoint"]

_LAZY = {
    "Lab": "lab.lab",
    "LabConfig": "lab.config",
    "Endpoints": "lab.endpoints",
    "ProxyEndpoint": "lab.endpoints",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
