"""The subject as a tar archive, in the order a build copies it: how a warm build gets its
source over the engine's API (on the runner's stdin) instead of from a folder the engine mounts,
so the engine may run on another host (`DOCKER_HOST=ssh://...`).

The order is the one the runner of a one-off build copies `/src` in: `find . -mindepth 1 |
sort [-r]` with `LC_ALL=C` (paths compared as bytes), so the file order variation lays the tree
out the same way whichever way the subject arrives. Entries are written as GNU tar writes them
(whole-second mtimes, modes kept, no owner names): the build user unpacks them as its own.

The driver may run as root while the subject's owner changes it: every entry is listed and
read relative to its folder's descriptor, and every folder and file opened must be the one the
listing recorded, so no link, whether in place of a file or of a folder above it, ever makes
cihub read outside the subject.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from harness.errors import ConfigError

_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def subject_paths(subject: Path, *, reverse: bool) -> list[bytes]:
    """Every entry below `subject` (not following links), as `./name` bytes, in build order."""
    top = _open_top(subject)
    try:
        return _listing(subject, top).paths(reverse=reverse)
    finally:
        os.close(top)


def write_subject_archive(subject: Path, sink: IO[bytes], *, reverse: bool) -> None:
    """`subject` as a tar archive (`subject_paths` order) into `sink`.

    The driver may run as root and a subject may change while it is read: each entry is
    opened without following links relative to its folder's descriptor, every folder on the
    way must be the folder listed (same device and inode) and a file must be the file listed
    (same device, inode, size and mtime, before and after), so neither a file nor a parent
    folder swapped for a link ships what the link points to, and a file still being written
    is never cut.

    Raises:
        ConfigError: an entry can't be read, changed while it was read, or is a socket or a
            device (which no build gets: the one-off copy fails on them too); the message
            names it.
    """
    top = _open_top(subject)
    try:
        listing = _listing(subject, top)
        folders = _Folders(top, listing.stats)
        try:
            with tarfile.open(
                fileobj=sink,
                mode="w|",
                format=tarfile.GNU_FORMAT,
                encoding="utf-8",
                errors="surrogateescape",
            ) as tar:
                for path in listing.paths(reverse=reverse):
                    _add_entry(tar, subject, folders, path, listing.stats[path])
        finally:
            folders.close()
    finally:
        os.close(top)


@dataclass
class _Listing:
    """What the walk saw: each entry's lstat, by `./path`; `.` is the subject itself."""

    stats: dict[bytes, os.stat_result] = field(default_factory=dict)

    def paths(self, *, reverse: bool) -> list[bytes]:
        return sorted((p for p in self.stats if p != b"."), reverse=reverse)


