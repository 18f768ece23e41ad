"""File plumbing of evidence bundles: atomic writes, safe relative paths, fast hashing."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from harness.errors import ConfigError

HASH_BUFFER = 4 * 1024 * 1024
"""Bytes read per call while hashing: large reads keep hashlib (OpenSSL) near memory speed."""

TMP_MARK = ".cihub-tmp-"
"""Infix of temporary files; a crash mid-write can leave one behind, never a torn final file."""


def safe_relpath(relpath: str | PurePosixPath) -> PurePosixPath:
    """Check that `relpath` is a plain relative POSIX path inside a bundle and return it.

    Raises:
        ConfigError: the path is absolute, empty, has `..`, a backslash or a NUL byte.
    """
    text = str(relpath)
    pure = PurePosixPath(text)
    if (
        not text
        or "\\" in text
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


def walk_files(root: Path) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Yield `(posix relative path, entry)` for every non-directory below `root`.

    Depth first, each folder's entries by name (callers that need one global order sort).
    Symbolic links are yielded as they are (not followed), so callers can reject them.
    """
    stack: list[tuple[str, Path]] = [("", root)]
    while stack:
        prefix, folder = stack.pop()
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda e: e.name)
        subdirs = []
        for entry in entries:
            rel = f"{prefix}{entry.name}"
            if entry.is_dir(follow_symlinks=False):
                subdirs.append((f"{rel}/", Path(entry.path)))
            else:
                yield rel, entry
        stack.extend(reversed(subdirs))
