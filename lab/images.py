"""Lab images: a reproducible Debian base bootstrapped with mmdebstrap, and images built FROM it.

No image can be pulled on the machines this lab targets, so the base comes from Debian packages:
mmdebstrap writes a root filesystem tar (reproducible under SOURCE_DATE_EPOCH), and we wrap it in
a docker-save archive with a fixed `created` time, so two bootstraps give the same image ID.

Every lab image is built from a Dockerfile in `images/<name>/` with `BASE_IMAGE` as a build arg
(the offline base, or a pinned upstream `debian:bookworm-slim` in upstream mode). Images are tagged
with a content hash of their build context and base, so nothing is rebuilt when nothing changed.
Builds take a file lock, so pytest-xdist workers starting at once build each image only once.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import docker
import docker.errors
import requests
from filelock import FileLock

from lab import labels
from lab._internal.docker_archive import write_docker_archive
from lab.errors import ImageBuildError
from lab.resources import PROJECT_ROOT, resource_path

_logger = logging.getLogger(__name__)

ImageMode = Literal["offline", "upstream"]
IMAGE_MODES: tuple[ImageMode, ...] = ("offline", "upstream")

UPSTREAM_BASE_IMAGE = (
    "debian:bookworm-slim@sha256:3783cc01769c7b2b1b83a5c5ad96c815348e28ed7da68e2e3687004faa906251"
)
"""The pinned public base that `upstream` mode builds the same Dockerfiles on."""

DEFAULT_SOURCE_DATE_EPOCH = 1704067200
"""2024-01-01T00:00:00Z: the base's file times and `created`, unless SOURCE_DATE_EPOCH is set."""

_LOCK_TIMEOUT_S = 1800


@dataclass(frozen=True)
class BaseImageSpec:
    """What the offline base image is made of; its hash names the image."""

    suite: str = "bookworm"
    variant: str = "minbase"
    packages: tuple[str, ...] = ()
    source_date_epoch: int = DEFAULT_SOURCE_DATE_EPOCH
    mirror: str | None = None

    @classmethod
    def from_project(cls, environ: Mapping[str, str] = os.environ) -> BaseImageSpec:
        """The base the project's `images/base/packages.txt` describes, honouring
        SOURCE_DATE_EPOCH and CIHUB_DEBIAN_MIRROR from `environ`."""
        text = resource_path("images", "base", "packages.txt").read_text()
        packages = tuple(
            sorted(line.strip() for line in text.splitlines() if line.strip() and line[0] != "#")
        )
        epoch = environ.get("SOURCE_DATE_EPOCH")
        return cls(
            packages=packages,
            source_date_epoch=int(epoch) if epoch else DEFAULT_SOURCE_DATE_EPOCH,
            mirror=environ.get("CIHUB_DEBIAN_MIRROR") or None,
        )

    def content_hash(self) -> str:
        doc = json.dumps(
            {
                "suite": self.suite,
                "variant": self.variant,
                "packages": list(self.packages),
                "source_date_epoch": self.source_date_epoch,
                "mirror": self.mirror,
                "mmdebstrap_args": list(_MMDEBSTRAP_FIXED_ARGS),
            },
            sort_keys=True,
        )
        return hashlib.sha256(doc.encode()).hexdigest()

    def mmdebstrap_argv(self, out: Path) -> list[str]:
        argv = ["mmdebstrap", f"--variant={self.variant}", *_MMDEBSTRAP_FIXED_ARGS]
        if self.packages:
            argv.append("--include=" + ",".join(self.packages))
        argv += [self.suite, str(out)]
        if self.mirror:
            argv.append(self.mirror)
        return argv


_MMDEBSTRAP_FIXED_ARGS = (
    "--aptopt=Acquire::Retries=3",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
)


@dataclass(frozen=True)
class ImageSpec:
    """One lab image: its Dockerfile and the project paths its build context holds.

    The context mirrors the project's layout (paths relative to the project root), so the same
    Dockerfile builds here and under `docker compose build` with the project root as context.

    Attributes:
        name: the image's short name, also the repository `cihub/<name>`.
        dockerfile: the Dockerfile's path below the project root.
        paths: project files or folders the build context holds, besides the Dockerfile.
    """

    name: str
    dockerfile: str
    paths: tuple[str, ...] = ()

    def context_tar(self) -> bytes:
        """The build context as a tar with normalized metadata: same files, same bytes."""
        files: dict[str, Path] = {}
        for relative in (self.dockerfile, *self.paths):
            source = resource_path(*relative.split("/"))
            for path in _walk(source):
                files[path.relative_to(PROJECT_ROOT).as_posix()] = path
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(files):
                data = files[name].read_bytes()
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o755 if os.access(files[name], os.X_OK) else 0o644
                tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()


