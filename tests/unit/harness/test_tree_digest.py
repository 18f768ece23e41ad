"""Tree digests: order independence, the mode bits and links that count, normalization; and
the compare step's diffoscope handling (limits, crash, timeout, missing)."""

from __future__ import annotations

import io
import os
import signal
import stat
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from harness.compare import (
    CompareRequest,
    DiffoscopeRequest,
    TreeDigest,
    TreeEntry,
    compare_outputs,
    diff_trees,
    digest_tree,
    extract_and_digest,
    html_report_version,
    run_diffoscope,
)
from harness.compare.tree import mode_flags, normalize_path
from harness.errors import ConfigError, InfraError
from harness.evidence.audit import AuditLog


def _write(root: Path, files: dict[str, bytes | str], order: list[str] | None = None) -> Path:
    for name in order or list(files):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        value = files[name]
        if isinstance(value, str):
            path.symlink_to(value)
        else:
            path.write_bytes(value)
    return root


FILES: dict[str, bytes | str] = {
    "dist/a.whl": b"wheel bytes",
    "dist/b.tar": b"tar bytes",
    "bin/tool": b"#!/bin/sh\n",
    "lib/libx.so": "libx.so.1",
    "lib/libx.so.1": b"\x7fELF",
}


# -- order independence -------------------------------------------------------------------------


def test_the_digest_does_not_depend_on_creation_order(tmp_path: Path) -> None:
    names = list(FILES)
    one = _write(tmp_path / "one", FILES, names)
    two = _write(tmp_path / "two", FILES, list(reversed(names)))
    assert digest_tree(one).digest == digest_tree(two).digest


def test_entries_in_any_order_give_the_same_digest() -> None:
    entries = [
        TreeEntry("b", "file", "", "00" * 32, 1),
        TreeEntry("a", "file", "x", "11" * 32, 2),
        TreeEntry("a/c", "symlink", target="../b"),
    ]
    assert TreeDigest.from_entries(entries).digest == TreeDigest.from_entries(entries[::-1]).digest
    assert [e.path for e in TreeDigest.from_entries(entries[::-1]).entries] == ["a", "a/c", "b"]


def test_a_path_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="twice"):
        TreeDigest.from_entries([TreeEntry("a", "dir"), TreeEntry("a", "dir")])


def test_content_and_names_count(tmp_path: Path) -> None:
    base = digest_tree(_write(tmp_path / "base", {"f": b"one"})).digest
    assert digest_tree(_write(tmp_path / "content", {"f": b"two"})).digest != base
    assert digest_tree(_write(tmp_path / "name", {"g": b"one"})).digest != base
    assert digest_tree(_write(tmp_path / "same", {"f": b"one"})).digest == base


# -- mode bits ----------------------------------------------------------------------------------


def test_the_exec_bit_counts_and_the_umask_bits_do_not(tmp_path: Path) -> None:
    tree = _write(tmp_path / "t", {"f": b"data"})
    path = tree / "f"
    os.chmod(path, 0o644)
    plain = digest_tree(tree).digest
    os.chmod(path, 0o664)  # what a 0002 umask gives instead of 0022
    assert digest_tree(tree).digest == plain
    os.chmod(path, 0o600)
    assert digest_tree(tree).digest == plain
    os.chmod(path, 0o755)
    executable = digest_tree(tree).digest
    assert executable != plain
    os.chmod(path, 0o775)
    assert digest_tree(tree).digest == executable


def test_setuid_setgid_and_sticky_count() -> None:
    assert mode_flags(0o755) == "x"
    assert mode_flags(0o644) == ""
    assert mode_flags(0o4755) == "xu"
    assert mode_flags(0o2755) == "xg"
    assert mode_flags(0o1777) == "xt"
    plain = TreeDigest.from_entries([TreeEntry("f", "file", "x", "00" * 32, 1)])
    setuid = TreeDigest.from_entries([TreeEntry("f", "file", "xu", "00" * 32, 1)])
    assert plain.digest != setuid.digest
    (difference,) = diff_trees(plain, setuid)
    assert difference.what == "mode"


