import io
import json
import tarfile
from pathlib import Path

from lab._internal.docker_archive import file_sha256, write_docker_archive


def _layer(tmp_path: Path, content: bytes = b"hello", name: str = "layer.tar") -> Path:
    layer = tmp_path / name
    with tarfile.open(layer, "w") as tar:
        info = tarfile.TarInfo("etc/hello")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    return layer


def test_same_layer_and_time_give_the_same_image_id(tmp_path: Path) -> None:
    layer = _layer(tmp_path)
    first = write_docker_archive(
        layer, tmp_path / "a.tar", repo_tag="x/base:1", created_epoch=1, labels={"k": "v"}
    )
    second = write_docker_archive(
        layer, tmp_path / "b.tar", repo_tag="x/base:1", created_epoch=1, labels={"k": "v"}
    )
    assert first == second
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_created_time_and_content_change_the_image_id(tmp_path: Path) -> None:
    layer = _layer(tmp_path)
    base = write_docker_archive(
        layer, tmp_path / "a.tar", repo_tag="t:1", created_epoch=1, labels={}
    )
    later = write_docker_archive(
        layer, tmp_path / "b.tar", repo_tag="t:1", created_epoch=2, labels={}
    )
    other_layer = _layer(tmp_path, b"other", name="other.tar")
    other = write_docker_archive(
        other_layer, tmp_path / "c.tar", repo_tag="t:1", created_epoch=1, labels={}
    )
    assert len({base, later, other}) == 3


def test_archive_is_a_docker_save_layout(tmp_path: Path) -> None:
    layer = _layer(tmp_path)
    image_id = write_docker_archive(
        layer,
        tmp_path / "img.tar",
        repo_tag="cihub/base:abc",
        created_epoch=1704067200,
        labels={"org.cihub.managed": "true"},
    )
    with tarfile.open(tmp_path / "img.tar") as archive:
        manifest = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
        config_name = manifest[0]["Config"]
        config = json.load(archive.extractfile(config_name))  # type: ignore[arg-type]
        assert archive.getmember(manifest[0]["Layers"][0]).size == layer.stat().st_size
    assert manifest[0]["RepoTags"] == ["cihub/base:abc"]
    assert image_id == "sha256:" + config_name.removesuffix(".json")
    assert config["created"] == "2024-01-01T00:00:00Z"
    assert config["rootfs"]["diff_ids"] == ["sha256:" + file_sha256(layer)]
    assert config["config"]["Labels"] == {"org.cihub.managed": "true"}
