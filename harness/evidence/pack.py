"""Reproducible `.tar.gz` of a bundle, and its bounded, hostile-safe extraction.

What is reproducible, precisely: the **inner tar** (the uncompressed archive) is a function of
the bundle's files alone: entries sorted by name, one top folder named after the bundle, every
entry a regular file with mtime 0, uid/gid 0, empty user and group names, mode 0644 (0755 when
executable), PAX format. Neither the clock nor the packer's environment (`SOURCE_DATE_EPOCH`
included) changes it, and `tar_digest()` (printed by `cihub evidence pack`) names it. The
`.tar.gz` around it has a fixed gzip header (mtime 0, no file name) and is deflated at level 6
by the zlib Python links: the same on every machine with the same zlib, but another deflate
implementation (e.g. zlib-ng on Fedora 40+) may emit other compressed bytes for the same inner
tar. `manifest.json`'s digest, which the signature covers, is unaffected either way.

Extraction (`extract_bundle`) is bounded by `ExtractLimits` (total size, per-member size,
member count, compression ratio), checked from each tar header before its data is read, and
by a guard on the decompressed stream itself. It writes only regular files and folders into
its destination, with O_EXCL|O_NOFOLLOW; links, devices, FIFOs, sparse members, absolute
paths and `..` are refused before anything is written.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from harness.errors import ConfigError, VerificationFailed
from harness.evidence import _fs
from harness.evidence.manifest import MANIFEST, MARKER

TARBALL_SUFFIXES = (".tar.gz", ".tgz")


def is_bundle_dir(path: Path) -> bool:
    """Whether `path` is a bundle folder: it has an entry `manifest.json` or `INCOMPLETE` (of
    any kind: a marker that is a link or FIFO still marks a bundle, which then fails verify)."""
    return path.is_dir() and (
        _fs.exists_no_follow(path / MANIFEST) or _fs.exists_no_follow(path / MARKER)
    )


GZIP_LEVEL = 6


def pack_bundle(root: Path, out: Path | None = None, *, mtime: int = 0) -> Path:
    """Pack the bundle folder `root` into a reproducible `.tar.gz` and return its path.

    Args:
        root: the bundle folder (finalized or not: an incomplete bundle packs with its marker).
        out: the archive to write (default `<root>.tar.gz` beside the folder); written
            atomically. Its folder must exist; it is never created.
        mtime: the timestamp of every entry (default 0; the environment is not consulted).

    Raises:
        ConfigError: `root` is not a bundle, `out` is a folder, inside the bundle or in a
            folder that does not exist, or the bundle holds a link or special file.

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
    if target.is_dir():
        raise ConfigError(f"{target}: is a folder; name the archive file to write")
    if not target.parent.is_dir():
        raise ConfigError(f"{target.parent}: no such folder to write the archive into")
    stamp = mtime
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
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=GZIP_LEVEL) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for rel, path in entries:
            facts = path.lstat()
            info = tarfile.TarInfo(f"{root.name}/{rel}")
            info.size = facts.st_size
            info.mtime = stamp
            info.mode = 0o755 if facts.st_mode & 0o111 else 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            with path.open("rb") as handle:
                tar.addfile(info, handle)
    return target


