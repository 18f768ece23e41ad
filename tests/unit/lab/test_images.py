import io
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest

from lab import images
from lab.errors import ImageBuildError
from lab.images import LAB_IMAGES, BaseImageSpec, ImageBuilder, ImageSpec, default_cache_dir


def test_context_tar_is_byte_identical_and_mirrors_the_project_layout() -> None:
    spec = LAB_IMAGES["faultproxy"]
    first, second = spec.context_tar(), spec.context_tar()
    assert first == second
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        names = tar.getnames()
        assert all(member.mtime == 0 and member.uid == 0 for member in tar.getmembers())
    assert "images/faultproxy/Dockerfile" in names
    assert any(name.startswith("lab/services/toxiproxy/") for name in names)
    assert not any("__pycache__" in name for name in names)


def test_base_spec_reads_the_package_list_and_environment() -> None:
    spec = BaseImageSpec.from_project(
        {"SOURCE_DATE_EPOCH": "42", "CIHUB_DEBIAN_MIRROR": "http://m"}
    )
    assert "docker-registry" in spec.packages and "python3" in spec.packages
    assert spec.source_date_epoch == 42
    argv = spec.mmdebstrap_argv(Path("/tmp/out.tar"))
    assert argv[0] == "mmdebstrap" and argv[-3:] == ["bookworm", "/tmp/out.tar", "http://m"]
    assert any(arg.startswith("--include=") and "python3" in arg for arg in argv)


def test_base_hash_changes_with_what_goes_into_the_base() -> None:
    spec = BaseImageSpec(packages=("a",))
    assert spec.content_hash() == BaseImageSpec(packages=("a",)).content_hash()
    assert spec.content_hash() != BaseImageSpec(packages=("a", "b")).content_hash()
    assert spec.content_hash() != BaseImageSpec(packages=("a",), source_date_epoch=1).content_hash()


def test_cache_dir_honours_the_environment(tmp_path: Path) -> None:
    assert default_cache_dir({"CIHUB_CACHE_DIR": str(tmp_path)}) == tmp_path
    assert default_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "cihub"


class _FakeImages:
    def __init__(self) -> None:
        self.tags: dict[str, str] = {"cihub/base:x": "sha256:base"}

    def get(self, tag: str) -> Any:
        import docker.errors

        if tag not in self.tags:
            raise docker.errors.ImageNotFound(tag)
        return type("Image", (), {"id": self.tags[tag]})()


class _FakeApi:
    def __init__(self, images: _FakeImages, fail_with: str | None = None) -> None:
        self.images = images
        self.builds: list[str] = []
        self.fail_with = fail_with
        self.lock = threading.Lock()

    def build(self, **kwargs: Any) -> list[dict[str, str]]:
        with self.lock:
            self.builds.append(kwargs["tag"])
        if self.fail_with:
            return [{"stream": "Step 2/2 : RUN exit 3"}, {"error": self.fail_with}]
        self.images.tags[kwargs["tag"]] = f"sha256:{len(self.builds)}"
        return [{"stream": "Successfully built"}]


class _FakeClient:
    def __init__(self, fail_with: str | None = None) -> None:
        self.images = _FakeImages()
        self.api = _FakeApi(self.images, fail_with)


class _Builder(ImageBuilder):
    def ensure_base(self) -> images.ImageRef:
        return images.ImageRef("base", "cihub/base:x", "sha256:base")


def test_images_are_built_once_and_then_found_by_content_hash(tmp_path: Path) -> None:
    client = _FakeClient()
    builder = _Builder(client, cache_dir=tmp_path)  # type: ignore[arg-type]
    first = builder.ensure(["registry", "faultproxy"])
    again = builder.ensure(["registry", "faultproxy"])
    assert first == again
    assert len(client.api.builds) == 2
    assert first["registry"].tag.startswith("cihub/registry:")


def test_concurrent_builders_build_each_image_once(tmp_path: Path) -> None:
    client = _FakeClient()
    results: list[dict[str, images.ImageRef]] = []

    def run() -> None:
        results.append(_Builder(client, cache_dir=tmp_path).ensure(["registry"]))  # type: ignore[arg-type]

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(client.api.builds) == 1
    assert len({r["registry"].image_id for r in results}) == 1


def test_a_failed_build_names_the_image_and_its_last_output(tmp_path: Path) -> None:
    client = _FakeClient(fail_with="The command '/bin/sh -c exit 3' returned a non-zero code: 3")
    builder = _Builder(client, cache_dir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(
        ImageBuildError, match=r"^image registry: build failed: .*code: 3.*RUN exit 3"
    ):
        builder.ensure(["registry"])


def test_unknown_image_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageBuildError, match="unknown lab image"):
        _Builder(_FakeClient(), cache_dir=tmp_path).ensure(["nope"])  # type: ignore[arg-type]


def test_missing_mmdebstrap_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images.shutil, "which", lambda _name: None)
    with pytest.raises(ImageBuildError, match="mmdebstrap is not installed; run `make setup`"):
        images.bootstrap_base(_FakeClient(), BaseImageSpec(), "t:1", tmp_path)  # type: ignore[arg-type]


def test_image_spec_paths_must_exist() -> None:
    with pytest.raises(Exception, match="project data file is missing"):
        ImageSpec("ghost", "images/ghost/Dockerfile").context_tar()
