"""Warm builder containers: start a builder once, run many builds in it with `docker exec`.

Starting a container costs about 0.35 s on this engine (0.7 s with create and remove), more than
many builds take, and the culprit search runs a dozen builds. A warm container is created with
a one-off build's hardening, limits and tmpfs folders (`harness.build.hardened_options`) but
idles (`IDLE`, under docker-init, as another user than the builds) instead of building; each
build is one `docker exec` of the build runner as the build user, with its own output folder
`/out/<n>`. After collecting, the runner writes that folder as a tar archive on the exec's
stdout, then ends the processes the build left and empties every folder it could write
(`/build`, HOME, /tmp, /var/tmp, /dev/shm, /out, /cihub, /dev/mqueue) and its SysV IPC objects;
only a container whose runner exited 0 after saying its reset succeeded goes back to the
session's pool.

The runner runs as the build user, so the build (or what it leaves running) could ptrace it or
write its /proc/<pid>/mem, and make it skip the reset and exit 0. The lab builder images ship
an execute-only copy of the shell (`RUNNER_SHELL`) the runner is exec'd from: the kernel makes
a process that execs a file it can't read non-dumpable, and a non-dumpable process can be
neither traced nor have its memory opened by processes without CAP_SYS_PTRACE (what it starts,
the build, execs readable files and is dumpable again). No extra engine call: the runner itself
checks it (a subshell opens its /proc/<pid>/mem) and says so on its first stderr line, before
any process of the build exists; a container is reused only when that line says it could not
be traced (any other image, or a kernel with fs.suid_dumpable=1: every build gets a fresh one).

No folder of the driver's machine is mounted, so the engine may be on another host
(`DOCKER_HOST=ssh://...`): everything goes over the engine's API.

- the subject: the driver sends it as a tar archive on the exec's stdin, in the order the file
  order variation asks for (`harness.build_subject`); the runner unpacks it in the build path;
- the output: `/out` is a tmpfs; the archive comes back on the exec's stdout;
- the identity files: the lab builder images' /etc/passwd and /etc/group link into
  `/cihub-etc`, a tmpfs of the build user's where each build's runner writes them (its HOME)
  and its reset writes them again, so no build leaves its own for the next exec (no engine call
  per build: a `put_archive` costs about 50 ms here); for other images the driver writes them
  (`put_archive`, root's, read-only to the build user) after the start, and again when a
  build's HOME differs, into an anonymous volume of all of `/etc` (filled from the image);
- the lease: the idle process reads its stdin, a stream the driver attaches before the start
  and holds open; when the driver's process ends (killed too), the stream ends, the idle
  process exits and the container stops with every build in it.

One build is three engine calls: create the exec, start it attached, and inspect it once its
stream ended. The driver writes the subject and reads the exec's multiplexed stream until it
ends: stdout is the output archive, the last stderr line says whether the reset succeeded, and
the exec's exit status whether the runner ended at all (a stream also ends when the engine's
connection drops: that is an InfraError, never the subject's failure). No polling, so no
latency between the end of a build and the driver seeing it.

What an exec can't change decides which container a build goes to (`warm_key`): the hostname
and domain name (domain_host), the build user (user_group: the writable tmpfs folders are its
own), the seccomp profile (aslr). Everything else is set per build: build path, file order,
clock, umask, environment, locale and time zone by the runner; HOME (home) by the runner too, in
a tmpfs mounted at its parent folder (`/home`), with the build user's `/etc/passwd` line
written by the runner (or before the exec, see the identity files); the cpuset (num_cpus)
with one `docker update` when it differs from the container's. A container started for a
build without a cpuset has none (every CPU the engine gives it, whatever their numbers); its
idle process says which CPUs those are, and that list is what a narrowed container is widened
back to. num_cpus pins the engine's first CPU (`first_engine_cpu`): 0 unless the session
knows better; an engine confined to CPUs 2-3 refuses 0 naming the CPUs it has, and the build
asks again for the first of them (`learned_engine_cpus`). disorderfs builds (root, FUSE)
always get a container of their own (`harness.build.run_build`), with bind mounts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import re
import select
import tarfile
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Hashable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

import docker
import docker.errors
import docker.types
import docker.utils.socket
import requests

from harness._internal.build_runner import (
    IDLE,
    NOT_REUSABLE,
    RUNNER,
    RUNNER_IDENTITY,
    SEND_FAILED,
    UNTRACEABLE,
)
from harness.build_session import BuildSession, close_stream, remove_container
from harness.build_subject import write_subject_archive
from harness.errors import InfraError
from harness.variations import FIRST_CPU, BuildEnv

_logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from harness.build import BuildOutput, BuildSpec

RESET_OK = "reset-ok"
"""The runner's last stderr line when it emptied the container after the build."""
_WAKE_S = 0.25
"""How often a driver waiting on a build's stream checks for cancellation and the timeout."""
_STDOUT, _STDERR = 1, 2
_STDERR_KEPT = 4096
_FIRST_LINE_KEPT = 64
_SPOOL_BYTES = 32 * 1024 * 1024
_CPUS, _HOME = "cpuset", "home"
"""What `_fit` sets per build (`BuildSession.fitted`); a cpuset of "" is none (every CPU)."""
_CPUS_WAIT_S = 5.0
"""How long the driver waits for a fresh idle process to say which CPUs it has."""
_EXIT_WAIT_S = 2.0
"""How long the engine may take to record an exec's exit after its stream ended."""
_STOP_WAIT_S = 1.0
"""How long a runner that failed waits for the engine to say its container stopped."""
_IDLE_ID = 65534