def tar_digest(tarball: Path) -> str:
    """`sha256:<hex>` of the inner (uncompressed) tar of a `.tar.gz`: what packing reproduces
    independently of the zlib build.

    Raises:
        ConfigError: not a readable gzip file.
    """
    digest = hashlib.sha256()
    try:
        with gzip.open(tarball, "rb") as handle:
            while chunk := handle.read(_fs.HASH_BUFFER):
                digest.update(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise ConfigError(f"{tarball}: not a readable .tar.gz") from exc
    return "sha256:" + digest.hexdigest()


def is_tarball(path: Path) -> bool:
    """Whether `path` names a packed bundle (by suffix)."""
    return path.is_file() and path.name.endswith(TARBALL_SUFFIXES)


_KIB, _MIB, _GIB = 1024, 1024 * 1024, 1024 * 1024 * 1024


@dataclass(frozen=True)
class ExtractLimits:
    """Bounds on extracting a packed bundle; each has a `cihub evidence verify` flag.

    Attributes:
        max_total_bytes: sum of all members' sizes (`--max-total-size`).
        max_member_bytes: one member's size (`--max-member-size`).
        max_members: number of members, folders included (`--max-members`).
        max_ratio: uncompressed bytes per compressed byte of the archive (`--max-ratio`);
            judged only once more than `ratio_floor_bytes` are declared, so small archives of
            very repetitive files are never refused for it.
    """

    max_total_bytes: int = 4 * _GIB
    max_member_bytes: int = 2 * _GIB
    max_members: int = 100_000
    max_ratio: float = 250.0
    ratio_floor_bytes: int = 32 * _MIB

    def __post_init__(self) -> None:
        if min(self.max_total_bytes, self.max_member_bytes, self.max_members) < 1:
            raise ConfigError("extraction limits must be positive")
        if self.max_ratio < 1:
            raise ConfigError("--max-ratio must be at least 1")


class ArchiveLimitExceeded(VerificationFailed):
    """A packed bundle goes past an extraction limit (a bomb, or a bundle bigger than allowed)."""


def format_size(size: float) -> str:
    """`size` bytes in the unit `parse_size` reads (e.g. `4G`, `512M`, `1000`)."""
    for unit, factor in (("G", _GIB), ("M", _MIB), ("K", _KIB)):
        if size >= factor and size % factor == 0:
            return f"{int(size // factor)}{unit}"
    return str(int(size))


def parse_size(text: str) -> int:
    """Bytes from `1000`, `64K`, `512M`, `4G` (powers of 1024; a trailing `B`/`iB` is allowed).

    Raises:
        ValueError: not a size.
    """
    value = text.strip().upper().removesuffix("IB").removesuffix("B")
    factor = 1
    if value and value[-1] in "KMGT":
        factor = {"K": _KIB, "M": _MIB, "G": _GIB, "T": 1024 * _GIB}[value[-1]]
        value = value[:-1]
    number = float(value)
    if number < 0 or number != number:
        raise ValueError(text)
    return int(number * factor)


_MAX_READ = 8 * _MIB
"""The largest single read of the decompressed stream: tar metadata (PAX or GNU long-name
blocks) is read in one piece by `tarfile`, so a bigger read is a header no bundle needs."""
_COPY_CHUNK = 1 * _MIB
_SLACK = 1 * _MIB
_HEADER = 512


class _GuardedStream(io.RawIOBase):
    """The decompressed tar stream, refusing to run past the limits whatever tar headers say."""

    def __init__(self, raw: BinaryIO, limits: ExtractLimits, source: Path) -> None:
        super().__init__()
        self._gz = gzip.GzipFile(fileobj=raw, mode="rb")
        self._limits = limits
        self._source = source
        self._compressed = max(1, os.fstat(raw.fileno()).st_size)
        # Headers and padding add at most 3 blocks per member and the end-of-archive blocks.
        self._cap = limits.max_total_bytes + _HEADER * (3 * limits.max_members + 4) + _SLACK

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > _MAX_READ:
            raise ArchiveLimitExceeded(
                f"{self._source}: a tar header block claims "
                f"{'all' if size is None or size < 0 else size} bytes "
                f"(more than {format_size(_MAX_READ)}): not an evidence archive"
            )
        data = self._gz.read(size)
        self._check()
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET and offset > self._cap:
            self._over(offset)
        position = self._gz.seek(offset, whence)
        self._check()
        return position

    def tell(self) -> int:
        return self._gz.tell()

    def _check(self) -> None:
        position = self._gz.tell()
        if position > self._cap:
            self._over(position)
        if (
            position > self._limits.ratio_floor_bytes
            and position > self._limits.max_ratio * self._compressed
        ):
            raise ArchiveLimitExceeded(
                f"{self._source}: decompresses to more than {self._limits.max_ratio:g} times "
                f"its size (limit --max-ratio {self._limits.max_ratio:g})"
            )

    def _over(self, position: int) -> None:
        raise ArchiveLimitExceeded(
            f"{self._source}: decompresses to more than {format_size(self._cap)} "
            f"(limit --max-total-size {format_size(self._limits.max_total_bytes)})"
        )

    def close(self) -> None:
        self._gz.close()
        super().close()


_ALLOWED_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE)


def _check_member(member: tarfile.TarInfo, source: Path) -> PurePosixPath:
    name = member.name.rstrip("/") if member.isdir() else member.name
    pure = PurePosixPath(name)
    if (
        not name
        or name.startswith("/")
        or "\x00" in name
        or pure.is_absolute()
        or any(part in ("", ".", "..") for part in name.split("/"))
    ):
        raise VerificationFailed(f"{source}: unsafe path {name!r} in the archive")
    if member.type not in _ALLOWED_TYPES:
        raise VerificationFailed(
            f"{source}: {name!r} is a link, device, FIFO or sparse file; "
            "evidence archives hold only files and folders"
        )
    return pure