def _open_top(subject: Path) -> int:
    try:
        return os.open(os.fsencode(subject), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise _cannot_list(subject, b".", exc) from exc


def _listing(subject: Path, top: int) -> _Listing:
    listing = _Listing()
    listing.stats[b"."] = os.fstat(top)
    # depth first, one descriptor per level: a folder of many folders opens one at a time. A
    # stack of the open levels, not recursion: a subject may be nested deeper than Python's
    # recursion limit.
    levels: list[tuple[bytes, int, Iterator[bytes]]] = [
        (b".", top, iter(_names(subject, b".", top)))
    ]
    try:
        while levels:
            folder, fd, names = levels[-1]
            name = next(names, None)
            if name is None:
                levels.pop()
                if levels:  # the top is the caller's
                    os.close(fd)
                continue
            path = folder + b"/" + name
            try:
                listed = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError as exc:
                raise _cannot_list(subject, path, exc) from exc
            listing.stats[path] = listed
            if stat.S_ISDIR(listed.st_mode):
                child = _open_folder(subject, fd, name, path, listed)
                try:
                    below = iter(_names(subject, path, child))
                except BaseException:
                    os.close(child)
                    raise
                levels.append((path, child, below))
    finally:
        for _, fd, _ in levels[1:]:
            os.close(fd)
    return listing


def _names(subject: Path, folder: bytes, fd: int) -> list[bytes]:
    try:
        # listdir on a descriptor reads from a copy of it; the position of `fd` stays put
        return [os.fsencode(name) for name in os.listdir(fd)]
    except OSError as exc:
        raise _cannot_list(subject, folder, exc) from exc


def _open_folder(
    subject: Path, parent: int, name: bytes, path: bytes, listed: os.stat_result
) -> int:
    try:
        fd = os.open(name, _FOLDER, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
            raise _changed(subject, path) from exc
        raise _cannot_list(subject, path, exc) from exc
    if not _same_node(listed, os.fstat(fd)):
        os.close(fd)
        raise _changed(subject, path)
    return fd


class _Folders:
    """Descriptors of the folders on the way to the entry being read, each checked against the
    listing; consecutive entries in byte order mostly share them, and only one branch is ever
    open, so a wide subject can't run cihub out of descriptors."""

    def __init__(self, top: int, stats: dict[bytes, os.stat_result]) -> None:
        self._stats = stats
        self._open: list[tuple[bytes, int]] = [(b".", top)]  # the top is the caller's

    def descriptor(self, subject: Path, folder: bytes) -> int:
        while not _within(folder, self._open[-1][0]):
            os.close(self._open.pop()[1])
        at, fd = self._open[-1]
        if folder != at:
            for name in folder[len(at) + 1 :].split(b"/"):
                at += b"/" + name
                fd = _open_folder(subject, fd, name, at, self._stats[at])
                self._open.append((at, fd))
        return fd

    def close(self) -> None:
        while len(self._open) > 1:
            os.close(self._open.pop()[1])


def _within(folder: bytes, at: bytes) -> bool:
    return folder == at or folder.startswith(at + b"/")


def _add_entry(
    tar: tarfile.TarFile, subject: Path, folders: _Folders, path: bytes, listed: os.stat_result
) -> None:
    folder, _, name = path.rpartition(b"/")
    arcname = os.fsdecode(path)
    shown = arcname[2:]
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
    parent = folders.descriptor(subject, folder)
    try:
        if not stat.S_ISREG(listed.st_mode):
            linkname = (
                os.fsdecode(os.readlink(name, dir_fd=parent))
                if stat.S_ISLNK(listed.st_mode)
                else ""
            )
            # after readlink: a link's target can't change without it becoming another inode
            if not _same_node(listed, os.stat(name, dir_fd=parent, follow_symlinks=False)):
                raise _changed(subject, path)
            tar.addfile(_special(listed, arcname, linkname))
            return
        with os.fdopen(open_entry(name, parent), "rb") as data:
            if not _same(listed, os.fstat(data.fileno())):
                raise _changed(subject, path)
            info = tar.gettarinfo(arcname=arcname, fileobj=data)
            _own(info)
            if not info.isreg():  # a hard link to an entry already written: no data
                tar.addfile(info)
                return
            tar.addfile(info, data)
            if data.read(1) or not _same(listed, os.fstat(data.fileno())):
                raise _changed(subject, path)  # grew or was written while read
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOENT, errno.EINVAL) or exc.args == (
            "unexpected end of data",
        ):
            # swapped for a link or removed after it was listed; or cut while tar copied it
            raise _changed(subject, path) from exc
        raise ConfigError(
            f"subject {subject}: cannot read {shown} ({exc.strerror or exc})"
        ) from exc


def open_entry(name: bytes, folder: int) -> int:
    """A descriptor of the regular file `name` in the folder open as `folder` that never
    follows a link (nor blocks on a fifo swapped in meanwhile)."""
    return os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder)


def _special(listed: os.stat_result, arcname: str, linkname: str) -> tarfile.TarInfo:
    # what `gettarinfo` makes of a folder, link or fifo, from the listing instead of a path
    info = tarfile.TarInfo(arcname)
    info.type = _TYPES[stat.S_IFMT(listed.st_mode)]
    info.mode = listed.st_mode
    info.mtime = listed.st_mtime
    info.linkname = linkname
    _own(info)
    return info


_TYPES = {
    stat.S_IFDIR: tarfile.DIRTYPE,
    stat.S_IFLNK: tarfile.SYMTYPE,
    stat.S_IFIFO: tarfile.FIFOTYPE,
}


def _same_node(listed: os.stat_result, now: os.stat_result) -> bool:
    return (now.st_dev, now.st_ino, stat.S_IFMT(now.st_mode)) == (
        listed.st_dev,
        listed.st_ino,
        stat.S_IFMT(listed.st_mode),
    )


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


def _changed(subject: Path, path: bytes) -> ConfigError:
    return ConfigError(f"subject {subject}: {os.fsdecode(path)[2:]} changed while cihub read it")


def _cannot_list(subject: Path, path: bytes, exc: OSError) -> ConfigError:
    """`path` (`./...`, or `.`: the subject) can't be listed: one line naming it."""
    where = os.fsencode(subject) + path[1:]
    depth = path.count(b"/")
    why = exc.strerror or str(exc)
    if exc.errno == errno.EMFILE:  # one descriptor per level of folders
        why += f"; {depth} levels deep: raise the open-file limit (ulimit -n)"
    return ConfigError(f"subject: cannot list {os.fsdecode(where)} ({why})")