def _archive(subject: Path, sink: IO[bytes], reverse: bool) -> None:
    write_subject_archive(subject, sink, reverse=reverse)


def can_run_warm(env: BuildEnv) -> bool:
    """disorderfs needs root and a FUSE mount per build: those builds stay one-off."""
    return not env.disorderfs


def warm_key(spec: BuildSpec, env: BuildEnv) -> Hashable:
    """What a warm container fixes for every build it runs (see the module docs)."""
    return (
        spec.image.image_id,
        str(spec.subject),
        spec.limits,
        env.hostname,
        env.domainname,
        env.user,
        env.group,
        env.uid,
        env.gid,
        home_root(env),
        env.aslr,
    )


def home_root(env: BuildEnv) -> str:
    """The folder a warm container mounts its HOME tmpfs at: HOME's parent (`/home`), or HOME
    itself when that parent is `/` (the reset empties this folder)."""
    parent = PurePosixPath(env.home).parent
    return env.home if str(parent) == "/" else str(parent)


def prewarm(session: BuildSession, spec: BuildSpec, envs: Iterable[BuildEnv], workers: int) -> int:
    """Start, in the background, the warm containers builds in `envs` will want, at most
    `workers` per key, less those idle or already starting: work that would otherwise wait
    (e.g. the culprit search's containers while diffoscope runs). Returns how many it starts.

    Raises:
        ConfigError: a build in `envs` needs a one-off container with bind mounts (disorderfs)
            and the engine can't see this machine's folders (`harness.build.check_host_paths`).
    """
    from harness.build import check_host_paths

    envs = list(envs)
    for env in envs:
        if not can_run_warm(env):
            check_host_paths(session, spec, env)
    session.start_heartbeat()
    wanted = Counter(warm_key(spec, env) for env in envs if can_run_warm(env))
    first = {warm_key(spec, env): env for env in envs if can_run_warm(env)}
    started = 0
    for key, count in wanted.items():
        for _ in range(min(count, workers) - session.ready(key)):
            future: Future[Any] = Future()
            session.add_pending(key, future)
            threading.Thread(
                target=_start_into,
                args=(session, spec, first[key], future),
                name="cihub-prewarm",
                daemon=True,
            ).start()
            started += 1
    return started


def _start_into(session: BuildSession, spec: BuildSpec, env: BuildEnv, future: Future[Any]) -> None:
    try:
        future.set_result(_start_warm(session, spec, env)[0])
    except BaseException as exc:  # handed to the build that takes it
        future.set_exception(exc)


