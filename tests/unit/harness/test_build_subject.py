"""The subject as a warm build receives it: the order the file order variation asks for, what a
hostile subject can't smuggle, and an unreadable entry named."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import build_subject
from harness.build_subject import subject_paths, write_subject_archive
from harness.errors import ConfigError


def _subject(tmp_path: Path) -> Path:
    top = tmp_path / "subject"
    for name in ("a/x", "a.c", "b", "B/é", "a-/y"):
        (top / name).parent.mkdir(parents=True, exist_ok=True)
        (top / name).write_text(name)
    (top / os.fsdecode(b"\xff")).write_text("non-UTF-8")
    return top


@pytest.mark.parametrize("reverse", [False, True])
def test_the_order_is_what_find_and_sort_give_in_the_c_locale(
    tmp_path: Path, reverse: bool
) -> None:
    top = _subject(tmp_path)
    sort = ["sort", "-z", "-r"] if reverse else ["sort", "-z"]
    found = subprocess.run(
        f"find . -mindepth 1 -print0 | {' '.join(sort)}",
        shell=True,
        cwd=top,
        capture_output=True,
        check=True,
        env={"LC_ALL": "C", "PATH": os.environ["PATH"]},
    ).stdout
    assert subject_paths(top, reverse=reverse) == found.rstrip(b"\0").split(b"\0")


def test_the_archive_keeps_modes_and_whole_second_mtimes_and_drops_owners(tmp_path: Path) -> None:
    top = _subject(tmp_path)
    os.chmod(top / "b", 0o750)
    os.utime(top / "b", (1_700_000_000.75, 1_700_000_000.75))
    sink = io.BytesIO()
    write_subject_archive(top, sink, reverse=False)
    sink.seek(0)
    with tarfile.open(fileobj=sink, mode="r:", errors="surrogateescape") as tar:
        members = {m.name: m for m in tar}
    assert members["./b"].mode == 0o750 and members["./b"].mtime == 1_700_000_000
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members.values()} == {(0, 0, "", "")}
    assert os.fsencode(next(n for n in members if n.endswith("\udcff"))) == b"./\xff"


def test_a_link_out_of_the_subject_goes_as_a_link_never_as_what_it_points_to(
    tmp_path: Path,
) -> None:
    top = _subject(tmp_path)
    secret = tmp_path / "secret"
    secret.write_text("host secret")
    (top / "leak").symlink_to(secret)
    (top / "leakdir").symlink_to(tmp_path)
    sink = io.BytesIO()
    write_subject_archive(top, sink, reverse=False)
    assert b"host secret" not in sink.getvalue()
    sink.seek(0)
    with tarfile.open(fileobj=sink) as tar:
        links = {m.name: m.linkname for m in tar if m.issym()}
    assert links == {"./leak": str(secret), "./leakdir": str(tmp_path)}


def test_an_unreadable_entry_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    top = _subject(tmp_path)

    def refuse(path: Any, *_: Any) -> Any:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(build_subject, "open_entry", refuse)
    with pytest.raises(ConfigError, match=r"subject .*: cannot read B/é \(Permission denied\)"):
        write_subject_archive(top, io.BytesIO(), reverse=False)


def test_a_file_swapped_for_a_link_while_read_ships_nothing_of_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race a root driver must not lose: listed as a file, a link to a host secret by the
    time it is opened."""
    top = _subject(tmp_path)
    secret = tmp_path / "secret"
    secret.write_text("host secret")
    opened = build_subject.open_entry

    def swap_then_open(name: bytes, folder: int) -> int:
        if name == b"b":
            os.unlink(name, dir_fd=folder)
            os.symlink(secret, name, dir_fd=folder)
        return opened(name, folder)

    monkeypatch.setattr(build_subject, "open_entry", swap_then_open)
    sink = io.BytesIO()
    with pytest.raises(ConfigError, match=r"subject .*: b changed while cihub read it$"):
        write_subject_archive(top, sink, reverse=False)
    assert b"host secret" not in sink.getvalue()


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("swap", ["link", "folder"])
def test_a_parent_folder_swapped_after_the_listing_ships_nothing_of_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reverse: bool, swap: str
) -> None:
    """Listed as a folder of the subject, a link to (or another) folder holding a host secret
    by the time its files are read: in either order (the folder's entry before its files or
    after them), the archive is refused and holds none of the host's bytes."""
    top = _subject(tmp_path)
    host = tmp_path / "host"
    host.mkdir()
    (host / "x").write_text("TOPSECRET")
    listed = build_subject._Listing.paths

    def swap_after_listing(self: Any, *, reverse: bool) -> list[bytes]:
        paths = listed(self, reverse=reverse)
        os.rename(top / "a", tmp_path / "a-was")
        if swap == "link":
            (top / "a").symlink_to(host)
        else:
            os.rename(host, top / "a")
        return paths

    monkeypatch.setattr(build_subject._Listing, "paths", swap_after_listing)
    sink = io.BytesIO()
    with pytest.raises(ConfigError, match=r"subject .*: a changed while cihub read it$"):
        write_subject_archive(top, sink, reverse=reverse)
    assert b"TOPSECRET" not in sink.getvalue()


