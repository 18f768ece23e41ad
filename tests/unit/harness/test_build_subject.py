"""The subject as a warm build receives it: the order the file order variation asks for, what a
hostile subject can't smuggle, and an unreadable entry named."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
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

    monkeypatch.setattr(build_subject, "open", refuse, raising=False)
    with pytest.raises(ConfigError, match=r"subject .*: cannot read B/é \(Permission denied\)"):
        write_subject_archive(top, io.BytesIO(), reverse=False)