def warm_options(
    session: BuildSession, spec: BuildSpec, env: BuildEnv, name: str
) -> dict[str, Any]:
    """The `containers.create` options of a warm container: a one-off build's, idle, with no
    folder of this machine mounted (see the module docs)."""
    from harness.build import hardened_options

    options = hardened_options(session, spec, env, "warm", name)
    options["command"] = ["/bin/sh", "-c", IDLE, "cihub-warm"]
    options["environment"] = {}
    # Not the build user's: a build can neither open the lease (/proc/1/fd/0, to hold it after
    # the driver died) nor signal the idle process; docker-init as pid 1 reaps what builds
    # orphan (else zombies eat the pids limit). Builds run as the build user (`exec` user).
    options["user"] = idle_user(env)
    options["init"] = True
    # the idle process says its CPUs in the container's log (`engine_cpus`): an engine whose
    # default log driver keeps nothing readable (none, syslog, ...) must keep that line
    options["log_config"] = docker.types.LogConfig(
        type=docker.types.LogConfig.types.JSON, config={"max-size": "64k"}
    )
    options["stdin_open"] = True  # the driver's stream, which ends with it (the lease)
    owner = f"uid={env.uid},gid={env.gid}"
    # HOME is made per build inside a tmpfs at its parent; each build's output in /out
    options["tmpfs"] = {
        **{
            (home_root(env) if path == env.home else path): flags
            for path, flags in options["tmpfs"].items()
        },
        "/out": f"rw,nosuid,nodev,noexec,mode=0755,{owner}",
    }
    if spec.image.identity_linked:
        # the runner writes them per build: no engine call when HOME changes (see the docs)
        options["tmpfs"][RUNNER_IDENTITY] = f"rw,nosuid,nodev,noexec,mode=0755,{owner}"
    else:
        options["mounts"] = [docker.types.Mount("/etc", None, type="volume", no_copy=False)]
    return options


def idle_user(env: BuildEnv) -> str:
    """The uid:gid a warm container's pid 1 and idle process run as: nobody's, or the one
    below when the build user is nobody (never the build user's, see `warm_options`)."""
    uid = _IDLE_ID if _IDLE_ID not in (env.uid, env.gid) else _IDLE_ID - 1
    return f"{uid}:{uid}"


def _start_warm(session: BuildSession, spec: BuildSpec, env: BuildEnv) -> tuple[Any, str]:
    first = env.cpuset == FIRST_CPU
    if first:
        env = dataclasses.replace(env, cpuset=first_engine_cpu(session))
    name = session.next_name("warm")
    options = warm_options(session, spec, env, name)
    try:
        container = _create_started(session, spec, env, options)
    except docker.errors.APIError as exc:
        if first and learned_engine_cpus(session, exc):  # 0 is none of the engine's CPUs
            return _start_warm(session, spec, dataclasses.replace(env, cpuset=FIRST_CPU))
        # No retry without docker-init: a container whose pid 1 reaps nothing would fill its
        # pids limit with zombies over reuse; the engine's own words say what to fix.
        session.check_cancelled()
        raise InfraError(
            f"container {name}: could not start a warm builder ({_explained(exc)})"
        ) from exc
    session.set_fitted(container, _CPUS, env.cpuset or "")
    if env.cpuset is None:
        session.offer_cpus_witness(container)
    return container, name


def _create_started(
    session: BuildSession, spec: BuildSpec, env: BuildEnv, options: dict[str, Any]
) -> Any:
    """A started warm container (removed again when any step fails).

    Raises:
        docker.errors.APIError: the engine refused to create or start it.
        InfraError: any other failure of the engine.
    """
    api = session.client.api
    container = None
    try:
        container = session.client.containers.create(spec.image.image_id, **options)
        session.register(container)
        # attached before the start: a driver that dies before this leaves a container that
        # never ran (reaped), never one that idles with nobody to end it
        if session.lease_s > 0:
            lease = api.attach_socket(str(container.id), {"stdin": 1, "stream": 1})
            session.hold_lease(container, lease)
        container.start()
        if not spec.image.identity_linked:
            _put_identity(container, env)
        session.set_fitted(container, _HOME, env.home)
        return container
    except docker.errors.APIError:
        _drop(session, container)
        raise
    except (requests.RequestException, OSError, InfraError) as exc:
        _drop(session, container)
        session.check_cancelled()
        raise InfraError(f"container {options['name']}: could not start a warm builder") from exc


def _drop(session: BuildSession, container: Any) -> None:
    if container is not None:
        session.unregister(container)
        remove_container(container)


def _explained(exc: docker.errors.APIError) -> str:
    """The engine's own words, on one line."""
    said = exc.explanation
    if isinstance(said, bytes):
        said = said.decode(errors="replace")
    return " ".join(str(said or exc).split())