def test_times_and_owners_do_not_count(tmp_path: Path) -> None:
    tree = _write(tmp_path / "t", {"f": b"data", "d/g": b"more"})
    before = digest_tree(tree).digest
    os.utime(tree / "f", (1_000_000, 1_000_000))
    os.utime(tree / "d", (2_000_000, 2_000_000))
    assert digest_tree(tree).digest == before


# -- links --------------------------------------------------------------------------------------


def test_symlinks_are_recorded_by_target_and_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"first")
    tree = _write(tmp_path / "t", {"link": str(outside)})
    before = digest_tree(tree)
    outside.write_bytes(b"changed")  # the link's target content is not part of the tree
    assert digest_tree(tree).digest == before.digest
    (entry,) = before.entries
    assert entry.kind == "symlink" and entry.target == str(outside) and entry.sha256 is None


def test_a_link_target_change_and_a_link_turned_file_differ(tmp_path: Path) -> None:
    one = digest_tree(_write(tmp_path / "one", {"l": "a"}))
    two = digest_tree(_write(tmp_path / "two", {"l": "b"}))
    three = digest_tree(_write(tmp_path / "three", {"l": b"a"}))
    assert len({one.digest, two.digest, three.digest}) == 3
    assert [d.what for d in diff_trees(one, two)] == ["target"]
    assert [d.what for d in diff_trees(one, three)] == ["type"]


def test_a_link_to_a_folder_is_not_descended(tmp_path: Path) -> None:
    target = _write(tmp_path / "target", {"inner": b"x"})
    tree = _write(tmp_path / "t", {"dirlink": str(target)})
    assert [e.path for e in digest_tree(tree).entries] == ["dirlink"]


# -- normalization ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normal"),
    [("./a/b", "a/b"), ("a//b/", "a/b"), ("a/./b", "a/b"), ("dist/x.whl", "dist/x.whl")],
)
def test_paths_are_normalized(raw: str, normal: str) -> None:
    assert normalize_path(raw) == normal


@pytest.mark.parametrize("raw", ["/etc/passwd", "../x", "a/../../x", "", "."])
def test_unsafe_or_empty_paths_are_refused(raw: str) -> None:
    with pytest.raises(ConfigError):
        normalize_path(raw)


def test_the_canonical_line_is_stable() -> None:
    entry = TreeEntry("dist/a b.whl", "file", "x", "ab" * 32, 3)
    assert entry.canonical() == (b'["dist/a b.whl","file","x","' + b"ab" * 32 + b'"]\n')
    assert TreeEntry("é", "dir").canonical() == b'["\\u00e9","dir","",null]\n'


def test_diff_names_entries_only_on_one_side(tmp_path: Path) -> None:
    one = digest_tree(_write(tmp_path / "one", {"a": b"1", "b": b"2"}))
    two = digest_tree(_write(tmp_path / "two", {"b": b"3", "c": b"4"}))
    lines = [str(d) for d in diff_trees(one, two)]
    assert lines[0].startswith("- a: only in A")
    assert lines[1].startswith("~ b: content differs")
    assert lines[2].startswith("+ c: only in B")
    assert diff_trees(one, one) == []


def test_digest_of_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a folder"):
        digest_tree(tmp_path / "nope")


# -- tar streams (docker get_archive) -----------------------------------------------------------


