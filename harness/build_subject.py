"""The subject as a tar archive, in the order a build copies it: how a warm build gets its
source over the engine's API (on the runner's stdin) instead of from a folder the engine mounts,
so the engine may run on another host (`DOCKER_HOST=ssh://...`).

The order is the one the runner of a one-off build copies `/src` in: `find . -mindepth 1 |
sort [-r]` with `LC_ALL=C` (paths compared as bytes), so the file order variation lays the tree
out the same way whichever way the subject arrives. Entries are written as GNU tar writes them
(whole-second mtimes, modes kept, no owner names): the build user unpacks them as its own.
"""

from __future__ import annotations

import os
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

    Raises:
        ConfigError: an entry can't be read; the message names it.
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
            name = os.fsdecode(path)
            try:
                info = tar.gettarinfo(os.fsdecode(top + path[1:]), arcname=name)
                if info is None:  # a socket: GNU tar skips them too
                    continue
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if info.isreg():
                    with open(top + path[1:], "rb") as data:
                        tar.addfile(info, data)
                else:
                    tar.addfile(info)
            except OSError as exc:
                raise ConfigError(
                    f"subject {subject}: cannot read {name[2:]} ({exc.strerror or exc})"
                ) from exc


def _raise(exc: OSError) -> None:
    raise ConfigError(f"subject: cannot list {exc.filename!r} ({exc.strerror or exc})") from exc
