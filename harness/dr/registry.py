"""The lab registry's storage: a cold backup, its destruction, and the restore.

The registry keeps its blobs on the lab's named volume. A backup is the engine's archive of the
storage folder of the *stopped* registry container (consistent: nothing writes meanwhile),
re-rooted at the folder so it can be put back into a volume under a read-only root filesystem.
The destruction empties the volume with a short-lived helper container made from the lab's own
registry image (nothing is pulled; hardened like every lab container; labelled like the lab, so
the lab's teardown removes it if this process dies). Restore puts the archive back into the
stopped registry container's volume; ownership is kept by the engine.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

import docker.errors
from docker.models.containers import Container

from harness.errors import InfraError
from lab import Lab, labels
from lab.containers.base import Hardening
from lab.containers.registry import STORAGE_PATH

_logger = logging.getLogger(__name__)

HELPER_SERVICE = "dr-helper"


@dataclass(frozen=True)
class StorageBackup:
    """A backup of the registry's storage folder (a tar re-rooted at the folder)."""

    path: Path
    sha256: str
    size: int
    files: int
    taken_at: datetime
    taken_monotonic: float

    def to_json(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "bytes": self.size,
            "files": self.files,
            "taken_at": self.taken_at.isoformat().replace("+00:00", "Z"),
        }


class _ChunkReader:
    """A file-like view of the engine's archive stream, for `tarfile`'s stream mode."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            self._buffer += chunk
        if size < 0:
            size = len(self._buffer)
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


def _archive(stream: Any) -> IO[bytes]:
    return cast(IO[bytes], _ChunkReader(iter(stream)))


class RegistryStorage:
    """Backup, destruction and restore of one lab's registry storage.

    Args:
        lab: the lab (its registry container and named volume).
    """

    def __init__(self, lab: Lab) -> None:
        self._lab = lab
        self.volume = lab.volume_names["registry"]

    @property
    def container(self) -> Container:
        return self._lab.service_container("registry")

    def stop(self) -> None:
        self.container.stop(timeout=10)

    def start(self) -> None:
        """Start the registry again and wait until it answers through the fault proxy."""
        self.container.start()
        self._lab.wait_healthy("registry")

    def backup(self, target: Path) -> StorageBackup:
        """Write the stopped registry's storage to `target` (a tar rooted at the folder).

        Raises:
            InfraError: the engine could not hand out the folder.
        """
        try:
            stream, _ = self.container.get_archive(STORAGE_PATH)
        except docker.errors.APIError as exc:
            raise InfraError(f"registry: cannot archive {STORAGE_PATH} ({exc})") from exc
        taken_at, taken = datetime.now(UTC), time.monotonic()
        target.parent.mkdir(parents=True, exist_ok=True)
        files = 0
        prefix = Path(STORAGE_PATH).name + "/"
        with (
            tarfile.open(fileobj=_archive(stream), mode="r|") as source,
            tarfile.open(target, mode="w", format=tarfile.PAX_FORMAT) as out,
        ):
            for member in source:
                if not member.name.startswith(prefix):
                    continue  # the folder itself: the volume's root stays as it is
                member.name = member.name[len(prefix) :]
                if member.islnk():
                    member.linkname = member.linkname.removeprefix(prefix)
                data = source.extractfile(member) if member.isreg() else None
                files += member.isreg()
                out.addfile(member, data)
        sha = hashlib.sha256()
        with target.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                sha.update(block)
        return StorageBackup(target, sha.hexdigest(), target.stat().st_size, files, taken_at, taken)

    def count_files(self) -> int:
        """Regular files in the storage folder now (the registry may be stopped)."""
        stream, _ = self.container.get_archive(STORAGE_PATH)
        with tarfile.open(fileobj=_archive(stream), mode="r|") as source:
            return sum(member.isreg() for member in source)

    def destroy(self) -> None:
        """Empty the registry's volume (the registry must be stopped).

        Raises:
            InfraError: the helper could not run or did not empty the volume.
        """
        image = self.container.attrs["Image"]  # the exact image the registry runs
        command = ["find", STORAGE_PATH, "-mindepth", "1", "-delete"]
        with self._helper(image, command) as helper:
            result = helper.wait(timeout=120)
            code = int(result.get("StatusCode", -1))
            if code != 0:
                tail = helper.logs(tail=5).decode(errors="replace").strip()
                raise InfraError(f"registry: wiping volume {self.volume} failed ({code}): {tail}")

    def restore(self, backup: StorageBackup) -> None:
        """Put `backup` back into the stopped registry's (empty) storage.

        Raises:
            InfraError: the engine refused the archive.
        """
        with backup.path.open("rb") as data:
            ok = self.container.put_archive(STORAGE_PATH, data)
        if not ok:
            raise InfraError(f"registry: the engine refused to restore into {STORAGE_PATH}")

    @contextlib.contextmanager
    def _helper(self, image: str, command: list[str]) -> Iterator[Container]:
        owner = {
            key: value
            for key, value in self.container.labels.items()
            if key.startswith(labels.NAMESPACE + ".")
        }
        kwargs = Hardening(pids_limit=16, mem_limit="64m", tmpfs=()).docker_kwargs()
        helper = self._lab.client.containers.run(
            image,
            command,
            entrypoint=[],
            detach=True,
            network_mode="none",
            volumes={self.volume: {"bind": STORAGE_PATH, "mode": "rw"}},
            labels={**owner, labels.SERVICE: HELPER_SERVICE},
            name=f"{self._lab.config.lab_id}-{HELPER_SERVICE}-{int(time.time() * 1000)}",
            **kwargs,
        )
        try:
            yield helper
        finally:
            with contextlib.suppress(docker.errors.APIError):
                helper.remove(force=True, v=True)