LAB_IMAGES: dict[str, ImageSpec] = {
    "registry": ImageSpec(
        "registry", "images/registry/Dockerfile", ("images/registry/config.yml",)
    ),
    "faultproxy": ImageSpec(
        "faultproxy", "images/faultproxy/Dockerfile", ("lab/services/toxiproxy",)
    ),
    "sigstack": ImageSpec("sigstack", "images/sigstack/Dockerfile", ("lab/services/sigstack",)),
    "builder-python": ImageSpec("builder-python", "images/builder-python/Dockerfile"),
    "builder-c": ImageSpec("builder-c", "images/builder-c/Dockerfile"),
}
"""Every image the lab runs, by name."""


@dataclass(frozen=True)
class ImageRef:
    """A built (or found) image: its tag and its immutable ID."""

    name: str
    tag: str
    image_id: str


@dataclass
class ImageBuilder:
    """Finds or builds lab images. One instance per process; safe across processes.

    Args:
        client: the Docker client.
        mode: "offline" bootstraps the base from Debian packages; "upstream" uses
            `UPSTREAM_BASE_IMAGE`, pulled once.
        cache_dir: holds the build lock and bootstrap scratch files.
        base_spec: what the offline base is made of (default: the project's package list).
    """

    client: docker.DockerClient
    mode: ImageMode = "offline"
    cache_dir: Path = field(default_factory=lambda: default_cache_dir())
    base_spec: BaseImageSpec = field(default_factory=BaseImageSpec.from_project)

    def ensure(self, names: Iterable[str]) -> dict[str, ImageRef]:
        """Return every named lab image, building what is missing under the build lock.

        Raises:
            ImageBuildError: the base could not be bootstrapped or pulled, or a build failed;
                the message names the image.
        """
        wanted = list(names)
        unknown = [name for name in wanted if name not in LAB_IMAGES]
        if unknown:
            raise ImageBuildError(f"unknown lab image(s): {', '.join(unknown)}")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.cache_dir / "images.lock"), timeout=_LOCK_TIMEOUT_S):
            base = self.ensure_base()
            return {name: self._ensure_built(LAB_IMAGES[name], base) for name in wanted}

    def ensure_base(self) -> ImageRef:
        """The base image every lab image builds FROM; bootstrapped or pulled when missing."""
        if self.mode == "upstream":
            return self._ensure_upstream_base()
        tag = f"cihub/base:{self.base_spec.content_hash()[:16]}"
        found = self._find(tag)
        if found is not None:
            return ImageRef("base", tag, found)
        return bootstrap_base(self.client, self.base_spec, tag, self.cache_dir)

    def _ensure_upstream_base(self) -> ImageRef:
        found = self._find(UPSTREAM_BASE_IMAGE)
        if found is not None:
            return ImageRef("base", UPSTREAM_BASE_IMAGE, found)
        _logger.info("pulling the upstream base %s", UPSTREAM_BASE_IMAGE)
        try:
            image = self.client.images.pull(UPSTREAM_BASE_IMAGE)
        except (docker.errors.APIError, requests.RequestException) as exc:
            raise ImageBuildError(
                f"base: cannot pull {UPSTREAM_BASE_IMAGE} in upstream mode; "
                "use offline images (pytest --lab-images offline, cihub lab up --images offline) "
                "on machines without a registry"
            ) from exc
        return ImageRef("base", UPSTREAM_BASE_IMAGE, str(image.id))

    def _ensure_built(self, spec: ImageSpec, base: ImageRef) -> ImageRef:
        context = spec.context_tar()
        content_hash = hashlib.sha256(context + base.image_id.encode()).hexdigest()
        tag = f"cihub/{spec.name}:{content_hash[:16]}"
        found = self._find(tag)
        if found is not None:
            _logger.debug("image %s is cached as %s", spec.name, tag)
            return ImageRef(spec.name, tag, found)
        _logger.info("building image %s (%s) FROM %s", spec.name, tag, base.tag)
        image_labels = {
            labels.MANAGED: "true",
            labels.IMAGE: spec.name,
            labels.CONTENT_HASH: content_hash,
        }
        tail: list[str] = []
        try:
            stream: Iterable[dict[str, Any]] = self.client.api.build(
                fileobj=io.BytesIO(context),
                custom_context=True,
                dockerfile=spec.dockerfile,
                tag=tag,
                buildargs={"BASE_IMAGE": base.tag},
                labels=image_labels,
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
            )
            for chunk in stream:
                if "error" in chunk:
                    detail = " | ".join(line for line in tail[-5:] if line)
                    raise ImageBuildError(
                        f"image {spec.name}: build failed: {str(chunk['error']).strip()}"
                        + (f" (last output: {detail})" if detail else "")
                    )
                line = str(chunk.get("stream", "")).strip()
                if line:
                    tail.append(line)
                    _logger.debug("%s: %s", spec.name, line)
        except (docker.errors.APIError, requests.RequestException) as exc:
            raise ImageBuildError(f"image {spec.name}: build failed") from exc
        image_id = self._find(tag)
        if image_id is None:
            raise ImageBuildError(f"image {spec.name}: build finished but {tag} is not there")
        return ImageRef(spec.name, tag, image_id)

    def _find(self, tag: str) -> str | None:
        try:
            return str(self.client.images.get(tag).id)
        except docker.errors.ImageNotFound:
            return None