def _write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path, source: Path) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileExistsError as exc:
        raise VerificationFailed(f"{source}: {member.name!r} is in the archive twice") from exc
    try:
        handle = tar.extractfile(member)
        assert handle is not None  # a regular member always has data
        left = member.size
        while left:
            chunk = handle.read(min(_COPY_CHUNK, left))
            if not chunk:
                raise VerificationFailed(f"{source}: {member.name!r} is truncated")
            _write_all(fd, chunk)
            left -= len(chunk)
        os.fchmod(fd, 0o755 if member.mode & 0o111 else 0o644)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _open_archive(tarball: Path) -> BinaryIO:
    """Open the archive without blocking on a FIFO swapped in for it; regular files only."""
    fd = os.open(tarball, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigError(f"{tarball}: not a regular file")
    os.set_blocking(fd, True)
    return open(fd, "rb")


def extract_bundle(tarball: Path, dest: Path, limits: ExtractLimits | None = None) -> Path:
    """Extract a packed bundle into the empty folder `dest`, within `limits`, and return the
    bundle folder.

    Raises:
        ConfigError: `tarball` is missing or is not a gzip'd tar archive.
        ArchiveLimitExceeded: the archive goes past a limit; the message names the flag.
        VerificationFailed: a member is unsafe (a path leaving `dest`, a link, device, FIFO or
            sparse file), appears twice, or the archive does not hold exactly one top folder.
    """
    limits = limits or ExtractLimits()
    if not tarball.is_file():
        raise ConfigError(f"{tarball}: no such file")
    tops: set[str] = set()
    count = total = 0
    try:
        with (
            _open_archive(tarball) as raw,
            _GuardedStream(raw, limits, tarball) as stream,
            tarfile.open(fileobj=stream, mode="r:") as tar,
        ):
            compressed = max(1, os.fstat(raw.fileno()).st_size)
            for member in tar:
                count += 1
                if count > limits.max_members:
                    raise ArchiveLimitExceeded(
                        f"{tarball}: more than {limits.max_members} members "
                        f"(limit --max-members {limits.max_members})"
                    )
                pure = _check_member(member, tarball)
                tops.add(pure.parts[0])
                if len(tops) > 1:
                    raise VerificationFailed(
                        f"{tarball}: expected one top folder in the archive, found several"
                    )
                if member.size > limits.max_member_bytes:
                    raise ArchiveLimitExceeded(
                        f"{tarball}: member {member.name!r} is {format_size(member.size)} "
                        f"(limit --max-member-size {format_size(limits.max_member_bytes)})"
                    )
                total += member.size
                if total > limits.max_total_bytes:
                    raise ArchiveLimitExceeded(
                        f"{tarball}: members add up to more than "
                        f"{format_size(limits.max_total_bytes)} "
                        f"(limit --max-total-size {format_size(limits.max_total_bytes)})"
                    )
                if total > limits.ratio_floor_bytes and total > limits.max_ratio * compressed:
                    raise ArchiveLimitExceeded(
                        f"{tarball}: members add up to {total // compressed} times the "
                        f"archive's size (limit --max-ratio {limits.max_ratio:g})"
                    )
                target = dest.joinpath(*pure.parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                _write_member(tar, member, target, tarball)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ConfigError(f"{tarball}: not a readable .tar.gz evidence bundle") from exc
    except OSError as exc:
        raise ConfigError(f"{tarball}: cannot extract ({exc.strerror or exc})") from exc
    if len(tops) != 1:
        raise VerificationFailed(f"{tarball}: expected one top folder in the archive, found 0")
    return dest / tops.pop()


@contextlib.contextmanager
def bundle_folder(path: Path, limits: ExtractLimits | None = None) -> Iterator[Path]:
    """Yield a bundle folder for `path`: itself, or a temporary extraction of a tarball
    (within `limits`; removed afterwards).

    Raises:
        ConfigError: `path` does not exist, or is neither a bundle folder nor a tarball.
        ArchiveLimitExceeded, VerificationFailed: as `extract_bundle`.
    """
    if not _fs.exists_no_follow(path):
        raise ConfigError(f"{path}: no such file or folder")
    if path.is_dir():
        if not is_bundle_dir(path):
            raise ConfigError(f"{path}: not an evidence bundle (no {MANIFEST} or {MARKER})")
        yield path
        return
    if not path.is_file():
        raise ConfigError(f"{path}: not a bundle folder or a .tar.gz file")
    with tempfile.TemporaryDirectory(prefix="cihub-bundle-") as tmp:
        root = extract_bundle(path, Path(tmp), limits)
        if not root.is_dir() or not is_bundle_dir(root):
            raise ConfigError(f"{path}: the archive holds no evidence bundle")
        yield root
