"""Tree digests: one sha256 over the normalized entries of an output tree, order-independent.

An entry is a path (relative, POSIX, no `.`/`..`), its type (file, dir, symlink or other), the
mode bits that matter for what a build produced (executable, setuid, setgid, sticky) and its
content: the sha256 of a file's bytes, or a symbolic link's target. Metadata a build can't
control or that isn't part of the output (owner, group, times, the other permission bits) is not
compared, so the same files give the same digest wherever and whenever they were written.

Two equal digests mean the two trees hold the same entries; `diff_trees` names the entries
that differ when they don't.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Literal

from harness.errors import ConfigError, InfraError

EntryKind = Literal["file", "dir", "symlink", "other"]

_CHUNK = 1024 * 1024


@dataclass(frozen=True, order=True)
class TreeEntry:
    """One normalized entry of a tree.

    Attributes:
        path: relative POSIX path, e.g. `dist/pkg-1.0-py3-none-any.whl`.
        kind: file, dir, symlink or other (a device, fifo or socket).
        mode: the mode bits that matter, as flags: `x` executable (any x bit), `u` setuid,
            `g` setgid, `t` sticky; empty when none is set. Always empty for links and dirs.
        sha256: hex digest of a file's content (None for other kinds).
        size: a file's size in bytes (not part of the digest: the content hash covers it).
        target: a symbolic link's target (None for other kinds).
    """

    path: str
    kind: EntryKind
    mode: str = ""
    sha256: str | None = None
    size: int | None = None
    target: str | None = None

    def canonical(self) -> bytes:
        """The entry's line in the digest input: JSON of (path, kind, mode, content)."""
        content = self.sha256 if self.kind == "file" else self.target
        fields = [self.path, self.kind, self.mode, content]
        return (json.dumps(fields, ensure_ascii=True, separators=(",", ":")) + "\n").encode()

    def describe(self) -> str:
        """A short human description, e.g. `file (x) sha256:ab12…` or `symlink -> lib.so.1`."""
        if self.kind == "file":
            flags = f" ({self.mode})" if self.mode else ""
            return f"file{flags} sha256:{(self.sha256 or '')[:16]}… {self.size} bytes"
        if self.kind == "symlink":
            return f"symlink -> {self.target}"
        return self.kind


@dataclass(frozen=True)
class TreeDigest:
    """The digest of a tree and the entries it was computed from (sorted by path)."""

    digest: str
    """`sha256:<hex>` over the entries' canonical lines in path order."""
    entries: tuple[TreeEntry, ...]

    @classmethod
    def from_entries(cls, entries: Iterable[TreeEntry]) -> TreeDigest:
        """Digest `entries` in any order.

        Raises:
            ConfigError: two entries have the same path.
        """
        ordered = sorted(entries, key=lambda e: e.path.encode("utf-8", "surrogateescape"))
        hasher = hashlib.sha256()
        previous: str | None = None
        for entry in ordered:
            if entry.path == previous:
                raise ConfigError(f"{entry.path}: appears twice in the tree")
            previous = entry.path
            hasher.update(entry.canonical())
        return cls(f"sha256:{hasher.hexdigest()}", tuple(ordered))

    @property
    def files(self) -> tuple[TreeEntry, ...]:
        """The regular files of the tree."""
        return tuple(e for e in self.entries if e.kind == "file")

    def by_path(self) -> dict[str, TreeEntry]:
        return {e.path: e for e in self.entries}


@dataclass(frozen=True)
class EntryDifference:
    """How one path differs between tree A and tree B (None: absent on that side)."""

    path: str
    a: TreeEntry | None
    b: TreeEntry | None

    @property
    def what(self) -> str:
        """`only in A`, `only in B`, `type`, `mode`, `content` or `target`."""
        if self.b is None:
            return "only in A"
        if self.a is None:
            return "only in B"
        if self.a.kind != self.b.kind:
            return "type"
        if self.a.mode != self.b.mode:
            return "mode"
        return "target" if self.a.kind == "symlink" else "content"

    def __str__(self) -> str:
        what = self.what
        if what == "only in A" and self.a is not None:
            return f"- {self.path}: only in A ({self.a.describe()})"
        if what == "only in B" and self.b is not None:
            return f"+ {self.path}: only in B ({self.b.describe()})"
        assert self.a is not None and self.b is not None
        return f"~ {self.path}: {what} differs (A: {self.a.describe()}; B: {self.b.describe()})"


def diff_trees(a: TreeDigest, b: TreeDigest) -> list[EntryDifference]:
    """The entries that differ between `a` and `b`, by path; empty when the digests match."""
    if a.digest == b.digest:
        return []
    left, right = a.by_path(), b.by_path()
    differences = []
    for path in sorted(
        left.keys() | right.keys(), key=lambda p: p.encode("utf-8", "surrogateescape")
    ):
        one, other = left.get(path), right.get(path)
        if one is None or other is None or one.canonical() != other.canonical():
            differences.append(EntryDifference(path, one, other))
    return differences


def normalize_path(name: str) -> str:
    """`name` as a relative POSIX path without `.` parts or a trailing slash.

    Raises:
        ConfigError: the path is absolute, empty, or climbs out with `..`.
    """
    raw = name.replace("\\", "/") if os.sep == "\\" else name
    if raw.startswith("/"):
        raise ConfigError(f"{name!r}: absolute path in an output tree")
    parts = [p for p in PurePosixPath(raw).parts if p not in ("", ".")]
    if not parts:
        raise ConfigError(f"{name!r}: empty path in an output tree")
    if ".." in parts:
        raise ConfigError(f"{name!r}: path leaves the output tree")
    return "/".join(parts)