def _put_identity(container: Any, env: BuildEnv) -> None:
    """The build user's `/etc/passwd` and `/etc/group` (root's, mode 0644) in the container's
    `/etc` volume (an image whose identity files don't link to the runner's folder)."""
    from harness.build import identity_files

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in identity_files(env).items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    if not container.put_archive("/etc", buffer.getvalue()):
        raise InfraError(f"container {container.name}: could not write its /etc/passwd")


def first_engine_cpu(session: BuildSession) -> str:
    """The CPU the num_cpus variation pins (`FIRST_CPU`): the first of the engine's CPUs when
    the session knows them, else 0 (the first CPU of any engine that has it). An engine whose
    CPUs leave 0 out (a dockerd confined to 2-3) refuses it and names the CPUs it has
    (`learned_engine_cpus`): the caller asks again. No container is started only to ask."""
    known = session.engine_cpus
    return (first_cpu(known) if known else None) or "0"


_UNAVAILABLE = re.compile(
    r"Requested CPUs are not available - requested \S+, available: ([0-9,-]+)"
)


def learned_engine_cpus(session: BuildSession, exc: docker.errors.APIError) -> bool:
    """Whether `exc` is the engine refusing a cpuset it doesn't have, naming the CPUs it has
    ("Requested CPUs are not available - requested 0, available: 2-3"); they are kept as the
    session's `engine_cpus`, so `first_engine_cpu` now gives the first of them. False when it
    is another refusal, or names what the session already knew (no second try)."""
    found = _UNAVAILABLE.search(_explained(exc))
    if found is None or first_cpu(found.group(1)) is None:
        return False
    if session.engine_cpus == found.group(1):
        return False
    session.engine_cpus = found.group(1)
    return True


def first_cpu(cpus: str) -> str | None:
    """The first CPU of a cpuset list (`2-3,6` → `2`); None when it names none."""
    head = cpus.strip().split(",", 1)[0].split("-", 1)[0].strip()
    return head if head.isdigit() else None


def engine_cpus(session: BuildSession) -> str | None:
    """Every CPU a build may use on this engine, as a cpuset (`0-3`, or `2-3` on an engine
    confined to those): what the engine said refusing a cpuset (`learned_engine_cpus`), or
    the idle process of a container started without a cpuset said it has. None when no such
    container is left to ask."""
    known = session.engine_cpus
    if known is not None:
        return known
    witness = session.cpus_witness()
    deadline = time.monotonic() + _CPUS_WAIT_S
    while witness is not None:
        try:
            logs = bytes(witness.logs(stdout=True, stderr=False))
        except (docker.errors.APIError, requests.RequestException):
            return None
        for line in logs.decode(errors="replace").splitlines():
            if line.startswith("cpus=") and line[5:].strip():
                session.engine_cpus = line[5:].strip()
                return session.engine_cpus
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)  # the idle process starts with the container: it says it at once
    return None


class _Unfit(Exception):
    """A warm container can't be given what a build wants (see `_fit`)."""


def _fit(session: BuildSession, spec: BuildSpec, env: BuildEnv, container: Any, base: str) -> None:
    """Give `container` what build `env` varies that an exec can't: its cpuset (one engine call
    when it differs) and the build user's passwd line (HOME, one call when it differs).

    Raises:
        _Unfit: it must be widened to every CPU, and which CPUs those are is not known.
    """
    wanted = env.cpuset or ""
    if wanted == FIRST_CPU:
        wanted = first_engine_cpu(session)
    if session.fitted(container, _CPUS) != wanted:
        cpus = wanted or engine_cpus(session)
        if not cpus:
            raise _Unfit(base)
        try:
            session.client.api.update_container(container.id, cpuset_cpus=cpus)
        except docker.errors.APIError as exc:
            if env.cpuset == FIRST_CPU and learned_engine_cpus(session, exc):
                return _fit(session, spec, env, container, base)  # 0 is none of its CPUs
            session.check_cancelled()
            raise InfraError(f"container {base}: could not set its cpuset to {cpus}") from exc
        except requests.RequestException as exc:
            session.check_cancelled()
            raise InfraError(f"container {base}: could not set its cpuset to {cpus}") from exc
        session.set_fitted(container, _CPUS, wanted)
    if not spec.image.identity_linked and session.fitted(container, _HOME) != env.home:
        try:
            _put_identity(container, env)
        except (docker.errors.APIError, requests.RequestException) as exc:
            session.check_cancelled()
            raise InfraError(f"container {base}: could not write its /etc/passwd") from exc
        session.set_fitted(container, _HOME, env.home)


