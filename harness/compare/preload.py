"""diffoscope, started before the builds end: its interpreter with its modules imported.

A diffoscope run spends about 0.2 s of a sub-second comparison importing its modules and
comparators (`ComparatorManager`), before it reads a byte of the two trees. A drill knows early
that it may compare (the builds are still running), so it starts diffoscope's own interpreter
(the one its script names on its `#!` line) with that import done, waiting on its stdin for
the arguments; `run_diffoscope` then hands it the command line a fresh diffoscope would have
got, and diffoscope's own script runs as `__main__` with the same arguments, folder and
environment. The import happens in the state a fresh run imports in (the script's folder first
on the module path, diffoscope's PATH and normalized locale), so the reports are the same bytes.

Anything unusual is a fresh run instead: a program that is not a Python script, an interpreter
that fails, an import that fails, a preload not ready in time or stopped while waiting (it is
killed, and `run_diffoscope` starts diffoscope itself with its whole time limit). A preload
nobody used is killed (`close`), so it costs only the CPU of the import.
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

_READY = "cihub-diffoscope-ready"
_FAILED = "cihub-diffoscope-failed"
_READY_WAIT_S = 30.0
"""How long a run waits at most for a preload still importing (then diffoscope runs afresh)."""
STOP_CHECK_S = 0.25
"""How often a wait on diffoscope looks at the caller's `stop` event."""

# Runs in diffoscope's interpreter: argv[1] is the diffoscope script, argv[2] and argv[3] the
# lines it says when it is ready or could not import. The folder it runs in holds the builds'
# outputs, so `-c`'s entry for it goes from the module path: the script's folder takes its
# place, as it is first when the script runs itself.
_PRELOAD = r"""
import os, sys
program, ready, failed = sys.argv[1:4]
if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]
sys.path.insert(0, os.path.dirname(os.path.realpath(program)))  # as Python puts it
# what the script itself does first: a diffoscope run from its source tree imports that tree
parent = os.path.dirname(os.path.dirname(os.path.realpath(program)))
if os.path.exists(os.path.join(parent, "diffoscope", "__init__.py")):
    sys.path.insert(0, parent)
try:
    import json, runpy
    import diffoscope.main
    from diffoscope.environ import normalize_environment
    from diffoscope.path import set_path
    # a fresh run imports its comparators with these done (some look up tools on import)
    set_path()
    normalize_environment()
    from diffoscope.comparators import ComparatorManager
    ComparatorManager()
except BaseException:
    sys.stdout.write(failed + "\n")
    sys.exit(0)
sys.stdout.write(ready + "\n")
sys.stdout.flush()
line = sys.stdin.buffer.readline()
if not line:
    sys.exit(0)
args = json.loads(line)
devnull = os.open(os.devnull, os.O_RDONLY)
os.dup2(devnull, 0)
os.close(devnull)
sys.argv = [program, *args]
runpy.run_path(program, run_name="__main__")
"""


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
        words = [os.path.abspath(found)] if found else []
    if len(words) != 1 or not os.path.basename(words[0]).startswith("python"):
        return None  # another interpreter, or options we would have to pass on
    return words[0] if os.access(words[0], os.X_OK) else None


class PreloadedDiffoscope:
    """A diffoscope process, imported and waiting for its arguments (see the module docs).
    Taken by one run at most (`take`), from any thread; `close` kills it when none did."""

    def __init__(
        self, program: str, cwd: Path, env: dict[str, str], proc: subprocess.Popen[bytes]
    ) -> None:
        self.program = program
        self.cwd = cwd
        self.env = env
        self._proc: subprocess.Popen[bytes] | None = proc
        self._lock = threading.Lock()

    @classmethod
    def start(cls, program: str, cwd: Path, env: dict[str, str]) -> PreloadedDiffoscope | None:
        """Start `program`'s interpreter importing diffoscope in `cwd` with `env`; None when
        `program` is no Python script or its interpreter can't start."""
        interpreter = script_interpreter(program)
        if interpreter is None:
            return None
        try:
            proc = subprocess.Popen(
                [interpreter, "-c", _PRELOAD, program, _READY, _FAILED],
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
        wait_s: float = _READY_WAIT_S,
    ) -> subprocess.Popen[bytes] | None:
        """The process, now running diffoscope with `argv` (argv[0] the program), or None when
        it can't serve this run: another program, folder or environment; it could not import,
        or is not ready within `wait_s` (at most `_READY_WAIT_S`); `stop` was set meanwhile.
        It is killed then, and the caller runs diffoscope itself."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return None
        try:
            if argv[0] != self.program or cwd != self.cwd or env != self.env:
                raise OSError("started for another run")
            assert proc.stdin is not None and proc.stdout is not None
            deadline = time.monotonic() + min(wait_s, _READY_WAIT_S)
            said = _read_line(proc.stdout.fileno(), deadline, stop)
            if said != _READY.encode():
                raise OSError(f"diffoscope preload said {said!r}")
            proc.stdin.write(json.dumps(argv[1:]).encode() + b"\n")
            proc.stdin.close()
        except BaseException as exc:
            _discard(proc)
            if isinstance(exc, (OSError, ValueError)):
                return None
            raise
        proc.stdin = None  # closed: `communicate` must not flush it again
        return proc

    def close(self) -> None:
        """Kill it when no run took it."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None:
            _discard(proc)


def _read_line(fd: int, deadline: float, stop: threading.Event | None) -> bytes | None:
    """The first line `fd` gives (without its newline) before `deadline`, or None: the stream
    ended, the time passed or `stop` was set first. Read unbuffered, so a `communicate` of the
    same pipe later misses nothing of what follows."""
    line = b""
    while len(line) < 128:
        left = deadline - time.monotonic()
        if left <= 0 or (stop is not None and stop.is_set()):
            return None
        readable, _, _ = select.select([fd], [], [], min(left, STOP_CHECK_S))
        if not readable:
            continue
        byte = os.read(fd, 1)
        if not byte:
            return None
        if byte == b"\n":
            return line
        line += byte
    return None


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill `proc` and every process of its group (diffoscope's helpers: readelf, ...)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


def _discard(proc: subprocess.Popen[bytes]) -> None:
    """`kill_group`, then wait for `proc`, its pipes closed (nobody reads them)."""
    kill_group(proc)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    proc.wait()