def mode_flags(mode: int) -> str:
    """The flags of the mode bits that matter: `x` (any execute bit), `u`, `g`, `t`."""
    flags = ""
    if mode & 0o111:
        flags += "x"
    if mode & stat.S_ISUID:
        flags += "u"
    if mode & stat.S_ISGID:
        flags += "g"
    if mode & stat.S_ISVTX:
        flags += "t"
    return flags


def _hash_stream(handle: IO[bytes], sink: IO[bytes] | None = None) -> tuple[str, int]:
    hasher = hashlib.sha256()
    size = 0
    while chunk := handle.read(_CHUNK):
        hasher.update(chunk)
        size += len(chunk)
        if sink is not None:
            sink.write(chunk)
    return hasher.hexdigest(), size


def _walk(root: Path) -> Iterator[tuple[str, os.DirEntry[str]]]:
    stack = [(root, "")]
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as it:
            for entry in it:
                rel = f"{prefix}{entry.name}"
                yield rel, entry
                if entry.is_dir(follow_symlinks=False):
                    stack.append((Path(entry.path), rel + "/"))


def digest_tree(root: Path) -> TreeDigest:
    """The digest of every entry below the folder `root` (not `root` itself).

    Symbolic links are recorded with their target and never followed.

    Raises:
        ConfigError: `root` is not a readable folder.

    Example:
        >>> digest_tree(Path("out")).digest
        'sha256:…'
    """
    if not root.is_dir():
        raise ConfigError(f"{root}: not a folder, cannot digest it")
    entries = []
    try:
        for rel, entry in _walk(root):
            st = entry.stat(follow_symlinks=False)
            path = normalize_path(rel)
            if stat.S_ISLNK(st.st_mode):
                entries.append(TreeEntry(path, "symlink", target=os.readlink(entry.path)))
            elif stat.S_ISDIR(st.st_mode):
                entries.append(TreeEntry(path, "dir"))
            elif stat.S_ISREG(st.st_mode):
                with open(entry.path, "rb") as handle:
                    sha, size = _hash_stream(handle)
                entries.append(TreeEntry(path, "file", mode_flags(st.st_mode), sha, size))
            else:
                entries.append(TreeEntry(path, "other"))
    except OSError as exc:
        raise ConfigError(f"{root}: cannot read the tree ({exc.strerror}: {exc.filename})") from exc
    return TreeDigest.from_entries(entries)


def extract_and_digest(archive: IO[bytes], prefix: str, dest: Path) -> TreeDigest:
    """Digest the members of a tar stream below `prefix`, writing them below `dest`.

    Made for `docker get_archive` streams: member paths are checked (nothing is written outside
    `dest`, never through a link), files are written without their setuid/setgid/sticky bits
    and owners (the digest still records those bits), links are written as links, devices and
    fifos are recorded only.

    Args:
        archive: an uncompressed tar stream, read once front to back.
        prefix: the folder in the archive whose content is the tree (e.g. `out/artifacts`).
        dest: the folder to write the tree into (created).

    Raises:
        InfraError: the archive is malformed or a member is unsafe.
    """
    dest.mkdir(parents=True, exist_ok=True)
    top = dest.resolve()
    base = normalize_path(prefix)
    entries: list[TreeEntry] = []
    try:
        with tarfile.open(fileobj=archive, mode="r|") as tar:
            for member in tar:
                name = normalize_path(member.name)
                if name == base or not name.startswith(base + "/"):
                    continue
                rel = name[len(base) + 1 :]
                entries.append(_extract_member(tar, member, rel, base, dest, top))
    except (tarfile.TarError, OSError, ConfigError) as exc:
        raise InfraError(f"output archive: cannot extract it ({exc})") from exc
    return TreeDigest.from_entries(entries)


def _extract_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, rel: str, base: str, dest: Path, top: Path
) -> TreeEntry:
    target = dest.joinpath(*rel.split("/"))
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.parent.resolve().is_relative_to(top):
        raise ConfigError(f"{member.name}: would be written through a link")
    if os.path.lexists(target) and not (member.isdir() and target.is_dir()):
        raise ConfigError(f"{member.name}: appears twice")
    if member.issym():
        os.symlink(member.linkname, target)
        return TreeEntry(rel, "symlink", target=member.linkname)
    if member.isdir():
        target.mkdir(exist_ok=True)
        return TreeEntry(rel, "dir")
    if member.isfile():
        source = tar.extractfile(member)
        assert source is not None
        with open(target, "wb") as sink:
            sha, size = _hash_stream(source, sink)
    elif member.islnk():
        linked = normalize_path(member.linkname)
        if not linked.startswith(base + "/"):
            raise ConfigError(f"{member.name}: hard link out of the tree")
        original = dest.joinpath(*linked[len(base) + 1 :].split("/"))
        if original.is_symlink() or not original.is_file():
            raise ConfigError(f"{member.name}: hard link to something not a file")
        with open(original, "rb") as handle, open(target, "wb") as sink:
            sha, size = _hash_stream(handle, sink)
    else:
        return TreeEntry(rel, "other")
    os.chmod(target, member.mode & 0o777)
    return TreeEntry(rel, "file", mode_flags(member.mode), sha, size)
