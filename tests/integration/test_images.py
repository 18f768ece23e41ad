"""Lab images on the real engine: the base is reproducible and images are cached by content."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from lab._internal.docker import docker_client
from lab._internal.docker_archive import file_sha256, write_docker_archive
from lab.images import BaseImageSpec, ImageBuilder, run_mmdebstrap

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    return docker_client()


def test_a_second_bootstrap_gives_the_same_image_id(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    builder = ImageBuilder(client)
    base = builder.ensure_base()
    loaded = client.images.get(base.tag)

    rootfs = tmp_path / "rootfs.tar"
    run_mmdebstrap(builder.base_spec, rootfs)
    assert ["sha256:" + file_sha256(rootfs)] == loaded.attrs["RootFS"]["Layers"]
    image_id = write_docker_archive(
        rootfs,
        tmp_path / "image.tar",
        repo_tag=base.tag,
        created_epoch=builder.base_spec.source_date_epoch,
        labels=loaded.labels,
    )
    assert image_id == base.image_id == loaded.id


def test_nothing_is_rebuilt_when_nothing_changed(client: docker.DockerClient) -> None:
    first = ImageBuilder(client).ensure(["registry", "faultproxy"])
    created = {name: client.images.get(ref.tag).attrs["Created"] for name, ref in first.items()}
    second = ImageBuilder(client).ensure(["registry", "faultproxy"])
    assert first == second
    assert created == {
        name: client.images.get(ref.tag).attrs["Created"] for name, ref in second.items()
    }


def test_the_base_records_what_it_is_made_of(client: docker.DockerClient) -> None:
    base = ImageBuilder(client).ensure_base()
    image_labels = client.images.get(base.tag).labels
    assert image_labels["org.cihub.managed"] == "true"
    assert image_labels["org.cihub.content-hash"] == BaseImageSpec.from_project().content_hash()
