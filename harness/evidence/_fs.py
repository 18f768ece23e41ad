"""File plumbing of evidence bundles: atomic writes, safe relative paths, fast hashing, and
hostile-safe reading (no link followed, no FIFO or device opened, every read bounded)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from harness.errors import ConfigError

HASH_BUFFER = 4 * 1024 * 1024
"""Bytes read per call while hashing: large reads keep hashlib (OpenSSL) near memory speed."""

TMP_MARK = ".cihub-tmp-"
"""Infix of temporary files; a crash mid-write can leave one behind, never a torn final file."""


def safe_relpath(relpath: str | PurePosixPath) -> PurePosixPath:
    """Check that `relpath` is a plain relative POSIX path inside a bundle and return it.

    A backslash is an ordinary character of a POSIX name (the manifest escapes it).

    Raises:
        ConfigError: the path is absolute, empty, has `.`/`..` parts or a NUL byte.
    """
    text = str(relpath)
    pure = PurePosixPath(text)
    if (
        not text
        or "\x00" in text
        or pure.is_absolute()
        or any(part in ("", ".", "..") for part in text.split("/"))
    ):
        raise ConfigError(f"{text!r}: not a relative path inside an evidence bundle")
    return pure


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in `path` durable (no-op where directories can't be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[IO[bytes]]:
    """Open a temporary file beside `path`; on success fsync it and rename it over `path`.

    On an exception the temporary file is removed and `path` is left as it was, so a reader
    sees either the old file or the whole new one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}{TMP_MARK}", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically (temporary file, fsync, rename)."""
    with atomic_writer(path) as handle:
        handle.write(data)


def atomic_copy(src: Path, dst: Path) -> None:
    """Copy the file `src` to `dst` atomically, keeping its executable bit."""
    with atomic_writer(dst) as handle, src.open("rb") as source:
        shutil.copyfileobj(source, handle, HASH_BUFFER)
    if os.stat(src).st_mode & 0o111:
        os.chmod(dst, 0o755)


def hash_fd(fd: int, buffer: bytearray | None = None) -> tuple[str, int]:
    """Return the sha256 hex digest and size of what is left to read from `fd`."""
    digest = hashlib.sha256()
    buf = buffer if buffer is not None else bytearray(HASH_BUFFER)
    view = memoryview(buf)
    size = 0
    while True:
        count = os.readv(fd, [view])
        if not count:
            break
        digest.update(view[:count])
        size += count
    return digest.hexdigest(), size


class UnsafeEntry(Exception):
    """A bundle path is a link, a FIFO, a device or a folder, or lies behind a link."""

    def __init__(self, relpath: str, what: str) -> None:
        super().__init__(f"{relpath}: {what}")
        self.relpath = relpath
        self.what = what


class TooLarge(Exception):
    """A file is larger than the reader's bound."""

    def __init__(self, relpath: str, size: int, limit: int) -> None:
        super().__init__(f"{relpath}: {size} bytes, more than the {limit} bytes read at most")
        self.relpath = relpath


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(root: Path, relpath: str) -> int:
    """Open the regular file `root/relpath` read-only, following no link below `root`.

    Every folder on the way is opened with O_NOFOLLOW relative to the one above it, the file
    itself is looked at (lstat) before it is opened and opened with O_NOFOLLOW|O_NONBLOCK, and
    its open descriptor must be a regular file: a link, FIFO, device or socket is never opened
    for reading, so nothing outside the bundle is read and nothing blocks.

    Returns:
        an open file descriptor (the caller closes it).

    Raises:
        FileNotFoundError: there is no such entry.
        UnsafeEntry: the entry, or a folder on its way, is a link or not a regular file.
    """
    parts = relpath.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise UnsafeEntry(relpath, "not a plain relative path")
    dirfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for depth, part in enumerate(parts[:-1]):
            try:
                inner = os.open(part, _DIR_FLAGS, dir_fd=dirfd)
            except OSError as exc:
                if isinstance(exc, FileNotFoundError):
                    raise
                where = "/".join(parts[: depth + 1])
                raise UnsafeEntry(relpath, f"{where} is a link or not a folder") from exc
            os.close(dirfd)
            dirfd = inner
        info = os.stat(parts[-1], dir_fd=dirfd, follow_symlinks=False)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeEntry(relpath, _kind(info.st_mode))
        try:
            fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=dirfd)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise UnsafeEntry(relpath, f"cannot be opened safely ({exc.strerror})") from exc
    finally:
        os.close(dirfd)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):  # swapped between the lstat and the open
        os.close(fd)
        raise UnsafeEntry(relpath, _kind(mode))
    return fd


def read_regular(root: Path, relpath: str, limit: int) -> bytes:
    """The bytes of the regular file `root/relpath`, at most `limit` of them (see `open_regular`).

    Raises:
        FileNotFoundError, UnsafeEntry: as `open_regular`.
        TooLarge: the file holds more than `limit` bytes.
    """
    fd = open_regular(root, relpath)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise TooLarge(relpath, size, limit)
        chunks = []
        total = 0
        while True:
            chunk = os.read(fd, min(HASH_BUFFER, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # grew while being read
                raise TooLarge(relpath, total, limit)
        return b"".join(chunks)
    finally:
        os.close(fd)


def exists_no_follow(path: Path) -> bool:
    """Whether there is an entry at `path`, of any kind, without following a final link."""
    try:
        os.lstat(path)
    except OSError:
        return False
    return True


def hash_file(path: Path, buffer: bytearray | None = None) -> tuple[str, int]:
    """Return the sha256 hex digest and size of `path`, read in large chunks.

    Args:
        path: the file to hash.
        buffer: a reusable read buffer (default: a new one of `HASH_BUFFER` bytes).
    """
    digest = hashlib.sha256()
    buf = buffer if buffer is not None else bytearray(HASH_BUFFER)
    view = memoryview(buf)
    size = 0
    with open(path, "rb", buffering=0) as handle:
        while True:
            count = handle.readinto(view)
            if not count:
                break
            digest.update(view[:count])
            size += count
    return digest.hexdigest(), size


def walk_files(
    root: Path, on_error: Callable[[str, OSError], None] | None = None
) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Yield `(posix relative path, entry)` for every non-directory below `root`.

    Depth first, each folder's entries by name (callers that need one global order sort).
    Symbolic links are yielded as they are (not followed), so callers can reject them.
    A folder that can't be listed raises, or is passed to `on_error(relative path, error)`
    and skipped.
    """
    stack: list[tuple[str, Path]] = [("", root)]
    while stack:
        prefix, folder = stack.pop()
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda e: e.name)
        except OSError as exc:
            if on_error is None:
                raise
            on_error(prefix.rstrip("/") or ".", exc)
            continue
        subdirs = []
        for entry in entries:
            rel = f"{prefix}{entry.name}"
            if entry.is_dir(follow_symlinks=False):
                subdirs.append((f"{rel}/", Path(entry.path)))
            else:
                yield rel, entry
        stack.extend(reversed(subdirs))