def _take_fitted(
    session: BuildSession, spec: BuildSpec, env: BuildEnv, key: Hashable
) -> tuple[Any, str, bool]:
    """A warm container fitted for build `env`: an idle one, else a new one. (container, name,
    whether it came from the pool)"""
    taken = session.take_idle(key)
    if taken is not None:
        base = str(taken.name).lstrip("/")
        try:
            _fit(session, spec, env, taken, base)
            return taken, base, True
        except _Unfit:  # a container of its own, with no cpuset, instead
            session.unregister(taken)
            remove_container(taken)
        except BaseException:
            session.unregister(taken)
            remove_container(taken)
            raise
    return (*_start_warm(session, spec, env), False)


def run_warm_build(
    session: BuildSession, spec: BuildSpec, env: BuildEnv, label: str, *, keep: bool = True
) -> BuildOutput:
    """`harness.build.run_build` in a warm container of the session (started when none idles).

    Raises:
        BuildCancelled: the session was cancelled before or while the build ran.
        ConfigError: the subject can't be read.
        InfraError: the engine failed.
    """
    from harness.build import build_exec_environment, collect_output

    session.check_cancelled()
    session.start_heartbeat()
    key = warm_key(spec, env)
    # read before any container is taken: an unreadable subject is the user's error
    archived = session.subject_archive(spec.subject, env.file_order == "reverse", _archive)
    with archived.open("rb") as subject:
        container, base, pooled = _take_fitted(session, spec, env, key)
        reusable = False
        number = session.next_name(label)[len(session.lab_id) + 1 :].split("-", 1)[0]
        out = f"/out/{number}-{label}"
        name = f"{base}:{number}-{label}"
        try:
            started = time.monotonic()
            environment = build_exec_environment(session, spec, env, out)
            user = f"{env.uid}:{env.gid}"
            with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as archive:
                try:
                    ran = _exec_runner(
                        session, spec, container, name, user, environment, subject, archive
                    )
                except _NotRunning as exc:
                    if not pooled:
                        raise InfraError(f"container {name}: stopped before the build") from exc
                    # an idle container that stopped (killed, the engine restarted) is unfit:
                    # a fresh one instead, nothing of the build ran yet
                    session.unregister(container)
                    remove_container(container)
                    container, base = _start_warm(session, spec, env)
                    name = f"{base}:{number}-{label}"
                    subject.seek(0)
                    started = time.monotonic()
                    try:
                        ran = _exec_runner(
                            session, spec, container, name, user, environment, subject, archive
                        )
                    except _NotRunning as again:
                        raise InfraError(f"container {name}: stopped before the build") from again
                duration = time.monotonic() - started
                out_dir = session.workdir / label
                if out_dir.exists():
                    out_dir = session.workdir / f"{number}-{label}"
                if ran.timed_out:
                    # killed mid-build or mid-stream: whatever came is not the output
                    archive.seek(0)
                    archive.truncate()
                try:
                    output, _ = collect_output(
                        container,
                        name,
                        label,
                        env,
                        duration,
                        ran.timed_out,
                        out_dir,
                        keep,
                        root=out,
                        archive=archive,
                    )
                except InfraError:
                    session.check_cancelled()
                    raise
            failed = not ran.timed_out and ran.exit_code not in (0, NOT_REUSABLE)
            if failed or (not ran.timed_out and output.setup_error is not None):
                # killed from outside (docker kill/stop, the engine restarting) is no verdict on
                # the subject, whatever came and whatever exit status the engine then gives
                # the exec (a false culprit in the search else)
                _check_running(session, container, name, ran.exit_code)
            if failed and output.setup_error is None:
                # the runner was killed (e.g. out of memory) after the build's exit code was
                # written: whatever came is not all of the output
                why = (
                    "the runner could not send its output"
                    if ran.exit_code == SEND_FAILED
                    else f"the runner exited with status {ran.exit_code}"
                )
                output = dataclasses.replace(output, setup_error=why)
            # Exit 0 comes only after a complete reset (NOT_REUSABLE: built, but not emptied);
            # the last line alone could be the build's: it may write on the runner's stderr.
            # Neither holds if the build could trace the runner (see the module docs).
            reusable = ran.untraceable and ran.reset and ran.exit_code == 0 and not ran.timed_out
            session.add_finished(output)
            return output
        finally:
            if reusable:
                session.give_back(key, container)
            else:
                session.discard([container])


