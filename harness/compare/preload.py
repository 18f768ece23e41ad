"""diffoscope, started before the builds end: its interpreter with its modules imported.

A diffoscope run spends about 0.2 s of a sub-second comparison importing its modules and
comparators (`ComparatorManager`), before it reads a byte of the two trees. A drill knows early
that it may compare (the builds are still running), so it starts diffoscope's own interpreter
(the one its script names on its `#!` line) with that import done, waiting on its stdin for
the arguments; `run_diffoscope` then hands it the command line a fresh diffoscope would have
got, and diffoscope's own script runs as `__main__` with the same arguments, folder and
environment. The reports are the same bytes.

Anything unusual falls back to a plain run: a program that is not a Python script, an
interpreter that fails, an import that fails (the waiting process then `exec`s the program
itself). A preload nobody used is killed (`close`), so it costs only the CPU of the import.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

_READY = b"cihub-diffoscope-ready\n"
_FALLBACK = b"cihub-diffoscope-fallback\n"
_READY_WAIT_S = 30.0
"""How long a run waits for a preload still importing (a hung one: diffoscope runs afresh)."""
_STOP_CHECK_S = 0.25

# Runs in diffoscope's interpreter: argv[1] is the diffoscope script. The folder it runs in
# holds the builds' outputs, so it is dropped from the module path first (`-c` puts it there).
_PRELOAD = r"""
import os, sys
if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]
program = sys.argv[1]
# what the script itself does first: a diffoscope run from its source tree imports that tree
parent = os.path.dirname(os.path.dirname(os.path.realpath(program)))
if os.path.exists(os.path.join(parent, "diffoscope", "__init__.py")):
    sys.path.insert(0, parent)
try:
    import diffoscope.main
    from diffoscope.comparators import ComparatorManager
    ComparatorManager()
    ready = True
except BaseException:
    ready = False
sys.stdout.buffer.write(READY if ready else FALLBACK)
sys.stdout.flush()
line = sys.stdin.buffer.readline()
if not line:
    sys.exit(0)
args = __import__("json").loads(line)
devnull = os.open(os.devnull, os.O_RDONLY)
os.dup2(devnull, 0)
os.close(devnull)
if not ready:
    os.execv(program, [program, *args])
sys.argv = [program, *args]
import runpy
runpy.run_path(program, run_name="__main__")
""".replace("READY", repr(_READY)).replace("FALLBACK", repr(_FALLBACK))


def script_interpreter(program: str) -> str | None:
    """The Python interpreter a script's `#!` line names (`#!/usr/bin/python3`, or
    `#!/usr/bin/env python3` found on PATH), or None when it names none."""
    try:
        with open(program, "rb") as handle:
            first = handle.readline(256)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode(errors="replace").split()
    if words and os.path.basename(words[0]) == "env":
        words = words[1:]
        found = shutil.which(words[0]) if words else None
        words = [found] if found else []
    if len(words) != 1 or not os.path.basename(words[0]).startswith("python"):
        return None  # another interpreter, or options we would have to pass on
    return words[0] if os.access(words[0], os.X_OK) else None


class PreloadedDiffoscope:
    """A diffoscope process, imported and waiting for its arguments (see the module docs)."""

    def __init__(self, program: str, cwd: Path, env: dict[str, str], proc: subprocess.Popen[bytes]):
        self.program = program
        self.cwd = cwd
        self.env = env
        self._proc: subprocess.Popen[bytes] | None = proc

    @classmethod
    def start(cls, program: str, cwd: Path, env: dict[str, str]) -> PreloadedDiffoscope | None:
        """Start `program`'s interpreter importing diffoscope in `cwd` with `env`; None when
        `program` is no Python script or its interpreter can't start."""
        interpreter = script_interpreter(program)
        if interpreter is None:
            return None
        try:
            proc = subprocess.Popen(
                [interpreter, "-c", _PRELOAD, program],
                cwd=cwd,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError:
            return None
        return cls(program, cwd, env, proc)

    def take(
        self,
        argv: list[str],
        cwd: Path | None,
        env: dict[str, str],
        stop: threading.Event | None = None,
    ) -> subprocess.Popen[bytes] | None:
        """The process, now running diffoscope with `argv` (argv[0] the program), or None when
        it can't serve this run (another program, folder or environment; it failed, or is
        still importing after `_READY_WAIT_S`; `stop` was set): the caller runs diffoscope
        itself. Taken once."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if argv[0] != self.program or cwd != self.cwd or env != self.env:
            _kill(proc)
            return None
        assert proc.stdin is not None and proc.stdout is not None
        try:
            if not _readable(proc.stdout, stop):
                raise OSError("diffoscope preload not ready")
            said = proc.stdout.readline()  # the import is over (it ran beside the builds)
            if said not in (_READY, _FALLBACK):
                raise OSError(f"diffoscope preload said {said!r}")
            proc.stdin.write(json.dumps(argv[1:]).encode() + b"\n")
            proc.stdin.close()
        except (OSError, ValueError):
            _kill(proc)
            return None
        proc.stdin = None  # closed: `communicate` must not flush it again
        return proc

    def close(self) -> None:
        """Kill it when no run took it."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _kill(proc)


def _readable(stream: IO[bytes], stop: threading.Event | None) -> bool:
    """Whether `stream` has something to read (or its end) within `_READY_WAIT_S`."""
    deadline = time.monotonic() + _READY_WAIT_S
    while (left := deadline - time.monotonic()) > 0:
        if stop is not None and stop.is_set():
            return False
        readable, _, _ = select.select([stream], [], [], min(left, _STOP_CHECK_S))
        if readable:
            return True
    return False


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    proc.wait()
