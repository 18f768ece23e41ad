r"""Tree digests: one sha256 over the normalized entries of an output tree, order-independent.

An entry is a path (relative, POSIX, no `.`/`..`), its type (file, dir, symlink, fifo, char or
block device, socket), the mode bits that matter for what a build produced (executable, setuid,
setgid, sticky) and its content: the sha256 of a file's bytes, a symbolic link's target, or a
device's major:minor numbers. Empty folders count like any other entry. Metadata a build can't
control or that isn't part of the output (owner, group, times, the other permission bits) is not
compared, so the same files give the same digest wherever and whenever they were written.

Names are bytes on Linux. A path or link target is held as the `str` that `os.fsdecode` gives
(undecodable bytes become lone surrogates, so the mapping is lossless), sorted and compared by
its bytes, and written in the digest input as JSON with every non-ASCII character escaped. For
people, `display_name` shows it with undecodable bytes as `\xHH` and a backslash doubled.

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

EntryKind = Literal["file", "dir", "symlink", "fifo", "char", "block", "socket"]


def name_bytes(name: str) -> bytes:
    """The bytes of a name held as `os.fsdecode` gives it."""
    return name.encode("utf-8", "surrogateescape")


def display_name(name: str) -> str:
    r"""`name` for people and UTF-8 text files: undecodable bytes and control characters as
    `\xHH`, a backslash as `\\`; everything else (valid UTF-8) as it is.

    Example:
        >>> print(display_name(os.fsdecode(b"caf\xe9 a\\b")))
        caf\xe9 a\\b
    """
    out = []
    for char in name:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char == "\\":
            out.append("\\\\")
        elif code < 0x20 or code == 0x7F or 0xD800 <= code <= 0xDFFF:
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


_CHUNK = 1024 * 1024


@dataclass(frozen=True, order=True)
class TreeEntry:
    """One normalized entry of a tree.

    Attributes:
        path: relative POSIX path, e.g. `dist/pkg-1.0-py3-none-any.whl`.
        kind: file, dir, symlink, fifo, char (device), block (device) or socket.
        mode: the mode bits that matter, as flags: `x` executable (any x bit), `u` setuid,
            `g` setgid, `t` sticky; empty when none is set. Always empty for links and dirs.
        sha256: hex digest of a file's content (None for other kinds).
        size: a file's size in bytes (not part of the digest: the content hash covers it).
        target: a symbolic link's target (None for other kinds).
        device: a char or block device's `major:minor` (None for other kinds).
    """

    path: str
    kind: EntryKind
    mode: str = ""
    sha256: str | None = None
    size: int | None = None
    target: str | None = None
    device: str | None = None

    def canonical(self) -> bytes:
        """The entry's line in the digest input: JSON of (path, kind, mode, content)."""
        content = {"file": self.sha256, "symlink": self.target}.get(self.kind, self.device)
        fields = [self.path, self.kind, self.mode, content]
        return (json.dumps(fields, ensure_ascii=True, separators=(",", ":")) + "\n").encode()

    def describe(self) -> str:
        """A short human description, e.g. `file (x) sha256:ab12…` or `symlink -> lib.so.1`."""
        flags = f" ({self.mode})" if self.mode else ""
        if self.kind == "file":
            return f"file{flags} sha256:{(self.sha256 or '')[:16]}… {self.size} bytes"
        if self.kind == "symlink":
            return f"symlink -> {display_name(self.target or '')}"
        if self.kind in ("char", "block"):
            return f"{self.kind} device {self.device}{flags}"
        if self.kind == "dir":
            return "folder"
        return f"{self.kind}{flags}"


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
        ordered = sorted(entries, key=lambda e: name_bytes(e.path))
        hasher = hashlib.sha256()
        previous: str | None = None
        for entry in ordered:
            if entry.path == previous:
                raise ConfigError(f"{display_name(entry.path)}: appears twice in the tree")
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
        """`only in A`, `only in B`, `type`, `mode`, `content`, `target` or `device`."""
        if self.b is None:
            return "only in A"
        if self.a is None:
            return "only in B"
        if self.a.kind != self.b.kind:
            return "type"
        if self.a.mode != self.b.mode:
            return "mode"
        return {"symlink": "target", "char": "device", "block": "device"}.get(
            self.a.kind, "content"
        )

    def __str__(self) -> str:
        """One line, names escaped (`display_name`), so it is always valid UTF-8 text."""
        what = self.what
        name = display_name(self.path)
        if what == "only in A" and self.a is not None:
            return f"- {name}: only in A ({self.a.describe()})"
        if what == "only in B" and self.b is not None:
            return f"+ {name}: only in B ({self.b.describe()})"
        assert self.a is not None and self.b is not None
        return f"~ {name}: {what} differs (A: {self.a.describe()}; B: {self.b.describe()})"


def diff_trees(a: TreeDigest, b: TreeDigest) -> list[EntryDifference]:
    """The entries that differ between `a` and `b`, by path; empty when the digests match."""
    if a.digest == b.digest:
        return []
    left, right = a.by_path(), b.by_path()
    differences = []
    for path in sorted(left.keys() | right.keys(), key=name_bytes):
        one, other = left.get(path), right.get(path)
        if one is None or other is None or one.canonical() != other.canonical():
            differences.append(EntryDifference(path, one, other))
    return differences


