"""The Docker client the lab talks through, with one clear error when no engine answers."""

from __future__ import annotations

import os

import docker
import docker.errors
import requests

from lab.errors import DockerUnavailable

_START_ENGINE_HINT = (
    "no Docker engine answers at {where}: start one (e.g. `sudo systemctl start docker` or "
    "`sudo dockerd &`) or point DOCKER_HOST at it"
)


def docker_client(timeout: int = 120) -> docker.DockerClient:
    """Return a client for the engine named by the environment (DOCKER_HOST or the socket).

    Raises:
        DockerUnavailable: nothing answers a ping; the message says how to start an engine.
    """
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        # ssh:// through the `ssh` client (its config, agent and known hosts, as the docker CLI
        # does), not paramiko, which the project does not install
        client = docker.from_env(timeout=timeout, use_ssh_client=where.startswith("ssh://"))
        client.ping()
    except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
        raise DockerUnavailable(_START_ENGINE_HINT.format(where=where)) from exc
    return client
