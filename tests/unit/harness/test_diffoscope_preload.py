"""diffoscope started ahead (`harness.compare.preload`): the same run as a fresh diffoscope, or
a fresh diffoscope when the preload can't serve; never code from the folder it runs in."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.compare import (
    CompareRequest,
    CompareResult,
    DiffoscopeResult,
    compare_outputs,
    preload_diffoscope,
)
from harness.compare.diffoscope import diffoscope_environment
from harness.compare.preload import PreloadedDiffoscope, script_interpreter
from harness.evidence.audit import AuditLog

# A diffoscope laid out as Debian's: a script that puts its source tree first on the path and
# runs `diffoscope.main.main()`; the package writes both reports from what it was given, and
# says when it was imported.
SCRIPT = """#!{python}
import os, sys
parent = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
if os.path.exists(os.path.join(parent, 'diffoscope', '__init__.py')):
    sys.path.insert(0, parent)
from diffoscope.main import main
if __name__ == '__main__':
    main()
"""
MAIN = """
import json, os, sys, time
IMPORTED = {imported!r}
with open(IMPORTED, 'a') as handle:
    handle.write(f'{{os.getpid()}} {{time.monotonic()}}\\n')

def main(args=None):
    args = sys.argv[1:] if args is None else args
    if args[0] == '--version':
        open(IMPORTED, 'a').write('--version\\n')
        print('diffoscope 777'); sys.exit(0)
    {body}
    said = json.dumps({{'argv': sys.argv, 'cwd': os.getcwd(), 'lc_all': os.environ.get('LC_ALL'),
                       'stdin': sys.stdin.read()}}, sort_keys=True)
    open(args[args.index('--text') + 1], 'w').write(said)
    open(args[args.index('--html') + 1], 'w').write('<html>' + said + '</html>')
    print('what diffoscope says on stdout'); print('and on stderr', file=sys.stderr)
    sys.exit(1)
"""
COMPARATORS = """
class ComparatorManager:
    loaded = 0
    def __init__(self):
        ComparatorManager.loaded += 1