def test_deep_subjects_and_many_folders_keep_few_descriptors_open(tmp_path: Path) -> None:
    import resource

    top = tmp_path / "subject"
    deep = top.joinpath(*["d"] * 50)
    deep.mkdir(parents=True)
    (deep / "f").write_text("deep")
    for i in range(300):
        (top / f"w{i}").mkdir()
        (top / f"w{i}" / "f").write_text(str(i))
    before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    sink = io.BytesIO()
    # fewer descriptors than the subject has folders side by side (one per level is enough)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, (before or 64) + 100), hard))
    try:
        write_subject_archive(top, sink, reverse=True)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    sink.seek(0)
    with tarfile.open(fileobj=sink) as tar:
        names = tar.getnames()
    assert len(names) == 50 + 1 + 600 and names == sorted(names, reverse=True)
    if before is not None:
        assert len(os.listdir("/proc/self/fd")) == before


@pytest.mark.parametrize("change", ["grow", "shrink", "replace"])
def test_a_file_that_changes_while_read_is_an_error_never_a_cut_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    top = _subject(tmp_path)
    (top / "b").write_bytes(b"x" * 100_000)
    opened = build_subject.open_entry

    def change_then_open(name: bytes, folder: int) -> int:
        if name == b"b":
            if change == "grow":
                fd = opened(name, folder)
                with open(top / "b", "ab") as more:
                    more.write(b"y" * 10)
                return fd
            if change == "shrink":
                fd = opened(name, folder)
                os.truncate(top / "b", 10)
                return fd
            os.rename(top / "a.c", top / "b")  # another file at the same name
        return opened(name, folder)

    monkeypatch.setattr(build_subject, "open_entry", change_then_open)
    with pytest.raises(ConfigError, match=r"subject .*: b changed while cihub read it$"):
        write_subject_archive(top, io.BytesIO(), reverse=False)


def test_a_socket_in_the_subject_is_named_not_skipped(tmp_path: Path) -> None:
    import socket

    top = _subject(tmp_path)
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(top / "a" / "sock"))
        with pytest.raises(ConfigError, match=r"subject .*: a/sock is a socket or a device"):
            write_subject_archive(top, io.BytesIO(), reverse=False)


def test_hard_links_and_fifos_still_go(tmp_path: Path) -> None:
    top = _subject(tmp_path)
    os.link(top / "b", top / "b2")
    os.mkfifo(top / "fifo")
    sink = io.BytesIO()
    write_subject_archive(top, sink, reverse=False)
    sink.seek(0)
    with tarfile.open(fileobj=sink) as tar:
        kinds = {m.name: m.type for m in tar}
    assert kinds["./b2"] == tarfile.LNKTYPE and kinds["./fifo"] == tarfile.FIFOTYPE


