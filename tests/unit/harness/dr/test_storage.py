"""Registry storage backup: re-rooted at the storage folder, nothing else taken in."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.dr.registry import RegistryStorage
from lab.containers.registry import STORAGE_PATH


def _archive(members: dict[str, bytes | None]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size, info.uid, info.gid = len(data), 65534, 65534
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class _Container:
    def __init__(self, archive: bytes) -> None:
        self.archive = archive
        self.put: list[tuple[str, bytes]] = []

    def get_archive(self, path: str) -> tuple[Any, dict[str, Any]]:
        assert path == STORAGE_PATH
        # The engine streams in chunks that cut through tar headers.
        return (self.archive[i : i + 333] for i in range(0, len(self.archive), 333)), {}

    def put_archive(self, path: str, data: Any) -> bool:
        self.put.append((path, data.read()))
        return True


@pytest.fixture
def storage() -> tuple[RegistryStorage, _Container]:
    container = _Container(
        _archive(
            {
                "docker-registry": None,
                "docker-registry/docker/registry/v2/blobs/data": b"blob bytes",
                "docker-registry/docker/registry/v2/repositories/x/link": b"sha256:abc",
                "etc/passwd": b"not from the storage folder",
                "docker-registry-evil/file": b"a sibling with the same prefix",
            }
        )
    )
    lab = SimpleNamespace(
        volume_names={"registry": "lab-registry"},
        service_container=lambda service: container,
    )
    return RegistryStorage(lab), container  # type: ignore[arg-type]


def test_backup_is_rooted_at_the_storage_folder(
    storage: tuple[RegistryStorage, _Container], tmp_path: Path
) -> None:
    store, container = storage
    backup = store.backup(tmp_path / "b.tar")
    with tarfile.open(backup.path) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert sorted(members) == [
        "docker/registry/v2/blobs/data",
        "docker/registry/v2/repositories/x/link",
    ]
    assert members["docker/registry/v2/blobs/data"].uid == 65534, "ownership is kept"
    assert backup.files == 2
    assert store.count_files() == 4, "count_files sees what the engine hands out"
    store.restore(backup)
    assert container.put == [(STORAGE_PATH, backup.path.read_bytes())]