def bootstrap_base(
    client: docker.DockerClient, spec: BaseImageSpec, tag: str, scratch_dir: Path
) -> ImageRef:
    """Bootstrap the base root filesystem with mmdebstrap and `docker load` it as `tag`.

    Raises:
        ImageBuildError: mmdebstrap is missing or failed, or the engine refused the archive.
    """
    if shutil.which("mmdebstrap") is None:
        raise ImageBuildError(
            "base: mmdebstrap is not installed; run `make setup` (or `apt-get install mmdebstrap`)"
        )
    scratch_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch_dir, prefix="base-") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        run_mmdebstrap(spec, rootfs)
        archive = Path(tmp) / "image.tar"
        image_id = write_docker_archive(
            rootfs,
            archive,
            repo_tag=tag,
            created_epoch=spec.source_date_epoch,
            labels={
                labels.MANAGED: "true",
                labels.IMAGE: "base",
                labels.CONTENT_HASH: spec.content_hash(),
            },
        )
        try:
            with archive.open("rb") as handle:
                client.images.load(handle)
        except (docker.errors.APIError, requests.RequestException) as exc:
            raise ImageBuildError(f"base: docker load of {tag} failed") from exc
    _logger.info("base image %s loaded (%s)", tag, image_id)
    return ImageRef("base", tag, image_id)


def run_mmdebstrap(spec: BaseImageSpec, out: Path) -> None:
    """Write the base root filesystem tar to `out`, logging mmdebstrap's progress lines."""
    argv = spec.mmdebstrap_argv(out)
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(spec.source_date_epoch)}
    _logger.info("bootstrapping the base image with mmdebstrap (about 30 s)")
    tail: list[str] = []
    with subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            tail = [*tail[-9:], line]
            _logger.log(logging.INFO if line.startswith("I:") else logging.DEBUG, "base: %s", line)
    if proc.returncode != 0:
        raise ImageBuildError(
            f"base: mmdebstrap exited {proc.returncode}: " + " | ".join(tail[-3:])
        )


def default_cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """$CIHUB_CACHE_DIR, else $XDG_CACHE_HOME/cihub, else ~/.cache/cihub."""
    if environ.get("CIHUB_CACHE_DIR"):
        return Path(environ["CIHUB_CACHE_DIR"])
    xdg = environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "cihub"


def _walk(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )


def remove_unused_images(client: docker.DockerClient) -> list[str]:
    """Remove lab images no container uses; never forces, so an image in use stays.

    Returns:
        The tags (or IDs) removed.
    """
    removed: list[str] = []
    for image in client.images.list(filters={"label": f"{labels.MANAGED}=true"}):
        name = image.tags[0] if image.tags else str(image.id)
        try:
            client.images.remove(str(image.id), force=False, noprune=False)
        except docker.errors.APIError as exc:
            _logger.debug("kept image %s: %s", name, exc)
            continue
        removed.append(name)
    return removed