@dataclass(frozen=True)
class _Ran:
    """How a warm build's exec ended."""

    timed_out: bool
    reset: bool
    """The runner's last stderr line said it emptied the container (see the module docs)."""
    exit_code: int | None = None
    """The runner's exit status (None: timed out)."""
    untraceable: bool = False
    """The runner's first stderr line said the build could not trace it."""


class _NotRunning(Exception):
    """The container had stopped before the build's exec could be created."""


class _Frames:
    """The exec's multiplexed stream (8-byte headers: stream, 0, 0, 0, size), split as it comes:
    stdout into `stdout`, the start (`first_line`) and the tail of stderr kept."""

    def __init__(self, stdout: IO[bytes]) -> None:
        self._stdout = stdout
        self._pending = bytearray()
        self._head = bytearray()
        self.stderr = bytearray()

    @property
    def first_line(self) -> bytes | None:
        """The first line on stderr (None: none came whole, or a longer one than any runner's)."""
        line, newline, _ = self._head.partition(b"\n")
        return bytes(line) if newline else None

    def feed(self, data: bytes) -> None:
        self._pending += data
        offset = 0
        while len(self._pending) - offset >= 8:
            kind = self._pending[offset]
            size = int.from_bytes(self._pending[offset + 4 : offset + 8], "big")
            end = offset + 8 + size
            if len(self._pending) < end:
                break
            payload = self._pending[offset + 8 : end]
            if kind == _STDOUT:
                self._stdout.write(payload)
            elif kind == _STDERR:
                self._head += payload[: _FIRST_LINE_KEPT - len(self._head)]
                self.stderr = (self.stderr + payload)[-_STDERR_KEPT:]
            offset = end
        del self._pending[:offset]