def test_a_folder_that_cannot_be_listed_is_named_as_text_not_bytes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^subject: cannot list /nonexistent/é \("):
        subject_paths(Path("/nonexistent/é"), reverse=False)


def _fixed_subject(tmp_path: Path) -> Path:
    """A subject of every kind of entry, with fixed modes and mtimes: its archive's bytes depend
    on nothing of this machine (no hard link: those depend on inode numbers)."""
    top = _subject(tmp_path)
    (top / "e").mkdir()  # empty
    (top / "n" / "n" / "n").mkdir(parents=True)
    (top / "n" / "n" / "n" / "f").write_text("nested")
    os.symlink("../outside", top / "l")
    os.mkfifo(top / "p")
    # contents before their folder, else by name (not in the order the file system lists them)
    entries = sorted(top.rglob("*"), key=lambda p: (-len(p.parts), os.fsencode(p)))
    for i, path in enumerate([*entries, top]):
        if not path.is_symlink():
            os.chmod(path, 0o755 if path.is_dir() else 0o640 + (i % 2) * 0o004)
        os.utime(path, (1_700_000_000 + i, 1_700_000_000 + i), follow_symlinks=False)
    return top


@pytest.mark.parametrize(
    ("reverse", "digest"),
    [
        (False, "5240a8d9f625bdbe85dd6d060d67cd78fd8979bcecd05e3f2ba6bbb01d6aad2a"),
        (True, "7a5d51ace29bf1c228fd8fd9ec0239102d1f22b641283709a707964a149eedf4"),
    ],
)
def test_the_archive_of_a_tree_is_the_same_bytes_as_before_the_walk_was_iterative(
    tmp_path: Path, reverse: bool, digest: str
) -> None:
    """The digests are of the archives the recursive walk wrote, before it became a loop."""
    import hashlib

    sink = io.BytesIO()
    write_subject_archive(_fixed_subject(tmp_path), sink, reverse=reverse)
    assert hashlib.sha256(sink.getvalue()).hexdigest() == digest


def _deep_tree(top: Path, depth: int) -> None:
    """`top/d/d/.../d/f`, `depth` folders deep, made level by level (pathlib and os.makedirs
    recurse once per level)."""
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    finally:
        os.close(fd)


def _remove_deep_tree(top: Path, depth: int) -> None:
    # shutil.rmtree recurses once per level too (pytest removes old tmp_paths with it)
    fds = [os.open(top, os.O_RDONLY | os.O_DIRECTORY)]
    for _ in range(depth):
        fds.append(os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fds[-1]))
    os.unlink("f", dir_fd=fds[-1])
    while len(fds) > 1:
        os.close(fds.pop())
        os.rmdir("d", dir_fd=fds[-1])
    os.close(fds.pop())


@pytest.fixture
def open_files_for_deep_trees() -> Iterator[int]:
    """The open-file soft limit raised (within the hard one) for a walk one descriptor per
    level deep; yields the limit now in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    try:
        yield max(soft, wanted)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_subject_nested_deeper_than_pythons_recursion_limit_is_archived(
    tmp_path: Path, open_files_for_deep_trees: int
) -> None:
    import sys

    depth = 1500
    assert depth > sys.getrecursionlimit() and open_files_for_deep_trees > depth + 100
    top = tmp_path / "subject"
    _deep_tree(top, depth)
    try:
        sink = io.BytesIO()
        write_subject_archive(top, sink, reverse=False)
        paths = subject_paths(top, reverse=True)
    finally:
        _remove_deep_tree(top, depth)
    sink.seek(0)
    with tarfile.open(fileobj=sink) as tar:
        members = [(m.name, m.type) for m in tar]
    folders = ["." + "/d" * n for n in range(1, depth + 1)]
    assert members == [
        *((f, tarfile.DIRTYPE) for f in folders),
        (folders[-1] + "/f", tarfile.REGTYPE),
    ]
    assert paths == [os.fsencode(folders[-1] + "/f"), *map(os.fsencode, reversed(folders))]


def test_a_subject_deeper_than_the_open_file_limit_is_one_line_naming_the_limit(
    tmp_path: Path,
) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    top = tmp_path / "subject"
    _deep_tree(top, 80)
    # room for 30 descriptors more than are open now: the walk runs out deep down, not at the top
    room = len(os.listdir("/proc/self/fd")) + 30
    resource.setrlimit(resource.RLIMIT_NOFILE, (room, hard))
    try:
        with pytest.raises(ConfigError, match=r"levels deep: raise the open-file limit") as err:
            write_subject_archive(top, io.BytesIO(), reverse=False)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        _remove_deep_tree(top, 80)
    said = str(err.value)
    assert "\n" not in said and f"{top}/d/d/d" in said
    depth = int(said.split("; ")[-1].split()[0])
    assert 10 < depth < 80 and said.count("/d") == depth


def test_a_folder_deep_down_that_cannot_be_listed_is_named_and_no_descriptor_stays_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    top = tmp_path / "subject"
    _deep_tree(top, 20)
    names = build_subject._names

    def refuse_deep(subject: Path, folder: bytes, fd: int) -> list[bytes]:
        if folder.count(b"/") == 12:
            denied = PermissionError(13, "Permission denied")
            raise build_subject._cannot_list(subject, folder, denied)
        return names(subject, folder, fd)

    monkeypatch.setattr(build_subject, "_names", refuse_deep)
    before = os.listdir("/proc/self/fd")
    with pytest.raises(ConfigError, match=r"cannot list .*/subject(/d){12} \(Permission denied\)"):
        subject_paths(top, reverse=False)
    assert os.listdir("/proc/self/fd") == before
