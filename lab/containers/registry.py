"""The lab's OCI registry: Debian's docker-registry (distribution 2.8), optional htpasswd auth."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import bcrypt

from lab.containers.base import Hardening, LabContainer

REGISTRY_PORT = 5000
STORAGE_PATH = "/var/lib/docker-registry"
_AUTH_DIR = "/etc/cihub/auth"
_HTPASSWD_PATH = f"{_AUTH_DIR}/htpasswd"


@dataclass(frozen=True)
class RegistryCredentials:
    """Per-lab credentials for the registry's htpasswd auth. `repr` never shows the password."""

    username: str
    password: str

    @classmethod
    def generate(cls) -> RegistryCredentials:
        return cls(f"cihub-{secrets.token_hex(4)}", secrets.token_urlsafe(24))

    def htpasswd_line(self) -> bytes:
        # distribution only accepts bcrypt entries in htpasswd files.
        hashed = bcrypt.hashpw(self.password.encode(), bcrypt.gensalt(rounds=10))
        return self.username.encode() + b":" + hashed + b"\n"

    def __repr__(self) -> str:
        return f"RegistryCredentials(username={self.username!r}, password='***')"

    __str__ = __repr__


class RegistryContainer(LabContainer):
    """docker-registry serving on port 5000, its storage on a named volume.

    Port 5000 is published on 127.0.0.1 for the fault proxy (on the host network) to reach;
    the harness goes through the fault proxy. It runs as nobody (the image gives its storage
    folder to that user), read-only but for its storage and the auth folder.
    """

    service = "registry"
    hardening = Hardening(pids_limit=128, mem_limit="256m")

    def with_storage_volume(self, volume_name: str) -> RegistryContainer:
        """Keep the registry's blobs on the named volume, so DR drills can back it up."""
        self.with_volume_mapping(volume_name, STORAGE_PATH, "rw")
        return self

    def with_htpasswd(self, credentials: RegistryCredentials) -> RegistryContainer:
        """Turn on htpasswd auth with these credentials (only the bcrypt hash goes in)."""
        # The auth folder takes the file before the start: a small volume on the read-only
        # root, made only for labs with auth (each volume costs the engine time at start-up).
        self.with_docker_kwarg("mounts", Hardening(writable=(_AUTH_DIR,)).docker_kwargs()["mounts"])
        self.with_copy_into_container(credentials.htpasswd_line(), _HTPASSWD_PATH, 0o644)
        self.with_env("REGISTRY_AUTH", "htpasswd")
        self.with_env("REGISTRY_AUTH_HTPASSWD_REALM", "cihub-lab")
        self.with_env("REGISTRY_AUTH_HTPASSWD_PATH", _HTPASSWD_PATH)
        return self

    def _configure_service(self) -> None:
        self.with_published_port(REGISTRY_PORT)
        # 401 when htpasswd auth is on: it answers, so it is up.
        self.with_http_health(REGISTRY_PORT, "/v2/", (200, 401))