def _tar(members: list[tuple[str, str, bytes | str, int]]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(
        fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT, errors="surrogateescape"
    ) as tar:
        for name, kind, value, mode in members:
            info = tarfile.TarInfo(name)
            info.mode = mode
            info.uid = info.gid = 4242
            info.mtime = 1234
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "sym":
                info.type = tarfile.SYMTYPE
                info.linkname = str(value)
                tar.addfile(info)
            elif kind == "hard":
                info.type = tarfile.LNKTYPE
                info.linkname = str(value)
                tar.addfile(info)
            elif kind in ("fifo", "chr", "blk"):
                info.type = {"fifo": tarfile.FIFOTYPE, "chr": tarfile.CHRTYPE}.get(
                    kind, tarfile.BLKTYPE
                )
                if isinstance(value, str) and ":" in value:
                    major, minor = value.split(":")
                    info.devmajor, info.devminor = int(major), int(minor)
                tar.addfile(info)
            else:
                data = value if isinstance(value, bytes) else value.encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def test_a_tar_stream_digests_like_the_same_folder(tmp_path: Path) -> None:
    stream = _tar(
        [
            ("out", "dir", b"", 0o755),
            ("out/meta", "dir", b"", 0o755),
            ("out/meta/build.log", "file", b"log", 0o644),
            ("out/artifacts", "dir", b"", 0o755),
            ("out/artifacts/dist", "dir", b"", 0o775),
            ("out/artifacts/dist/a.whl", "file", b"wheel", 0o664),
            ("out/artifacts/bin", "dir", b"", 0o755),
            ("out/artifacts/bin/tool", "file", b"#!", 0o4755),
            ("out/artifacts/bin/alias", "sym", "tool", 0o777),
            ("out/artifacts/bin/copy", "hard", "out/artifacts/bin/tool", 0o4755),
        ]
    )
    dest = tmp_path / "dest"
    from_tar = extract_and_digest(stream, "out/artifacts", dest)
    assert [e.path for e in from_tar.entries] == [
        "bin",
        "bin/alias",
        "bin/copy",
        "bin/tool",
        "dist",
        "dist/a.whl",
    ]
    assert from_tar.by_path()["bin/tool"].mode == "xu"
    # on disk the setuid bit is dropped (the digest keeps it), owners and times are not kept
    assert not (dest / "bin/tool").stat().st_mode & stat.S_ISUID
    os.chmod(dest / "bin/tool", 0o4755)
    os.chmod(dest / "bin/copy", 0o4755)
    assert digest_tree(dest).digest == from_tar.digest
    assert (dest / "bin/copy").read_bytes() == b"#!"


@pytest.mark.parametrize(
    "members",
    [
        [("out/artifacts/l", "sym", "VICTIM", 0o777), ("out/artifacts/l/f", "file", b"x", 0o644)],
        [("out/artifacts/h", "hard", "VICTIM/f", 0o644)],
        [("out/artifacts/a", "file", b"1", 0o644), ("out/artifacts/a", "file", b"2", 0o644)],
    ],
    ids=["through-a-link", "hard-link-out", "twice"],
)
def test_unsafe_tar_members_are_refused(
    tmp_path: Path, members: list[tuple[str, str, bytes | str, int]]
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "f").write_bytes(b"secret")
    resolved = [
        (n, k, v.replace("VICTIM", str(victim)) if isinstance(v, str) else v, m)
        for n, k, v, m in members
    ]
    with pytest.raises(InfraError, match="cannot extract"):
        extract_and_digest(_tar(resolved), "out/artifacts", tmp_path / "dest")
    assert [p.name for p in victim.iterdir()] == ["f"]
    assert (victim / "f").read_bytes() == b"secret"


def test_nothing_is_created_outside_the_destination_by_a_crafted_tar(tmp_path: Path) -> None:
    # a link to a folder outside, then a member whose parents would be made through it
    victim = tmp_path / "victim"
    victim.mkdir()
    stream = _tar(
        [
            ("out/artifacts/l", "sym", str(victim), 0o777),
            ("out/artifacts/l/new/deeper/f", "file", b"x", 0o644),
        ]
    )
    with pytest.raises(InfraError, match="through a link"):
        extract_and_digest(stream, "out/artifacts", tmp_path / "dest")
    assert list(victim.iterdir()) == []


def test_a_folder_member_over_a_link_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    stream = _tar(
        [("out/artifacts/l", "sym", str(victim), 0o777), ("out/artifacts/l", "dir", b"", 0o755)]
    )
    with pytest.raises(InfraError, match="appears twice"):
        extract_and_digest(stream, "out/artifacts", tmp_path / "dest")


# -- every entry type, names as bytes -----------------------------------------------------------


def test_empty_folders_fifos_and_devices_are_compared_with_type_and_numbers(
    tmp_path: Path,
) -> None:
    base = [("out/artifacts/f", "file", b"x", 0o644)]
    extras = {
        "empty-dir": [("out/artifacts/only-in-B", "dir", b"", 0o755)],
        "fifo": [("out/artifacts/p", "fifo", "", 0o644)],
        "char-1-3": [("out/artifacts/p", "chr", "1:3", 0o644)],
        "char-1-5": [("out/artifacts/p", "chr", "1:5", 0o644)],
        "block-1-3": [("out/artifacts/p", "blk", "1:3", 0o644)],
    }
    digests = {
        name: extract_and_digest(_tar(base + more), "out/artifacts", tmp_path / name)
        for name, more in {"plain": [], **extras}.items()
    }
    assert len({d.digest for d in digests.values()}) == len(digests)  # all differ
    empty = diff_trees(digests["plain"], digests["empty-dir"])
    assert [str(d) for d in empty] == ["+ only-in-B: only in B (folder)"]
    device = diff_trees(digests["char-1-3"], digests["char-1-5"])
    assert [str(d) for d in device] == [
        "~ p: device differs (A: char device 1:3; B: char device 1:5)"
    ]
    kind = diff_trees(digests["fifo"], digests["block-1-3"])
    assert kind[0].what == "type" and "A: fifo; B: block device 1:3" in str(kind[0])
    # devices and fifos are recorded, never created
    assert not os.path.lexists(tmp_path / "char-1-3" / "p")


def test_a_folder_holds_fifos_and_empty_folders_in_its_digest(tmp_path: Path) -> None:
    a = _write(tmp_path / "A", {"f": b"x"})
    b = _write(tmp_path / "B", {"f": b"x"})
    (b / "empty").mkdir()
    os.mkfifo(b / "pipe")
    digest_b = digest_tree(b)
    assert {e.path: e.kind for e in digest_b.entries} == {
        "empty": "dir",
        "f": "file",
        "pipe": "fifo",
    }
    assert [d.what for d in diff_trees(digest_tree(a), digest_b)] == ["only in B"] * 2


def test_non_utf8_and_backslash_names_never_crash_and_compare_as_bytes(tmp_path: Path) -> None:
    odd = os.fsdecode(b"dist/caf\xe9\\x.txt")
    other = os.fsdecode(b"dist/caf\xe8\\x.txt")
    stream = _tar(
        [("out/artifacts/dist", "dir", b"", 0o755), (f"out/artifacts/{odd}", "file", b"1", 0o644)]
    )
    from_tar = extract_and_digest(stream, "out/artifacts", tmp_path / "A")
    assert [e.path for e in from_tar.entries] == ["dist", odd]
    assert (tmp_path / "A" / os.fsencode(odd).decode("utf-8", "surrogateescape")).is_file()
    assert digest_tree(tmp_path / "A").digest == from_tar.digest
    (tmp_path / "B" / "dist").mkdir(parents=True)
    (tmp_path / "B" / other).write_bytes(b"1")
    (tmp_path / "B" / os.fsdecode(b"dist/link\xff")).symlink_to(os.fsdecode(b"t\xfe"))
    differences = diff_trees(from_tar, digest_tree(tmp_path / "B"))
    text = "\n".join(str(d) for d in differences)
    text.encode("utf-8")  # valid text: no lone surrogate
    assert text.splitlines() == [
        "+ dist/caf\\xe8\\\\x.txt: only in B (file sha256:6b86b273ff34fce1… 1 bytes)",
        "- dist/caf\\xe9\\\\x.txt: only in A (file sha256:6b86b273ff34fce1… 1 bytes)",
        "+ dist/link\\xff: only in B (symlink -> t\\xfe)",
    ]
    # two names that differ only in an undecodable byte are two entries, in byte order
    both = TreeDigest.from_entries([TreeEntry(other, "file", "", "0", 1), from_tar.entries[1]])
    assert [os.fsencode(e.path) for e in both.entries] == [
        b"dist/caf\xe8\\x.txt",
        b"dist/caf\xe9\\x.txt",
    ]


def test_a_backslash_is_part_of_a_name_not_a_separator() -> None:
    assert normalize_path("a\\b/c") == "a\\b/c"


# -- compare step and diffoscope ----------------------------------------------------------------


def _fake_tool(tmp_path: Path, body: str) -> str:
    path = tmp_path / "fake-diffoscope"
    path.write_text(f"#!{sys.executable}\nimport sys, time\nargs = sys.argv[1:]\n{body}\n")
    path.chmod(0o755)
    return str(path)


def _trees(tmp_path: Path, same: bool = False) -> Path:
    _write(tmp_path / "A", {"f": b"one"})
    _write(tmp_path / "B", {"f": b"one" if same else b"two"})
    return tmp_path


def test_equal_digests_pass_without_diffoscope(tmp_path: Path) -> None:
    work = _trees(tmp_path, same=True)
    never = _fake_tool(tmp_path, "raise SystemExit('diffoscope must not run')")
    result = compare_outputs(
        CompareRequest(Path("A"), Path("B"), work, diffoscope_executable=never)
    )
    assert result.identical and result.diffoscope is None and result.diff_text == ""


WRITE_REPORTS = """
if args[0] == '--version':
    print('diffoscope 999'); raise SystemExit(0)
text = args[args.index('--text') + 1]
html = args[args.index('--html') + 1]
open(text, 'w').write('--- A\\n+++ B\\n' + 'x' * SIZE)
open(html, 'w').write('<html>' + 'y' * SIZE + '</html>')
raise SystemExit(1)
"""


def test_a_difference_runs_diffoscope_and_writes_both_reports(tmp_path: Path) -> None:
    work = _trees(tmp_path)
    tool = _fake_tool(tmp_path, WRITE_REPORTS.replace("SIZE", "10"))
    audit = AuditLog(tmp_path / "commands.log")
    result = compare_outputs(
        CompareRequest(Path("A"), Path("B"), work, diffoscope_executable=tool), audit
    )
    assert not result.identical
    assert result.diffoscope is not None and result.diffoscope.status == "different"
    assert result.diffoscope.version == "999"
    assert "~ f: content differs" in result.diff_text and "--- A" in result.diff_text
    assert result.html_report is not None and result.html_report.read_text().startswith("<html>")
    logged = (tmp_path / "commands.log").read_text()
    assert "--max-diff-block-lines-saved=200" in logged and '"exit_code": 1' in logged


def test_the_version_comes_from_the_report_the_run_wrote(tmp_path: Path) -> None:
    """The HTML footer names the diffoscope that ran; `--version` is asked only without one."""
    work = _trees(tmp_path)
    footer = (
        "<div class='footer'>Generated by\\n<a href='https://diffoscope.org'>"
        "\\ndiffoscope</a> 241\\n</div>"
    )
    body = WRITE_REPORTS.replace("SIZE", "10").replace("'</html>'", f'"{footer}</html>"')
    result = compare_outputs(
        CompareRequest(Path("A"), Path("B"), work, diffoscope_executable=_fake_tool(tmp_path, body))
    )
    assert result.diffoscope is not None and result.diffoscope.version == "241"


def test_no_version_is_made_up_from_a_report_without_a_footer(tmp_path: Path) -> None:
    report = tmp_path / "r.html"
    report.write_text("<p>diffoscope 666 said &lt;a&gt;diffoscope&lt;/a&gt; 667</p></html>")
    assert html_report_version(report) is None
    assert html_report_version(tmp_path / "missing.html") is None


def test_reports_over_the_cap_are_cut(tmp_path: Path) -> None:
    work = _trees(tmp_path)
    tool = _fake_tool(tmp_path, WRITE_REPORTS.replace("SIZE", "5000"))
    result = compare_outputs(
        CompareRequest(
            Path("A"), Path("B"), work, diffoscope_executable=tool, max_report_bytes=2048
        )
    )
    assert result.diffoscope is not None and result.diffoscope.truncated
    assert "report truncated at 2048 bytes" in result.diff_text
    assert result.html_report is not None
    assert "over the 2048-byte cap" in result.html_report.read_text()


def test_a_diffoscope_timeout_is_recorded_and_the_verdict_stands(tmp_path: Path) -> None:
    work = _trees(tmp_path)
    tool = _fake_tool(
        tmp_path,
        "if args[0] == '--version':\n    print('d 1'); raise SystemExit(0)\ntime.sleep(30)",
    )
    audit = AuditLog(tmp_path / "commands.log")
    result = compare_outputs(
        CompareRequest(
            Path("A"), Path("B"), work, diffoscope_executable=tool, diffoscope_timeout_s=0.5
        ),
        audit,
    )
    assert not result.identical
    assert result.diffoscope is not None and result.diffoscope.status == "timeout"
    assert result.diffoscope.duration_s < 10
    assert "timeout" in result.diff_text and "~ f: content differs" in result.diff_text
    assert "killed after 0.5 s" in (tmp_path / "commands.log").read_text()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie is dead, only not yet reaped by its parent


def test_ctrl_c_kills_diffoscope_and_its_helpers_before_going_on(tmp_path: Path) -> None:
    work = _trees(tmp_path)
    pids = tmp_path / "pids"
    tool = _fake_tool(
        tmp_path,
        "import os, subprocess\n"
        "if args[0] == '--version':\n    print('d 1'); raise SystemExit(0)\n"
        "helper = subprocess.Popen(['sleep', '300'])\n"
        f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{helper.pid}}')\n"
        "time.sleep(300)",
    )

    def interrupt_when_started() -> None:
        for _ in range(200):  # bounded: at most ~20 s
            if pids.exists() and pids.read_text().strip():
                break
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)  # a real signal: it wakes a blocking wait

    threading.Thread(target=interrupt_when_started, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        compare_outputs(
            CompareRequest(
                Path("A"), Path("B"), work, diffoscope_executable=tool, diffoscope_timeout_s=300
            )
        )
    tool_pid, helper_pid = (int(n) for n in pids.read_text().split())
    assert not _alive(tool_pid)
    for _ in range(50):  # the helper gets SIGKILL with the group; give the kernel a moment
        if not _alive(helper_pid):
            break
        time.sleep(0.1)
    assert not _alive(helper_pid)


def test_a_diffoscope_crash_is_recorded(tmp_path: Path) -> None:
    work = _trees(tmp_path)
    tool = _fake_tool(
        tmp_path,
        "if args[0] == '--version':\n    print('d 1'); raise SystemExit(0)\n"
        "sys.stderr.write('Traceback: boom\\n'); raise SystemExit(2)",
    )
    result = compare_outputs(CompareRequest(Path("A"), Path("B"), work, diffoscope_executable=tool))
    assert not result.identical
    assert result.diffoscope is not None and result.diffoscope.status == "error"
    assert "boom" in result.diffoscope.detail and "no diffoscope text report" in result.diff_text


def test_a_missing_diffoscope_is_a_result_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = run_diffoscope(
        DiffoscopeRequest(tmp_path / "A", tmp_path / "B", tmp_path / "t", tmp_path / "h")
    )
    assert result.status == "missing" and "diffoscope-minimal" in result.detail
