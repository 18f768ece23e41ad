"""The containerized lab: images, services, lifecycle and fault controls.

Public API: `Lab`, `LabConfig`, `Endpoints`, and the errors in `lab.errors`.
"""

import os

# testcontainers reads its settings once, when it is first imported, so they are set here,
# before any lab module imports it. Its Ryuk reaper image can't be pulled on these machines (the
# lab cleans up by label instead), and the lab publishes every port on 127.0.0.1, which
# testcontainers must use even when it guesses it runs inside a container.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
os.environ.setdefault("TC_HOST", "127.0.0.1")

from lab.config import LabConfig
from lab.endpoints import Endpoints, ProxyEndpoint
from lab.lab import Lab

__all__ = ["Endpoints", "Lab", "LabConfig", "ProxyEndpoint"]
