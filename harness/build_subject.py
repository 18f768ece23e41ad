"""The subject as a tar archive, in the order a build copies it: how a warm build gets its
source over the engine's API (on the runner's stdin) instead of from a folder the engine mounts,
so the engine may run on another host (`DOCKER_HOST=ssh://...`).

The order is the one the runner of a one-off build copies `/src` in: `find . -mindepth 1 |
sort [-r]` with `LC_ALL=C` (paths compared as bytes), so the file order variation lays the tree
out the same way whichever way the subject arrives. Entries are written as GNU tar writes them
(whole-second mtimes, modes kept, no owner names): the build user unpacks them as its own.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from pathlib import Path
from typing import IO

from harness.errors import ConfigError


def subject_paths(subject: Path, *, reverse: bool) -> list[bytes]:
    """Every entry below `subject` (not following links), as `./name` bytes, in build order."""
    top = os.fsencode(subject)
    found: list[bytes] = []
    for folder, dirs, files in os.walk(top, onerror=_raise):
        relative = os.path.relpath(folder, top)
        prefix = b"./" if relative == b"." else b"./" + relative + b"/"
        found.extend(prefix + name for name in dirs + files)
    return sorted(found, reverse=reverse)


def write_subject_archive(subject: Path, sink: IO[bytes], *, reverse: bool) -> None:
    """`subject` as a tar archive (`subject_paths` order) into `sink`.

    The driver may run as root and a subject may change while it is read: a file is read only
    through a descriptor opened without following links, and only when that descriptor is the
    entry listed (same device, inode, size and mtime, before and after), so a file swapped for
    a link never ships what the link points to, and a file still being written is never cut.

    Raises:
        ConfigError: an entry can't be read, changed while it was read, or is a socket or a
            device (which no build gets: the one-off copy fails on them too); the message
            names it.
    """
    top = os.fsencode(subject)
    with tarfile.open(
        fileobj=sink,
        mode="w|",
        format=tarfile.GNU_FORMAT,
        encoding="utf-8",
        errors="surrogateescape",
    ) as tar:
        for path in subject_paths(subject, reverse=reverse):
            _add_entry(tar, subject, top + path[1:], os.fsdecode(path))


def _add_entry(tar: tarfile.TarFile, subject: Path, full: bytes, name: str) -> None:
    shown = name[2:]
    try:
        listed = os.lstat(full)
        if not (
            stat.S_ISREG(listed.st_mode)
            or stat.S_ISDIR(listed.st_mode)
            or stat.S_ISLNK(listed.st_mode)
            or stat.S_ISFIFO(listed.st_mode)
        ):
            raise ConfigError(
                f"subject {subject}: {shown} is a socket or a device (a subject holds files, "
                "folders, links and fifos only)"
            )
        if not stat.S_ISREG(listed.st_mode):
            info = tar.gettarinfo(os.fsdecode(full), arcname=name)
            if info is None or info.type != _TYPES[stat.S_IFMT(listed.st_mode)]:
                raise _Changed
            _own(info)
            tar.addfile(info)
            return
        with os.fdopen(open_entry(full), "rb") as data:
            if not _same(listed, os.fstat(data.fileno())):
                raise _Changed
            info = tar.gettarinfo(arcname=name, fileobj=data)
            _own(info)
            if not info.isreg():  # a hard link to an entry already written: no data
                tar.addfile(info)
                return
            tar.addfile(info, data)
            if data.read(1) or not _same(listed, os.fstat(data.fileno())):
                raise _Changed  # grew or was written while read: the entry is not the file
    except _Changed:
        raise ConfigError(f"subject {subject}: {shown} changed while cihub read it") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP or exc.args == ("unexpected end of data",):
            # swapped for a link after it was listed; or cut while tar copied it
            raise ConfigError(f"subject {subject}: {shown} changed while cihub read it") from exc
        raise ConfigError(
            f"subject {subject}: cannot read {shown} ({exc.strerror or exc})"
        ) from exc


def open_entry(path: bytes) -> int:
    """A descriptor of the regular file `path` that never follows a link (nor blocks on a fifo
    swapped in meanwhile)."""
    return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)


class _Changed(Exception):
    """An entry is not what was listed any more."""


_TYPES = {
    stat.S_IFDIR: tarfile.DIRTYPE,
    stat.S_IFLNK: tarfile.SYMTYPE,
    stat.S_IFIFO: tarfile.FIFOTYPE,
}


def _same(listed: os.stat_result, now: os.stat_result) -> bool:
    return stat.S_ISREG(now.st_mode) and (
        now.st_dev,
        now.st_ino,
        now.st_size,
        now.st_mtime_ns,
    ) == (listed.st_dev, listed.st_ino, listed.st_size, listed.st_mtime_ns)


def _own(info: tarfile.TarInfo) -> None:
    # the build user unpacks every entry as its own
    info.uid = info.gid = 0
    info.uname = info.gname = ""


def _raise(exc: OSError) -> None:
    where = exc.filename
    shown = os.fsdecode(where) if isinstance(where, bytes) else str(where)
    raise ConfigError(f"subject: cannot list {shown} ({exc.strerror or exc})") from exc
