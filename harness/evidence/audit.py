"""`audit/commands.log`: every command a drill ran, one NDJSON line each, secrets redacted.

Each line holds argv, cwd, exit code, duration and the sha256 of stdout and stderr. Output
itself is never logged, only its digest, unless the drill asks for it to be saved (redacted)
as a bundle file.
"""

from __future__ import annotations

import collections
import fnmatch
import hashlib
import json
import logging
import os
import re
import stat
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.errors import InfraError, StepFailed
from harness.evidence import _fs

_logger = logging.getLogger(__name__)

REDACTED = "[REDACTED]"
"""What a secret is replaced with."""

SECRET_NAME_PATTERNS: tuple[str, ...] = ("*TOKEN*", "*PASSWORD*", "*SECRET*")
"""Environment variable names (case-insensitive globs) whose values are secrets."""

MIN_SECRET_LENGTH = 4
"""Secret values shorter than this are redacted in the `env` record but not searched for in
argv and text (a 1-3 character value would blank out unrelated text)."""


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Redactor:
    """Replace secrets in text: configured regex patterns and values of secret-named variables.

    Args:
        patterns: regular expressions; every match is replaced by `REDACTED`. A pattern with a
            group named `secret` replaces only that group (e.g. ``r"token=(?P<secret>\\S+)"``).
        secret_names: globs of variable names whose values are secrets.
        secrets: literal secret values to remove wherever they appear.

    Example:
        >>> r = Redactor.from_environ({"API_TOKEN": "hunter22"}, patterns=[r"ghp_\\w+"])
        >>> r.redact("curl -H 'auth: hunter22' ghp_abc")
        "curl -H 'auth: [REDACTED]' [REDACTED]"
    """

    patterns: tuple[re.Pattern[str], ...] = ()
    secret_names: tuple[str, ...] = SECRET_NAME_PATTERNS
    secrets: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_environ(
        cls,
        environ: Mapping[str, str] | None = None,
        patterns: Iterable[str | re.Pattern[str]] = (),
        secret_names: Sequence[str] = SECRET_NAME_PATTERNS,
    ) -> Redactor:
        """A redactor that knows the secret values in `environ` (default: `os.environ`)."""
        env = os.environ if environ is None else environ
        compiled = tuple(p if isinstance(p, re.Pattern) else re.compile(p) for p in patterns)
        names = tuple(secret_names)
        secrets = frozenset(v for k, v in env.items() if v and _is_secret_name(k, names))
        return cls(patterns=compiled, secret_names=names, secrets=secrets)

    def with_secrets(self, values: Iterable[str]) -> Redactor:
        """A copy that also removes the literal `values`."""
        return Redactor(self.patterns, self.secret_names, self.secrets | {v for v in values if v})

    def is_secret_name(self, name: str) -> bool:
        """Whether a variable called `name` holds a secret."""
        return _is_secret_name(name, self.secret_names)

    def redact(self, text: str) -> str:
        """Return `text` with every known secret value and pattern match replaced."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            if len(secret) >= MIN_SECRET_LENGTH and secret in text:
                text = text.replace(secret, REDACTED)
        for pattern in self.patterns:
            text = pattern.sub(_pattern_replacer, text)
        return text

    def redact_env(self, env: Mapping[str, str]) -> dict[str, str]:
        """`env` with the values of secret-named variables replaced and the rest redacted."""
        redactor = self.with_secrets(v for k, v in env.items() if self.is_secret_name(k))
        return {
            k: (REDACTED if redactor.is_secret_name(k) else redactor.redact(v))
            for k, v in sorted(env.items())
        }


def _is_secret_name(name: str, globs: Sequence[str]) -> bool:
    upper = name.upper()
    return any(fnmatch.fnmatchcase(upper, glob.upper()) for glob in globs)


def _pattern_replacer(match: re.Match[str]) -> str:
    if "secret" in match.re.groupindex and match.group("secret") is not None:
        start, end = match.span("secret")
        base = match.start()
        whole = match.group(0)
        return whole[: start - base] + REDACTED + whole[end - base :]
    return REDACTED


@dataclass(frozen=True)
class CommandResult:
    """A finished command: what `AuditLog.run` returns. Output is not redacted here."""

    argv: tuple[str, ...]
    exit_code: int
    stdout: bytes
    stderr: bytes
    duration_s: float

    @property
    def ok(self) -> bool:
        """Whether the command exited 0."""
        return self.exit_code == 0


class AuditLog:
    """Appends one redacted NDJSON line per command to `audit/commands.log` of a bundle.

    Lines are written whole with one `write` on an `O_APPEND` descriptor and fsynced, so a
    crash can lose at most the line being written, never corrupt an earlier one.

    Args:
        path: the log file (created on the first record).
        redactor: what to remove from argv, cwd and env before writing.
    """

    def __init__(self, path: Path, redactor: Redactor | None = None) -> None:
        self.path = path
        self.redactor = redactor if redactor is not None else Redactor.from_environ()
        self._lock = threading.Lock()

    def record(
        self,
        argv: Sequence[str],
        *,
        exit_code: int | None,
        duration_s: float,
        stdout: bytes = b"",
        stderr: bytes = b"",
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        started_at: str | None = None,
        note: str | None = None,
    ) -> dict[str, Any]:
        """Append one command to the log and return the line's (redacted) content.

        Args:
            argv: the command and its arguments.
            exit_code: its exit status (negative: killed by that signal; None: never ran).
            duration_s: wall-clock seconds it took.
            stdout: its standard output (only the digest and size are logged).
            stderr: its standard error (likewise).
            cwd: the folder it ran in (default: this process's).
            env: variables set for it on top of the inherited environment.
            started_at: RFC 3339 start time (default: now).
            note: a short remark, such as "timed out after 60 s".
        """
        redactor = self.redactor
        if env:
            redactor = redactor.with_secrets(
                v for k, v in env.items() if redactor.is_secret_name(k)
            )
        entry: dict[str, Any] = {
            "ts": started_at or _now_iso(),
            "argv": [redactor.redact(str(a)) for a in argv],
            "cwd": redactor.redact(str(cwd if cwd is not None else os.getcwd())),
            "exit_code": exit_code,
            "duration_s": round(duration_s, 6),
            "stdout_sha256": hashlib.sha256(stdout).hexdigest(),
            "stdout_bytes": len(stdout),
            "stderr_sha256": hashlib.sha256(stderr).hexdigest(),
            "stderr_bytes": len(stderr),
        }
        if env:
            entry["env"] = redactor.redact_env(env)
        if note:
            entry["note"] = redactor.redact(note)
        line = (json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n").encode()
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = b"\n" + line  # a crash tore the last line: keep this one whole
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        return entry

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        input: bytes | None = None,
        timeout: float | None = None,
        check: bool = False,
    ) -> CommandResult:
        """Run `argv`, capture its output, record it, and return the result.

        Args:
            argv: the command and its arguments (no shell).
            cwd: the folder to run it in.
            env: variables to set on top of this process's environment (logged redacted).
            input: bytes for its standard input.
            timeout: seconds before it is killed.
            check: raise `StepFailed` if it exits non-zero.

        Raises:
            InfraError: the program is not installed, or it timed out.
            StepFailed: `check` is true and the command exited non-zero.

        Example:
            >>> log.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True).stdout
        """
        args = [str(a) for a in argv]
        full_env = {**os.environ, **env} if env else None
        started_at = _now_iso()
        start = time.monotonic()
        try:
            proc = subprocess.run(
                args,
                cwd=cwd,
                env=full_env,
                input=input,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError as exc:
            self.record(
                args,
                exit_code=None,
                duration_s=time.monotonic() - start,
                cwd=cwd,
                env=env,
                started_at=started_at,
                note="command not found",
            )
            raise InfraError(f"{args[0]}: command not found") from exc
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout if isinstance(exc.stdout, bytes) else b""
            err = exc.stderr if isinstance(exc.stderr, bytes) else b""
            self.record(
                args,
                exit_code=None,
                duration_s=time.monotonic() - start,
                stdout=out,
                stderr=err,
                cwd=cwd,
                env=env,
                started_at=started_at,
                note=f"timed out after {timeout} s",
            )
            raise InfraError(f"{args[0]}: timed out after {timeout} s") from exc
        duration = time.monotonic() - start
        self.record(
            args,
            exit_code=proc.returncode,
            duration_s=duration,
            stdout=proc.stdout,
            stderr=proc.stderr,
            cwd=cwd,
            env=env,
            started_at=started_at,
        )
        result = CommandResult(tuple(args), proc.returncode, proc.stdout, proc.stderr, duration)
        if check and not result.ok:
            tail = self.redactor.redact(proc.stderr.decode(errors="replace").strip())
            last = tail.splitlines()[-1] if tail else ""
            raise StepFailed(
                f"{self.redactor.redact(args[0])} exited {proc.returncode}"
                + (f": {last}" if last else "")
            )
        return result


MAX_LINE = 16 * 1024 * 1024
"""The longest commands.log line `read_commands` parses."""


def read_commands(path: Path, limit: int | None = None) -> tuple[list[dict[str, Any]], int]:
    """The last `limit` (default all) records of a commands.log, and how many there are.

    Reads line by line, so memory stays bounded by `limit` and `MAX_LINE`; lines that are
    not JSON objects are skipped with a warning, and reading stops at a line longer than
    `MAX_LINE`. A log that is a
    link, FIFO or device, or sits in a folder that is a link, is not read (no records).
    """
    try:
        if stat.S_ISLNK(os.lstat(path.parent).st_mode):
            raise _fs.UnsafeEntry(str(path), "its folder is a link")
        fd = _fs.open_regular(path.parent, path.name)
    except FileNotFoundError:
        return [], 0
    except (_fs.UnsafeEntry, OSError) as exc:
        _logger.warning("%s: not read (%s)", path, exc)
        return [], 0
    records: collections.deque[dict[str, Any]] = collections.deque(maxlen=limit)
    total = 0
    with open(fd, "rb") as handle:
        while raw := handle.readline(MAX_LINE + 1):
            if len(raw) > MAX_LINE:  # not a command record; don't read on through it
                _logger.warning("%s: a line is over %d bytes; stopped reading", path, MAX_LINE)
                break
            try:
                value = json.loads(raw)
            except (ValueError, RecursionError):
                value = None
            if not isinstance(value, dict):
                _logger.warning("%s: skipping a line that is not a JSON object", path)
                continue
            records.append(value)
            total += 1
    return list(records), total