def normalize_path(name: str) -> str:
    """`name` as a relative POSIX path without `.` parts or a trailing slash.

    Raises:
        ConfigError: the path is absolute, empty, or climbs out with `..`.
    """
    # A backslash is an ordinary byte of a POSIX name, never a separator.
    if name.startswith("/"):
        raise ConfigError(f"{display_name(name)!r}: absolute path in an output tree")
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if not parts:
        raise ConfigError(f"{display_name(name)!r}: empty path in an output tree")
    if ".." in parts:
        raise ConfigError(f"{display_name(name)!r}: path leaves the output tree")
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


def _special_entry(path: str, mode: int, rdev: int) -> TreeEntry:
    """A fifo, device or socket entry (devices with their major:minor)."""
    flags = mode_flags(mode)
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind: EntryKind = "char" if stat.S_ISCHR(mode) else "block"
        return TreeEntry(path, kind, flags, device=f"{os.major(rdev)}:{os.minor(rdev)}")
    return TreeEntry(path, "fifo" if stat.S_ISFIFO(mode) else "socket", flags)


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
                entries.append(_special_entry(path, st.st_mode, st.st_rdev))
    except OSError as exc:
        where = display_name(os.fsdecode(exc.filename)) if exc.filename else ""
        raise ConfigError(f"{root}: cannot read the tree ({exc.strerror}: {where})") from exc
    return TreeDigest.from_entries(entries)


def extract_and_digest(archive: IO[bytes], prefix: str, dest: Path) -> TreeDigest:
    """Digest the members of a tar stream below `prefix`, writing them below `dest`.

    Made for `docker get_archive` streams: member paths are checked before anything is
    created (nothing is ever written or created outside `dest`, never through a link), files
    are written without their setuid/setgid/sticky bits and owners (the digest still records
    those bits), links are written as links, devices, fifos and sockets are recorded only.

    Args:
        archive: an uncompressed tar stream, read once front to back.
        prefix: the folder in the archive whose content is the tree (e.g. `out/artifacts`).
        dest: the folder to write the tree into (created).

    Raises:
        InfraError: the archive is malformed or a member is unsafe.
    """
    dest.mkdir(parents=True, exist_ok=True)
    base = normalize_path(prefix)
    entries: list[TreeEntry] = []
    try:
        with tarfile.open(
            fileobj=archive, mode="r|", encoding="utf-8", errors="surrogateescape"
        ) as tar:
            for member in tar:
                name = normalize_path(member.name)
                if name == base or not name.startswith(base + "/"):
                    continue
                rel = name[len(base) + 1 :]
                entries.append(_extract_member(tar, member, rel, base, dest))
    except (tarfile.TarError, OSError, ConfigError) as exc:
        raise InfraError(f"output archive: cannot extract it ({exc})") from exc
    return TreeDigest.from_entries(entries)


def _parent_folder(dest: Path, parts: list[str], member: str) -> Path:
    """The folder a member goes in, created one level at a time below `dest`, each level
    checked first: an existing link or non-folder on the way is refused before anything is
    made, so nothing is ever created outside `dest`."""
    folder = dest
    for part in parts[:-1]:
        folder = folder / part
        if folder.is_symlink():
            raise ConfigError(f"{display_name(member)}: would be written through a link")
        if not os.path.lexists(folder):
            folder.mkdir()
        elif not folder.is_dir():
            raise ConfigError(f"{display_name(member)}: a parent is not a folder")
    return folder


def _extract_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, rel: str, base: str, dest: Path
) -> TreeEntry:
    parts = rel.split("/")
    target = _parent_folder(dest, parts, member.name) / parts[-1]
    if os.path.lexists(target):
        if member.isdir() and target.is_dir() and not target.is_symlink():
            return TreeEntry(rel, "dir")  # a folder listed twice is still one folder
        raise ConfigError(f"{display_name(member.name)}: appears twice")
    flags = mode_flags(member.mode)
    if member.issym():
        os.symlink(member.linkname, target)
        return TreeEntry(rel, "symlink", target=member.linkname)
    if member.isdir():
        target.mkdir()
        return TreeEntry(rel, "dir")
    if member.isfile():
        source = tar.extractfile(member)
        assert source is not None
        with open(target, "xb") as sink:
            sha, size = _hash_stream(source, sink)
    elif member.islnk():
        linked = normalize_path(member.linkname)
        if not linked.startswith(base + "/"):
            raise ConfigError(f"{display_name(member.name)}: hard link out of the tree")
        original = dest.joinpath(*linked[len(base) + 1 :].split("/"))
        if not original.resolve().is_relative_to(dest.resolve()):
            raise ConfigError(f"{display_name(member.name)}: hard link through a link")
        if original.is_symlink() or not original.is_file():
            raise ConfigError(f"{display_name(member.name)}: hard link to something not a file")
        with open(original, "rb") as handle, open(target, "xb") as sink:
            sha, size = _hash_stream(handle, sink)
    elif member.ischr() or member.isblk():
        kind: EntryKind = "char" if member.ischr() else "block"
        return TreeEntry(rel, kind, flags, device=f"{member.devmajor}:{member.devminor}")
    elif member.isfifo():
        return TreeEntry(rel, "fifo", flags)
    else:
        raise ConfigError(f"{display_name(member.name)}: unknown tar member type")
    os.chmod(target, member.mode & 0o777)
    return TreeEntry(rel, "file", flags, sha, size)
