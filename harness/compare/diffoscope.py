"""Run diffoscope on two output trees, bounded in time and output size.

diffoscope's memory and report size explode on large binary diffs unless bounded, so every run
passes `--max-diff-block-lines-saved` and report-size limits, runs in its own process group and
is killed (with its helpers: readelf, zipinfo, ...) when its wall-clock limit passes, when the
caller is interrupted (KeyboardInterrupt), or when the request's `stop` event is set (a caller
running it in the background, e.g. beside the culprit search, that is itself interrupted), and
waited for before the exception goes on. A crash,
a timeout or a missing diffoscope is a result, not an exception: the verdict stands on the tree
digests, and the result says what happened.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from harness.evidence.audit import AuditLog

_logger = logging.getLogger(__name__)

DiffoscopeStatus = Literal["same", "different", "error", "timeout", "missing"]

_STOP_CHECK_S = 0.25
"""How often a run with a `stop` event looks at it."""

INSTALL_HINT = "install diffoscope-minimal with its helpers (`make setup`, or apt-get)"
_TRUNCATED = "\n[cihub: report truncated at {limit} bytes of {size}]\n"
_HTML_STUB = (
    "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>diffoscope report</title></head>"
    "<body><p>The diffoscope HTML report was {size} bytes, over the {limit}-byte cap; it was "
    "not kept. See diff.txt for the text report.</p></body></html>\n"
)


@dataclass(frozen=True)
class DiffoscopeRequest:
    """What to compare and where the reports go.

    Attributes:
        a: the control tree (a folder or file); b: the experiment tree.
        text_report: where the text report goes; html_report: where the HTML report goes.
        cwd: the folder diffoscope runs in: give relative `a` and `b` to keep the paths in the
            report short (e.g. `build-A` and `build-B`).
        timeout_s: wall-clock seconds before diffoscope and its helpers are killed.
        max_report_bytes: cap of each report; a longer one is cut (text) or replaced (HTML).
        max_diff_block_lines_saved: diffoscope's bound on the lines kept per diff block.
        executable: the diffoscope program (default: found on PATH).
        stop: when set, diffoscope is killed at once and the result says it was stopped.
    """

    a: Path
    b: Path
    text_report: Path
    html_report: Path
    cwd: Path | None = None
    timeout_s: float = 120.0
    max_report_bytes: int = 4 * 1024 * 1024
    max_diff_block_lines_saved: int = 200
    executable: str | None = None
    stop: threading.Event | None = None


@dataclass(frozen=True)
class DiffoscopeResult:
    """What a diffoscope run did.

    Attributes:
        status: same (exit 0), different (exit 1), error (exit 2 or a crash), timeout (killed
            at the wall-clock limit) or missing (not installed).
        exit_code: diffoscope's exit status (negative: killed by that signal; None: not run).
        detail: one line for people: why it failed, or what it found.
        truncated: a report was cut to the size cap.
    """

    status: DiffoscopeStatus
    exit_code: int | None
    duration_s: float
    detail: str
    version: str | None = None
    truncated: bool = False
    argv: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "status": self.status,
            "exit_code": self.exit_code,
            "duration_s": round(self.duration_s, 3),
            "detail": self.detail,
            "version": self.version,
            "truncated": self.truncated,
        }


def diffoscope_version(executable: str | None = None) -> str | None:
    """The installed diffoscope's version (e.g. `240`), or None when it is not installed."""
    program = executable or shutil.which("diffoscope")
    if program is None:
        return None
    try:
        proc = subprocess.run(
            [program, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    words = proc.stdout.split()
    return words[-1] if proc.returncode == 0 and words else None


def run_diffoscope(request: DiffoscopeRequest, audit: AuditLog | None = None) -> DiffoscopeResult:
    """Compare `request.a` and `request.b` with diffoscope, within its limits.

    The command is recorded in `audit` (exit code, duration, output digests) when given.

    Example:
        >>> result = run_diffoscope(DiffoscopeRequest(Path("build-A"), Path("build-B"),
        ...     Path("diff.txt"), Path("report.html"), cwd=Path("determinism")))
        >>> result.status
        'different'
    """
    program = request.executable or shutil.which("diffoscope")
    if program is None:
        return DiffoscopeResult(
            "missing", None, 0.0, f"diffoscope is not installed: {INSTALL_HINT}"
        )
    versions = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diffoscope-version")
    asked = versions.submit(diffoscope_version, program)  # at the same time as the comparison
    versions.shutdown(wait=False)
    cap = max(1024, request.max_report_bytes)
    argv = [
        program,
        "--no-progress",
        "--text-color=never",
        "--exclude-directory-metadata=yes",
        f"--max-diff-block-lines-saved={request.max_diff_block_lines_saved}",
        f"--max-text-report-size={cap}",
        f"--max-report-size={cap}",
        f"--max-page-size={cap}",
        f"--timeout={max(1, int(request.timeout_s * 0.8))}",
        "--text",
        str(request.text_report),
        "--html",
        str(request.html_report),
        str(request.a),
        str(request.b),
    ]
    env = {**os.environ, "LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.monotonic()
    timed_out = stopped = False
    with subprocess.Popen(
        argv,
        cwd=request.cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    ) as proc:
        try:
            stdout, stderr, timed_out, stopped = _communicate(proc, request, started)
        except BaseException:
            # Ctrl-C (or SIGTERM turned into it): diffoscope runs in its own session, so the
            # terminal's signal never reached it. Kill its group and wait until it is gone, so
            # the caller removes the work folder only after it died.
            _kill_group(proc)
            proc.wait()
            raise
    duration = time.monotonic() - started
    code = proc.returncode
    version = asked.result()
    if audit is not None:
        note = f"killed after {request.timeout_s:g} s (wall-clock limit)" if timed_out else None
        note = "stopped: the drill was interrupted" if stopped else note
        audit.record(
            argv,
            exit_code=None if timed_out or stopped else code,
            duration_s=duration,
            stdout=stdout,
            stderr=stderr,
            cwd=request.cwd,
            note=note,
        )
    truncated = _cap_text(request.text_report, cap) | _cap_html(request.html_report, cap)
    last = _last_line(stderr)
    if stopped:
        detail = "diffoscope stopped: the drill was interrupted"
        return DiffoscopeResult("error", code, duration, detail, version, truncated, tuple(argv))
    if timed_out:
        return DiffoscopeResult(
            "timeout",
            code,
            duration,
            f"diffoscope killed after {request.timeout_s:g} s; reports may be partial",
            version,
            truncated,
            tuple(argv),
        )
    if code == 0:
        status: DiffoscopeStatus = "same"
        detail = "diffoscope found no difference"
    elif code == 1:
        status, detail = "different", "diffoscope found differences"
    else:
        status = "error"
        detail = f"diffoscope exited {code}" + (f": {last}" if last else "")
    return DiffoscopeResult(status, code, duration, detail, version, truncated, tuple(argv))


def _communicate(
    proc: subprocess.Popen[bytes], request: DiffoscopeRequest, started: float
) -> tuple[bytes, bytes, bool, bool]:
    """diffoscope's stdout and stderr, and whether it was killed at its limit or stopped."""
    deadline = started + request.timeout_s
    while True:
        left = deadline - time.monotonic()
        wait = left if request.stop is None else min(left, _STOP_CHECK_S)
        try:
            stdout, stderr = proc.communicate(timeout=max(0.0, wait))
            return stdout, stderr, False, False
        except subprocess.TimeoutExpired:
            stopped = request.stop is not None and request.stop.is_set()
            if stopped or time.monotonic() >= deadline:
                _kill_group(proc)
                stdout, stderr = proc.communicate()  # retrying loses no output
                return stdout, stderr, not stopped, stopped


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


def _last_line(data: bytes) -> str:
    lines = [line for line in data.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else ""


def _cap_text(path: Path, cap: int) -> bool:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if size <= cap:
        return False
    with path.open("r+b") as handle:
        handle.truncate(cap)
        handle.seek(cap)
        handle.write(_TRUNCATED.format(limit=cap, size=size).encode())
    return True


def _cap_html(path: Path, cap: int) -> bool:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if size <= cap:
        return False
    path.write_text(_HTML_STUB.format(size=size, limit=cap), encoding="utf-8")
    return True