"""


def _diffoscope(tmp_path: Path, body: str = "pass", package: bool = True) -> tuple[str, Path]:
    """A fake diffoscope install (script in bin/, package beside it); its import log."""
    root = tmp_path / "install"
    (root / "bin").mkdir(parents=True)
    imported = tmp_path / "imported.log"
    if package:
        (root / "diffoscope" / "comparators").mkdir(parents=True)
        (root / "diffoscope" / "__init__.py").write_text("")
        (root / "diffoscope" / "main.py").write_text(MAIN.format(imported=str(imported), body=body))
        (root / "diffoscope" / "comparators" / "__init__.py").write_text(COMPARATORS)
        (root / "diffoscope" / "environ.py").write_text("def normalize_environment(): pass\n")
        (root / "diffoscope" / "path.py").write_text("def set_path(): pass\n")
    script = root / "bin" / "diffoscope"
    script.write_text(SCRIPT.format(python=sys.executable))
    script.chmod(0o755)
    return str(script), imported


def _trees(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    for side, data in (("A", "one"), ("B", "two")):
        (work / side).mkdir(parents=True)
        (work / side / "f").write_text(data)
    return work


def _compare(
    work: Path, tool: str, preloaded: PreloadedDiffoscope | None, log: Path
) -> CompareResult:
    return compare_outputs(
        CompareRequest(Path("A"), Path("B"), work, diffoscope_executable=tool, preloaded=preloaded),
        AuditLog(log),
    )


def _timeless(result: CompareResult) -> CompareResult:
    assert result.diffoscope is not None
    return dataclasses.replace(
        result, diffoscope=dataclasses.replace(result.diffoscope, duration_s=0)
    )


def _run(result: CompareResult) -> DiffoscopeResult:
    assert result.diffoscope is not None
    return result.diffoscope


def _ready(preloaded: PreloadedDiffoscope, imported: Path) -> None:
    for _ in range(200):  # bounded: at most ~20 s
        if imported.exists() and imported.read_text().strip():
            return
        time.sleep(0.1)
    raise AssertionError("the preload never imported diffoscope")


def _reports(work: Path) -> tuple[bytes, bytes]:
    return (work / "diffoscope.txt").read_bytes(), (work / "diffoscope.html").read_bytes()


def _logged(log: Path) -> dict[str, object]:
    entry: dict[str, object] = json.loads(log.read_text().splitlines()[-1])
    for volatile in ("duration_s", "started_at", "ended_at", "ts", "note"):
        entry.pop(volatile, None)
    return entry


def test_a_preloaded_run_is_the_run_a_fresh_diffoscope_makes(tmp_path: Path) -> None:
    work = _trees(tmp_path)
    tool, imported = _diffoscope(tmp_path)
    fresh = _compare(work, tool, None, tmp_path / "fresh.log")
    fresh_reports = _reports(work)

    imported.unlink()
    preloaded = PreloadedDiffoscope.start(tool, work, diffoscope_environment())
    assert preloaded is not None
    _ready(preloaded, imported)  # imported before the run was asked for
    preload_pid = int(imported.read_text().split()[0])
    ran = _compare(work, tool, preloaded, tmp_path / "preloaded.log")

    assert _timeless(ran) == _timeless(fresh)  # status, exit code, differences, text
    assert _reports(work) == fresh_reports
    said = json.loads(_reports(work)[0])
    assert said["argv"][0] == tool and said["argv"][-2:] == ["A", "B"]
    assert said["cwd"] == str(work) and said["lc_all"] == "C.UTF-8" and said["stdin"] == ""
    assert imported.read_text().split()[0] == str(preload_pid)  # imported once, ahead
    assert _logged(tmp_path / "preloaded.log") == _logged(tmp_path / "fresh.log")
    # what it said after its ready line reached the caller: the same bytes as a fresh run's
    assert _logged(tmp_path / "fresh.log")["stdout_bytes"] == len(
        "what diffoscope says on stdout\n"
    )
    assert _logged(tmp_path / "fresh.log")["stderr_bytes"] == len("and on stderr\n")
    said_ahead = json.loads((tmp_path / "preloaded.log").read_text().splitlines()[-1])
    assert "started ahead" in said_ahead["note"]
    assert "note" not in json.loads((tmp_path / "fresh.log").read_text().splitlines()[-1])


def test_a_program_that_cannot_run_fails_as_a_fresh_run_fails(tmp_path: Path) -> None:
    """No diffoscope package to import and a script that can't be executed: the preload says
    so and is killed, and the run fails the way a fresh run does (never "different")."""
    work = _trees(tmp_path)
    tool, _ = _diffoscope(tmp_path, package=False)
    Path(tool).chmod(0o644)
    with pytest.raises(PermissionError):
        _compare(work, tool, None, tmp_path / "fresh.log")
    preloaded = preload_diffoscope(work, tool)
    assert preloaded is not None and preloaded._proc is not None
    process = preloaded._proc
    with pytest.raises(PermissionError):
        _compare(work, tool, preloaded, tmp_path / "preloaded.log")
    assert process.poll() is not None


def test_a_module_in_the_run_folder_is_never_imported(tmp_path: Path) -> None:
    """The run folder holds the builds' outputs: `-c` would put it first on the module path."""
    work = _trees(tmp_path)
    marker = tmp_path / "hostile-ran"
    hostile = f"open({str(marker)!r}, 'w').write('ran')\n"
    (work / "json.py").write_text(hostile)
    (work / "runpy.py").write_text(hostile)
    (work / "diffoscope").mkdir()
    (work / "diffoscope" / "__init__.py").write_text(hostile)
    tool, imported = _diffoscope(tmp_path)
    preloaded = preload_diffoscope(work, tool)
    assert preloaded is not None
    _ready(preloaded, imported)
    result = _compare(work, tool, preloaded, tmp_path / "log")
    assert not marker.exists()
    assert json.loads(_reports(work)[0])["argv"][0] == tool
    assert _run(result).status == "different"


def test_a_failed_import_runs_the_program_itself(tmp_path: Path) -> None:
    """No diffoscope package to preload (a program that is all one script): the preload says
    so and is killed, and diffoscope runs afresh."""
    work = _trees(tmp_path)
    tool, imported = _diffoscope(tmp_path, package=False)
    Path(tool).write_text(
        f"#!{sys.executable}\nimport sys\n"
        + MAIN.format(imported=str(imported), body="pass")
        + "\nmain()\n"
    )
    fresh = _compare(work, tool, None, tmp_path / "fresh.log")
    fresh_reports = _reports(work)
    preloaded = preload_diffoscope(work, tool)
    assert preloaded is not None and preloaded._proc is not None
    process = preloaded._proc
    ran = _compare(work, tool, preloaded, tmp_path / "preloaded.log")
    assert _timeless(ran) == _timeless(fresh)
    assert _reports(work) == fresh_reports
    assert _run(ran).status == "different"
    assert process.poll() is not None  # said it could not import, and was killed
    assert "note" not in json.loads((tmp_path / "preloaded.log").read_text().splitlines()[-1])


