from __future__ import annotations

import gzip
import hashlib
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.evidence import pack_bundle


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_packing_twice_gives_the_same_bytes(
    make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    root = make_bundle()
    first = pack_bundle(root, tmp_path / "one.tar.gz")
    for path in root.rglob("*"):  # new timestamps and modes must not matter
        os.utime(path, (1_700_000_000, 1_700_000_000))
    (root / "blob.bin").chmod(0o600)
    second = pack_bundle(root, tmp_path / "two.tar.gz")
    assert _sha(first) == _sha(second)


def test_entries_are_normalized(make_bundle: Callable[..., Path], tmp_path: Path) -> None:
    root = make_bundle()
    (root / "determinism/build-A/hello.txt").chmod(0o755)  # executable bit is kept as 0755
    tarball = pack_bundle(root, tmp_path / "b.tar.gz")
    raw = tarball.read_bytes()
    assert raw[4:8] == b"\x00\x00\x00\x00"  # gzip MTIME
    assert raw[3] & 0x08 == 0  # no FNAME in the gzip header
    with tarfile.open(tarball) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert all(n.startswith(f"{root.name}/") and not n.startswith("/") for n in names)
    for member in members:
        assert member.isfile()
        assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == (
            0,
            0,
            0,
            "",
            "",
        )
    modes = {m.name.split("/", 1)[1]: m.mode for m in members}
    assert modes["determinism/build-A/hello.txt"] == 0o755
    assert modes["blob.bin"] == 0o644
    with gzip.open(tarball) as handle:  # valid gzip end to end
        handle.read()


@pytest.mark.parametrize("epoch", ["1700000000", "yesterday", ""])
def test_the_packers_source_date_epoch_changes_nothing(
    make_bundle: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    epoch: str,
) -> None:
    """Issue 13 #12: the archive depends on the bundle, not on the packer's environment."""
    root = make_bundle()
    plain = pack_bundle(root, tmp_path / "plain.tar.gz")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
    stamped = pack_bundle(root, tmp_path / "stamped.tar.gz")
    assert _sha(plain) == _sha(stamped)
    with tarfile.open(stamped) as tar:
        assert {m.mtime for m in tar.getmembers()} == {0}


def test_the_inner_tar_does_not_depend_on_the_deflate_implementation(
    make_bundle: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13 #12: another deflate (zlib-ng, another level) may change the .tar.gz bytes;
    the inner tar, which is what `tar_digest` names, stays the same, and so does the
    manifest digest that the signature covers."""
    from harness.evidence import pack, tar_digest

    root = make_bundle()
    ours = pack_bundle(root, tmp_path / "zlib.tar.gz")
    monkeypatch.setattr(pack, "GZIP_LEVEL", 1)  # stands in for a different deflate
    other = pack_bundle(root, tmp_path / "other.tar.gz")
    assert _sha(ours) != _sha(other)
    assert tar_digest(ours) == tar_digest(other)
    with gzip.open(ours) as one, gzip.open(other) as two:
        inner = one.read()
        assert inner == two.read()
    assert tar_digest(ours) == "sha256:" + hashlib.sha256(inner).hexdigest()


def test_pack_to_a_folder_or_a_missing_folder_is_refused(
    make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    """Issue 8: one-line errors, and no folder is created."""
    root = make_bundle()
    (tmp_path / "existing").mkdir()
    with pytest.raises(ConfigError, match="is a folder"):
        pack_bundle(root, tmp_path / "existing")
    with pytest.raises(ConfigError, match="no such folder"):
        pack_bundle(root, tmp_path / "missing" / "dir" / "x.tar.gz")
    assert not (tmp_path / "missing").exists()


def test_default_output_is_beside_the_bundle(make_bundle: Callable[..., Path]) -> None:
    root = make_bundle()
    assert pack_bundle(root) == root.parent / f"{root.name}.tar.gz"


def test_refuses_non_bundles_and_output_inside(
    make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    root = make_bundle()
    with pytest.raises(ConfigError, match="inside the bundle"):
        pack_bundle(root, root / "self.tar.gz")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ConfigError, match="not an evidence bundle"):
        pack_bundle(tmp_path / "plain")
    with pytest.raises(ConfigError, match="no such"):
        pack_bundle(tmp_path / "absent")


def _zeros_tarball(path: Path, size: int) -> Path:
    import io

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in (("b/INCOMPLETE", b"{}"), ("b/zeros.bin", bytes(size))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(raw.getvalue(), mtime=0))
    return path


def test_each_limit_stops_extraction_and_its_flag_raises_it(tmp_path: Path) -> None:
    from harness.evidence import ArchiveLimitExceeded, ExtractLimits, extract_bundle

    bomb = _zeros_tarball(tmp_path / "bomb.tar.gz", 48 * 1024 * 1024)  # ~1000:1
    cases = [
        (ExtractLimits(), "--max-ratio 250"),
        (ExtractLimits(max_ratio=10_000, max_member_bytes=1024), "--max-member-size 1K"),
        (ExtractLimits(max_ratio=10_000, max_total_bytes=1024 * 1024), "--max-total-size 1M"),
        (ExtractLimits(max_ratio=10_000, max_members=1), "--max-members 1"),
    ]
    for number, (limits, flag) in enumerate(cases):
        dest = tmp_path / f"out-{number}"
        dest.mkdir()
        with pytest.raises(ArchiveLimitExceeded, match=flag):
            extract_bundle(bomb, dest, limits)
        assert sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) < 1024 * 1024
    dest = tmp_path / "raised"
    dest.mkdir()
    root = extract_bundle(bomb, dest, ExtractLimits(max_ratio=10_000))
    assert (root / "zeros.bin").stat().st_size == 48 * 1024 * 1024
