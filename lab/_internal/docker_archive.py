"""Write a `docker save`-format archive around one root-filesystem tar.

`docker import` stamps the current time into the image config, so its image ID changes on every
import. The image ID is the sha256 of the config JSON; writing that config ourselves with a fixed
`created` time and loading the archive with `docker load` gives the same ID for the same layer.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def image_config(
    layer_sha256: str,
    *,
    created_epoch: int,
    labels: Mapping[str, str],
    env: tuple[str, ...] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",),
    cmd: tuple[str, ...] = ("bash",),
) -> bytes:
    """The image config JSON, with keys sorted so the same inputs give the same bytes."""
    created = datetime.fromtimestamp(created_epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {"Env": list(env), "Cmd": list(cmd), "Labels": dict(sorted(labels.items()))},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_sha256}"]},
        "history": [{"created": created, "created_by": "mmdebstrap (cihub lab base)"}],
    }
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def write_docker_archive(
    layer_tar: Path,
    out: Path,
    *,
    repo_tag: str,
    created_epoch: int,
    labels: Mapping[str, str],
) -> str:
    """Write `out`, a docker-save archive of the single layer `layer_tar`; return the image ID.

    Args:
        layer_tar: an uncompressed root filesystem tar (mmdebstrap's output).
        out: the archive to write.
        repo_tag: the `name:tag` that `docker load` gives the image.
        created_epoch: the `created` time of the image, seconds since the epoch.
        labels: image labels.

    Returns:
        The image ID `sha256:<hex>` that `docker load` will report.
    """
    layer_sha = file_sha256(layer_tar)
    config = image_config(layer_sha, created_epoch=created_epoch, labels=labels)
    config_sha = hashlib.sha256(config).hexdigest()
    manifest = json.dumps(
        [
            {
                "Config": f"{config_sha}.json",
                "RepoTags": [repo_tag],
                "Layers": [f"{layer_sha}/layer.tar"],
            }
        ]
    ).encode()
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as archive:
        _add_bytes(archive, f"{config_sha}.json", config, created_epoch)
        _add_bytes(archive, "manifest.json", manifest, created_epoch)
        info = archive.gettarinfo(str(layer_tar), arcname=f"{layer_sha}/layer.tar")
        info.mtime, info.uid, info.gid, info.uname, info.gname = created_epoch, 0, 0, "", ""
        with layer_tar.open("rb") as handle:
            archive.addfile(info, handle)
    return f"sha256:{config_sha}"


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), mtime, 0o644
    archive.addfile(info, io.BytesIO(data))