def test_a_preload_not_ready_within_the_runs_limit_gives_way_to_a_fresh_run(
    tmp_path: Path,
) -> None:
    """A preload stuck importing: the run waits for it no longer than its own limit, then
    diffoscope runs afresh with that whole limit (the stuck one killed)."""
    work = _trees(tmp_path)
    tool, _ = _diffoscope(tmp_path)
    (Path(tool).parent.parent / "diffoscope" / "comparators" / "__init__.py").write_text(
        "import time\ntime.sleep(60)\n"  # only the preload imports the comparators
    )
    preloaded = preload_diffoscope(work, tool)
    assert preloaded is not None and preloaded._proc is not None
    process = preloaded._proc
    result = compare_outputs(
        CompareRequest(
            Path("A"),
            Path("B"),
            work,
            diffoscope_executable=tool,
            diffoscope_timeout_s=2,
            preloaded=preloaded,
        ),
        AuditLog(tmp_path / "log"),
    )
    assert _run(result).status == "different"
    assert process.poll() is not None
    assert "note" not in json.loads((tmp_path / "log").read_text().splitlines()[-1])


def test_a_preload_for_another_folder_is_killed_and_a_fresh_diffoscope_runs(
    tmp_path: Path,
) -> None:
    work = _trees(tmp_path)
    tool, imported = _diffoscope(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    preloaded = preload_diffoscope(elsewhere, tool)
    assert preloaded is not None
    _ready(preloaded, imported)
    process = preloaded._proc
    assert process is not None
    result = _compare(work, tool, preloaded, tmp_path / "log")
    assert process.poll() is not None  # killed, not left waiting
    assert json.loads(_reports(work)[0])["cwd"] == str(work)
    assert _run(result).status == "different"


def test_a_preload_is_taken_once_and_an_unused_one_is_killed(tmp_path: Path) -> None:
    work = _trees(tmp_path)
    tool, _ = _diffoscope(tmp_path)
    unused = preload_diffoscope(work, tool)
    assert unused is not None and unused._proc is not None
    process = unused._proc
    unused.close()
    assert process.poll() is not None
    used = preload_diffoscope(work, tool)
    assert used is not None
    _compare(work, tool, used, tmp_path / "log")
    argv = [tool, "A", "B"]
    assert used.take(argv, work, diffoscope_environment()) is None


def test_a_run_stopped_while_the_preload_imports_stops(tmp_path: Path) -> None:
    """A stop while waiting for a slow import: the preload is killed, the run stops, and
    nobody asks the stopped program for its version."""
    work = _trees(tmp_path)
    tool, imported = _diffoscope(tmp_path)
    (Path(tool).parent.parent / "diffoscope" / "comparators" / "__init__.py").write_text(
        "import time\ntime.sleep(60)\n"
    )
    preloaded = preload_diffoscope(work, tool)
    assert preloaded is not None
    process = preloaded._proc
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    result = compare_outputs(
        CompareRequest(
            Path("A"), Path("B"), work, diffoscope_executable=tool, stop=stop, preloaded=preloaded
        )
    )
    assert result.diffoscope is not None and result.diffoscope.status == "error"
    assert "interrupted" in result.diffoscope.detail
    assert process is not None and process.poll() is not None
    assert "--version" not in imported.read_text()


def test_a_program_that_is_no_python_script_is_not_preloaded(tmp_path: Path) -> None:
    shell = tmp_path / "diffoscope"
    shell.write_text("#!/bin/sh\nexit 1\n")
    shell.chmod(0o755)
    assert preload_diffoscope(tmp_path, str(shell)) is None
    assert preload_diffoscope(tmp_path, str(tmp_path / "missing")) is None


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("#! /usr/bin/python3\n", "/usr/bin/python3"),
        ("#!/usr/bin/python3.11\n", "/usr/bin/python3.11"),
        ("#!/usr/bin/env python3\n", "python3"),
        ("#!/usr/bin/python3 -E\n", None),  # options we would have to pass on
        ("#!/bin/sh\n", None),
        ("#!/usr/bin/env\n", None),
        ("import os\n", None),
    ],
)
def test_the_interpreter_comes_from_the_scripts_first_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str, expected: str | None
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("python3", "python3.11"):
        (bin_dir / name).symlink_to(sys.executable)
    line = line.replace("/usr/bin/python", f"{bin_dir}/python")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    script = tmp_path / "diffoscope"
    script.write_text(line)
    found = script_interpreter(str(script))
    if expected is None:
        assert found is None
    elif expected == "python3":
        assert found == shutil.which("python3")
    else:
        assert found == expected.replace("/usr/bin/python", f"{bin_dir}/python")
