"""Byte-reproducible `.tar.gz` of a bundle, and its safe extraction.

Packing the same bundle twice gives the same bytes: entries are sorted, every entry has
mtime 0 (or `SOURCE_DATE_EPOCH`), uid/gid 0, empty user and group names, mode 0644 (0755 when
executable), and the gzip header has mtime 0 and no file name. Entries are regular files
under one top folder named after the bundle; there are no links, devices or absolute paths.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from harness.errors import ConfigError, VerificationFailed
from harness.evidence import _fs
from harness.evidence.manifest import MANIFEST, MARKER

TARBALL_SUFFIXES = (".tar.gz", ".tgz")


def is_bundle_dir(path: Path) -> bool:
    """Whether `path` is a bundle folder (it has `manifest.json` or the `INCOMPLETE` marker)."""
    return path.is_dir() and ((path / MANIFEST).is_file() or (path / MARKER).is_file())


def _source_date_epoch() -> int:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if not value:
        return 0
    try:
        epoch = int(value)
    except ValueError as exc:
        raise ConfigError(f"SOURCE_DATE_EPOCH={value!r}: not an integer") from exc
    if epoch < 0:
        raise ConfigError(f"SOURCE_DATE_EPOCH={value!r}: negative")
    return epoch


def pack_bundle(root: Path, out: Path | None = None, *, mtime: int | None = None) -> Path:
    """Pack the bundle folder `root` into a reproducible `.tar.gz` and return its path.

    Args:
        root: the bundle folder (finalized or not: an incomplete bundle packs with its marker).
        out: the archive to write (default `<root>.tar.gz` beside the folder); written
            atomically.
        mtime: the timestamp of every entry (default `SOURCE_DATE_EPOCH`, else 0).

    Raises:
        ConfigError: `root` is not a bundle, `out` is inside it, or it holds a link or
            special file.

    Example:
        >>> pack_bundle(Path("evidence/run-1")).name
        'run-1.tar.gz'
    """
    if not root.exists():
        raise ConfigError(f"{root}: no such evidence bundle")
    if not is_bundle_dir(root):
        raise ConfigError(f"{root}: not an evidence bundle (no {MANIFEST} or {MARKER})")
    root = root.resolve()
    target = (out if out is not None else root.parent / f"{root.name}.tar.gz").resolve()
    if target.is_relative_to(root):
        raise ConfigError(f"{target}: the archive can't be written inside the bundle it packs")
    stamp = _source_date_epoch() if mtime is None else mtime
    entries = []
    for rel, entry in _fs.walk_files(root):
        if _fs.TMP_MARK in entry.name:
            continue  # a partly written file from a crash is not evidence
        if not entry.is_file(follow_symlinks=False):
            raise ConfigError(f"{root / rel}: links and special files can't be packed")
        entries.append((rel, Path(entry.path)))
    entries.sort()
    with (
        _fs.atomic_writer(target) as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for rel, path in entries:
            stat = path.stat()
            info = tarfile.TarInfo(f"{root.name}/{rel}")
            info.size = stat.st_size
            info.mtime = stamp
            info.mode = 0o755 if stat.st_mode & 0o111 else 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            with path.open("rb") as handle:
                tar.addfile(info, handle)
    return target


def is_tarball(path: Path) -> bool:
    """Whether `path` names a packed bundle (by suffix)."""
    return path.is_file() and path.name.endswith(TARBALL_SUFFIXES)


def _check_member(member: tarfile.TarInfo, source: Path) -> PurePosixPath:
    name = member.name
    pure = PurePosixPath(name)
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or pure.is_absolute()
        or ".." in pure.parts
    ):
        raise VerificationFailed(f"{source}: unsafe path {name!r} in the archive")
    if not (member.isfile() or member.isdir()):
        raise VerificationFailed(
            f"{source}: {name!r} is a link or special file; evidence archives hold only files"
        )
    return pure


def extract_bundle(tarball: Path, dest: Path) -> Path:
    """Extract a packed bundle into the folder `dest` safely and return the bundle folder.

    Raises:
        ConfigError: `tarball` is missing or is not a gzip'd tar archive.
        VerificationFailed: a member would land outside `dest`, is a link or special file,
            or the archive does not hold exactly one top folder.
    """
    if not tarball.is_file():
        raise ConfigError(f"{tarball}: no such file")
    try:
        with tarfile.open(tarball, mode="r:*") as tar:
            members = tar.getmembers()
            tops = set()
            for member in members:
                pure = _check_member(member, tarball)
                tops.add(pure.parts[0])
            if len(tops) != 1:
                raise VerificationFailed(
                    f"{tarball}: expected one top folder in the archive, found {len(tops)}"
                )
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as exc:
        raise ConfigError(f"{tarball}: not a readable .tar.gz evidence bundle") from exc
    return dest / tops.pop()


@contextlib.contextmanager
def bundle_folder(path: Path) -> Iterator[Path]:
    """Yield a bundle folder for `path`: itself, or a temporary extraction of a tarball.

    Raises:
        ConfigError: `path` does not exist, or is neither a bundle folder nor a tarball.
    """
    if not path.exists():
        raise ConfigError(f"{path}: no such file or folder")
    if path.is_dir():
        if not is_bundle_dir(path):
            raise ConfigError(f"{path}: not an evidence bundle (no {MANIFEST} or {MARKER})")
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="cihub-bundle-") as tmp:
        root = extract_bundle(path, Path(tmp))
        if not is_bundle_dir(root):
            raise ConfigError(f"{path}: the archive holds no evidence bundle")
        yield root
