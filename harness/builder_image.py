"""Builder images: which image a dual build runs in, and what it can do (probed once, cached).

A builder image must derive from the lab base (its `org.cihub.image` label says which lab image
it is). One probe run, as hardened as a build (see `HARDENED`), lists its tools, locales,
libfaketime, disorderfs and setarch; the answer is cached by image ID.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker
import docker.errors
import requests

from harness.errors import ConfigError, InfraError
from harness.variations import Capabilities
from lab import labels
from lab.images import default_cache_dir

if TYPE_CHECKING:
    from harness.build_session import BuildSession

_logger = logging.getLogger(__name__)

PROBE = r"""
# every tool the build runner runs (it checks none itself: each build would pay for it)
for tool in find sort tar touch cp xargs setpriv env stat date ls grep cut wc tail id mkdir rm \
        chmod sleep uname; do
    command -v "$tool" >/dev/null 2>&1 || echo "missing=$tool"
done
command -v locale >/dev/null 2>&1 && locale -a 2>/dev/null | sed 's/^/locale=/'
for p in /usr/lib/*/faketime/libfaketime.so.1 /usr/lib/faketime/libfaketime.so.1; do
    if [ -e "$p" ]; then echo "faketime=$p"; break; fi
done
command -v disorderfs >/dev/null 2>&1 && echo "disorderfs=yes"
command -v setarch >/dev/null 2>&1 && echo "setarch=yes"
echo "arch=$(uname -m)"
[ "$(readlink /etc/passwd)" = /cihub-etc/passwd ] \
    && [ "$(readlink /etc/group)" = /cihub-etc/group ] && echo "identity=linked"
# the runner's execute-only shell (RUNNER_SHELL): the probe's user is not root, so can't read it
if [ -x /usr/lib/cihub/sh ] && [ ! -r /usr/lib/cihub/sh ]; then
    echo "runner_shell=/usr/lib/cihub/sh"
fi
"""

HARDENED: dict[str, Any] = {
    "network_mode": "none",
    "read_only": True,
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges"],
}
"""The confinement every build and probe container gets (variations may add to it)."""

# -- image probing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageInfo:
    """A builder image: what it is and what it allows (from its config and one probe run)."""

    ref: str
    image_id: str
    env: Mapping[str, str]
    capabilities: Capabilities
    lab_image: str | None = None
    """The lab image it is (or derives from), from its `org.cihub.image` label."""
    identity_linked: bool = False
    """Its /etc/passwd and /etc/group link to /cihub-etc, where a warm build's are written
    (the lab builder images; see `harness.build_warm`)."""
    runner_shell: str | None = None
    """Its execute-only shell a warm runner runs in, so the build can't trace it (the lab
    builder images; see `harness.build_warm`). None: /bin/sh, and no warm container is reused."""

    def to_json(self) -> dict[str, Any]:
        caps = self.capabilities
        return {
            "ref": self.ref,
            "id": self.image_id,
            "lab_image": self.lab_image,
            "locales": list(caps.locales),
            "faketime_library": caps.faketime_library,
            "disorderfs": caps.disorderfs,
            "setarch": caps.setarch,
            "cpus": caps.cpus,
        }


def inspect_builder_image(
    client: docker.DockerClient,
    ref: str,
    *,
    lab_id: str,
    session: str,
    cache_dir: Path | None = None,
) -> ImageInfo:
    """Look up the builder image `ref` (never pulled) and probe what it can do.

    The image must derive from the lab base: it carries the `org.cihub.image` label every lab
    image (and anything built FROM one) inherits. The probe runs a shell in the image once;
    its answer is kept in `cache_dir` by image ID (an image never changes under its ID).

    Raises:
        ConfigError: the image is not there, not built FROM the lab base, or lacks a tool the
            build runner needs (find, tar, setpriv, ...).
        InfraError: the engine failed.
    """
    try:
        image = client.images.get(ref)
        info = client.info()
    except docker.errors.ImageNotFound as exc:
        raise ConfigError(
            f"--image {ref}: no such image on the engine (images are never pulled: build it "
            "FROM the lab base, e.g. FROM cihub/builder-python)"
        ) from exc
    except (docker.errors.APIError, requests.RequestException) as exc:
        raise InfraError(f"image {ref}: the engine could not inspect it") from exc
    image_labels = dict(image.labels or {})
    lab_image = image_labels.get(labels.IMAGE)
    if not lab_image:
        raise ConfigError(
            f"--image {ref}: not built FROM the lab base (no {labels.IMAGE} label); "
            "build it FROM cihub/base or a lab builder image"
        )
    config = image.attrs.get("Config") or {}
    env = dict(item.split("=", 1) for item in config.get("Env") or [] if "=" in item)
    output = _cached_probe(client, str(image.id), lab_id, session, cache_dir)
    values: dict[str, list[str]] = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values.setdefault(key, []).append(value)
    missing = values.get("missing", [])
    if missing:
        raise ConfigError(
            f"--image {ref}: the image lacks {', '.join(missing)}, which the build runner needs"
        )
    caps = Capabilities(
        locales=tuple(values.get("locale", [])),
        faketime_library=values["faketime"][0] if values.get("faketime") else None,
        disorderfs=bool(values.get("disorderfs")),
        setarch=bool(values.get("setarch")),
        cpus=int(info.get("NCPU") or os.cpu_count() or 1),
        fuse_device=os.path.exists("/dev/fuse"),
    )
    linked = values.get("identity") == ["linked"]
    shell = values.get("runner_shell", [None])[0]
    return ImageInfo(
        ref, str(image.id), env, caps, lab_image, identity_linked=linked, runner_shell=shell
    )


PROBE_CACHE = "determinism"
"""The folder of the shared cache (`lab.images.default_cache_dir()`) keeping probe answers."""


def session_builder_image(session: BuildSession, ref: str) -> ImageInfo:
    """`inspect_builder_image` for the containers of `session`, its probe answer kept in the
    shared cache (`default_cache_dir() / PROBE_CACHE`): what the drill, the bench and the
    tests all use.

    Raises:
        ConfigError, InfraError: as `inspect_builder_image`.
    """
    return inspect_builder_image(
        session.client,
        ref,
        lab_id=session.lab_id,
        session=session.session,
        cache_dir=default_cache_dir() / PROBE_CACHE,
    )


def _cached_probe(
    client: docker.DockerClient, image_id: str, lab_id: str, session: str, cache_dir: Path | None
) -> str:
    script = hashlib.sha256(PROBE.encode()).hexdigest()[:12]
    path = None
    if cache_dir is not None:
        path = cache_dir / f"probe-{image_id.removeprefix('sha256:')[:24]}-{script}.txt"
        with contextlib.suppress(OSError):
            return path.read_text(encoding="utf-8")
    output = _run_probe(client, image_id, lab_id=lab_id, session=session)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
            tmp.write_text(output, encoding="utf-8")
            tmp.replace(path)
        except OSError as exc:
            _logger.debug("probe cache %s not written: %s", path, exc)
    return output


def _run_probe(client: docker.DockerClient, image_id: str, *, lab_id: str, session: str) -> str:
    container = None
    try:
        container = client.containers.create(
            image_id,
            ["/bin/sh", "-c", PROBE],
            user="65534:65534",
            pids_limit=64,
            mem_limit="256m",
            labels=labels.resource_labels(lab_id, session, persistent=False, service="probe"),
            name=f"{lab_id}-probe-{uuid.uuid4().hex[:6]}",
            **HARDENED,
        )
        container.start()
        status = container.wait(timeout=60)
        output: bytes = container.logs(stdout=True, stderr=False)
    except (docker.errors.APIError, requests.RequestException) as exc:
        raise ConfigError(f"image {image_id[:19]}: cannot run /bin/sh in it to probe it") from exc
    finally:
        if container is not None:
            with contextlib.suppress(docker.errors.APIError, requests.RequestException):
                container.remove(force=True)
    if status.get("StatusCode") != 0:
        raise ConfigError(f"image {image_id[:19]}: the probe shell failed in it")
    return output.decode(errors="replace")