class _Stream:
    """An attached exec's connection, whatever carries it: a socket (unix, tcp, tls), or the
    pipes of an `ssh` process (`DOCKER_HOST=ssh://`, docker's `use_ssh_client`)."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        proc = getattr(raw, "proc", None)
        self._pipe = proc.stdout if proc is not None else None
        self._writer: Any = getattr(raw, "_sock", raw)

    def fileno(self) -> int:
        return int(self._pipe.fileno() if self._pipe is not None else self.raw.fileno())

    def read(self, size: int) -> bytes | None:
        """What came (b"" at the end; None: nothing yet, wait again)."""
        if self._pipe is not None:
            return bytes(self._pipe.read1(size))
        data = docker.utils.socket.read(self.raw, size)
        return None if data is None else bytes(data)

    def send_all(self, source: IO[bytes]) -> None:
        """`source` to the exec's stdin; the connection's end is left open (tar stops at the
        archive's end, and a TLS socket can't be half-closed)."""
        while chunk := source.read(256 * 1024):
            self._writer.sendall(chunk)

    def close(self) -> None:
        close_stream(self.raw)


def _exec_runner(
    session: BuildSession,
    spec: BuildSpec,
    container: Any,
    name: str,
    user: str,
    environment: dict[str, str],
    subject: IO[bytes],
    archive: IO[bytes],
) -> _Ran:
    """Run the build runner in `container` until it ends, `subject` on its stdin, its stdout
    (the output archive) into `archive`. A build past its timeout is killed with its
    container."""
    api = session.client.api
    try:
        exec_id = api.exec_create(
            container.id,
            [spec.image.runner_shell or "/bin/sh", "-c", RUNNER, "cihub-runner"],
            user=user,
            environment=environment,
            workdir="/",
            stdin=True,
            stdout=True,
            stderr=True,
        )["Id"]
        stream = _Stream(api.exec_start(exec_id, socket=True))
    except docker.errors.APIError as exc:
        session.check_cancelled()
        if exc.status_code == 409:  # "container ... is not running"
            raise _NotRunning(name) from exc
        raise InfraError(f"container {name}: lost the engine while building") from exc
    except requests.RequestException as exc:
        session.check_cancelled()
        raise InfraError(f"container {name}: lost the engine while building") from exc
    # A thread of its own: the runner may end (or fail) before it read everything, and the
    # driver must keep reading the stream and watching the clock meanwhile.
    sender = threading.Thread(
        target=_send_quietly, args=(stream, subject), name="cihub-subject", daemon=True
    )
    sender.start()
    frames = _Frames(archive)
    deadline = time.monotonic() + spec.timeout_s
    try:
        while True:
            session.check_cancelled()
            left = deadline - time.monotonic()
            if left <= 0:
                with contextlib.suppress(docker.errors.APIError, requests.RequestException):
                    container.kill()
                return _Ran(timed_out=True, reset=False)
            readable, _, _ = select.select([stream], [], [], min(_WAKE_S, left))
            if not readable:
                continue
            data = stream.read(256 * 1024)
            if data is None:  # interrupted (EINTR, EAGAIN): wait again
                continue
            if not data:  # the runner and everything it started are gone
                break
            frames.feed(data)
    except OSError as exc:
        session.check_cancelled()
        raise InfraError(f"container {name}: lost the engine while building") from exc
    finally:
        stream.close()
        sender.join(timeout=5)
    session.check_cancelled()
    exit_code = _exec_exit_code(session, exec_id, name)
    last = frames.stderr.rstrip().rsplit(b"\n", 1)[-1]
    untraceable = frames.first_line == UNTRACEABLE.encode()
    if not untraceable:
        _logger.debug("container %s: not reused, its runner could be traced", name)
    return _Ran(
        timed_out=False,
        reset=last.strip() == RESET_OK.encode(),
        exit_code=exit_code,
        untraceable=untraceable,
    )


def _exec_exit_code(session: BuildSession, exec_id: str, name: str) -> int:
    """How the runner's exec ended, once its stream did. A stream also ends when the engine's
    connection drops (ssh, a restarted engine): that is no end of the build, and must not read
    as the subject's failure.

    Raises:
        InfraError: the engine can't say, or says the exec still runs or has no exit status.
    """
    deadline = time.monotonic() + _EXIT_WAIT_S
    while True:
        try:
            state = session.client.api.exec_inspect(exec_id)
        except (docker.errors.APIError, requests.RequestException) as exc:
            session.check_cancelled()
            raise InfraError(f"container {name}: lost the engine while building") from exc
        code = state.get("ExitCode")
        if not state.get("Running") and isinstance(code, int):
            return code
        # the engine may record the exit a moment after the stream's end
        if time.monotonic() > deadline:
            raise InfraError(
                f"container {name}: the build's stream ended but its exec is still running"
                if state.get("Running")
                else f"container {name}: the engine gives the build's exec no exit status"
            )
        session.check_cancelled()
        time.sleep(0.02)


def _check_running(session: BuildSession, container: Any, name: str, code: int | None) -> None:
    """Raises InfraError when `container` no longer runs: its build was cut from outside.

    The engine records a killed container's exit a moment after its processes (the runner's
    exec, whose stream ended) are gone: a container that still runs is asked again for up to
    `_STOP_WAIT_S` (a wait only builds whose runner failed pay).
    """
    deadline = time.monotonic() + _STOP_WAIT_S
    while True:
        try:
            state = session.client.api.inspect_container(container.id).get("State") or {}
        except docker.errors.NotFound:
            state = {}
        except (docker.errors.APIError, requests.RequestException) as exc:
            session.check_cancelled()
            raise InfraError(f"container {name}: lost the engine while building") from exc
        if not state.get("Running"):
            break
        if time.monotonic() > deadline:
            return
        session.check_cancelled()
        time.sleep(0.02)
    _logger.debug("container %s: exec exit status %s, container state %s", name, code, state)
    session.check_cancelled()
    raise InfraError(
        f"container {name}: stopped from outside while building (the runner exited with "
        f"status {code})"
    )


def _send_quietly(stream: _Stream, subject: IO[bytes]) -> None:
    # a runner that stopped reading ends the exec: what it did is in the stream
    with contextlib.suppress(OSError, ValueError):
        stream.send_all(subject)
