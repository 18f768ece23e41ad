"""Warm builder containers: start a builder once, run many builds in it with `docker exec`.

Starting a container costs about 0.35 s on this engine (0.7 s with create and remove), more than
many builds take, and the culprit search runs a dozen builds. A warm container is created with
exactly a cold build's options (`harness.build.container_options`: the same hardening, mounts,
limits and tmpfs folders) but idles (`IDLE`) instead of building; each build is one `docker
exec` of the build runner as the build user, with its own output folder `/out/<n>`. The runner
copies the subject afresh into the build path and, after collecting, writes the output folder
as a tar archive on the exec's stdout, then ends the processes the build left and empties every
folder it could write (`/build`, HOME, /tmp, /var/tmp, /dev/shm); only a container whose reset
succeeded goes back to the session's pool.

One build is two engine calls: create the exec and start it attached. The driver reads the
exec's multiplexed stream until it ends (the runner exited): stdout is the output archive,
the last stderr line says whether the reset succeeded. No polling, so no latency between the
end of a build and the driver seeing it, and no archive request afterwards (one is made only
when the stream carried none: the runner stopped before collecting).

What an exec can't change decides which container a build goes to (`warm_key`): the hostname
and domain name (domain_host), the build user (user_group: the writable tmpfs folders are its
own), the seccomp profile (aslr). Everything else is set per build: build path, file order,
clock, umask, environment, locale and time zone by the runner; HOME (home) by the runner too, in
a tmpfs mounted at its parent folder (`/home`), with the build user's `/etc/passwd` line
rewritten in place before the exec; the cpuset (num_cpus) with one `docker update` when it
differs from the container's. disorderfs builds (root, FUSE) always get a container of their
own (`harness.build.run_build`).

The idle script exits when the driver's lease goes stale, as a build's watchdog does, so warm
containers die with their driver too; `BuildSession.close()` removes them.
"""

from __future__ import annotations

import contextlib
import select
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Hashable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, TYPE_CHECKING, Any

import docker
import docker.errors
import docker.utils.socket
import requests

from harness._internal.build_runner import IDLE, RUNNER
from harness.build_session import BuildSession, remove_container
from harness.errors import InfraError
from harness.variations import BuildEnv

if TYPE_CHECKING:
    from harness.build import BuildOutput, BuildSpec

RESET_OK = "reset-ok"
"""The runner's mark that it emptied the container after the build (see the module docs)."""
_WAKE_S = 0.25
"""How often a driver waiting on a build's stream checks for cancellation and the timeout."""
_STDOUT, _STDERR = 1, 2
_STDERR_KEPT = 4096


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


def all_cpus(spec: BuildSpec) -> str:
    """The cpuset of a build that may use every CPU (warm containers always have one set)."""
    cpus = spec.image.capabilities.cpus
    return "0" if cpus <= 1 else f"0-{cpus - 1}"


def prewarm(session: BuildSession, spec: BuildSpec, envs: Iterable[BuildEnv], workers: int) -> int:
    """Start, in the background, the warm containers builds in `envs` will want, at most
    `workers` per key, less those idle or already starting: work that would otherwise wait
    (e.g. the culprit search's containers while diffoscope runs). Returns how many it starts.
    """
    session.start_heartbeat()  # the containers mount the lease folder it makes
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


def _start_warm(session: BuildSession, spec: BuildSpec, env: BuildEnv) -> tuple[Any, str]:
    from harness.build import container_options

    name = session.next_name("warm")
    mounts = session.workdir / ".mounts" / name
    options = container_options(session, spec, env, "warm", name, mounts)
    lease = str(session.lease_s) if session.lease_s > 0 and session.lease_dir.is_dir() else ""
    options["command"] = ["/bin/sh", "-c", IDLE, "cihub-warm"]
    options["environment"] = {"LEASE_S": lease}
    # HOME is made per build inside a tmpfs at its parent; the cpuset is set per build
    options["tmpfs"] = {
        (home_root(env) if path == env.home else path): flags
        for path, flags in options["tmpfs"].items()
    }
    options["cpuset_cpus"] = env.cpuset or all_cpus(spec)
    try:
        container = session.client.containers.create(spec.image.image_id, **options)
        session.register(container)
        container.start()
    except (docker.errors.APIError, requests.RequestException) as exc:
        session.check_cancelled()
        raise InfraError(f"container {name}: could not start a warm builder") from exc
    session.set_cpuset(container, options["cpuset_cpus"])
    return container, name


def _fit(session: BuildSession, spec: BuildSpec, env: BuildEnv, container: Any, base: str) -> None:
    """Give `container` what build `env` varies that an exec can't: its cpuset (one engine call
    when it differs) and the build user's passwd line (HOME), rewritten in place (same inode,
    so the read-only bind mount shows it)."""
    from harness.build import write_identity_files

    wanted = env.cpuset or all_cpus(spec)
    if session.cpuset_of(container) != wanted:
        try:
            session.client.api.update_container(container.id, cpuset_cpus=wanted)
        except (docker.errors.APIError, requests.RequestException) as exc:
            session.check_cancelled()
            raise InfraError(f"container {base}: could not set its cpuset to {wanted}") from exc
        session.set_cpuset(container, wanted)
    write_identity_files(env, session.workdir / ".mounts" / base)


def run_warm_build(
    session: BuildSession, spec: BuildSpec, env: BuildEnv, label: str, *, keep: bool = True
) -> BuildOutput:
    """`harness.build.run_build` in a warm container of the session (started when none idles).

    Raises:
        BuildCancelled: the session was cancelled before or while the build ran.
        InfraError: the engine failed.
    """
    from harness.build import build_exec_environment, collect_output

    session.check_cancelled()
    session.start_heartbeat()
    key = warm_key(spec, env)
    taken = session.take_idle(key)
    container, base = (taken, str(taken.name).lstrip("/")) if taken is not None else (None, "")
    if container is None:
        container, base = _start_warm(session, spec, env)
    reusable = False
    try:
        _fit(session, spec, env, container, base)
    except BaseException:
        session.unregister(container)
        remove_container(container)
        raise
    number = session.next_name(label)[len(session.lab_id) + 1 :].split("-", 1)[0]
    out = f"/out/{number}-{label}"
    name = f"{base}:{number}-{label}"
    try:
        started = time.monotonic()
        environment = build_exec_environment(session, spec, env, out)
        user = f"{env.uid}:{env.gid}"
        with tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024) as archive:
            ran = _exec_runner(session, spec, container, name, user, environment, archive)
            duration = time.monotonic() - started
            out_dir = session.workdir / label
            if out_dir.exists():
                out_dir = session.workdir / f"{number}-{label}"
            streamed = archive if archive.tell() else None
            try:
                output, meta = collect_output(
                    container,
                    name,
                    label,
                    env,
                    duration,
                    ran.timed_out,
                    out_dir,
                    keep,
                    root=out,
                    archive=streamed,
                )
            except InfraError:
                session.check_cancelled()
                raise
        reusable = (ran.reset or RESET_OK in meta) and not ran.timed_out
        session.add_finished(output)
        return output
    finally:
        if reusable:
            session.give_back(key, container)
        else:
            session.unregister(container)
            remove_container(container)


@dataclass(frozen=True)
class _Ran:
    """How a warm build's exec ended."""

    timed_out: bool
    reset: bool
    """The runner's last stderr line said it emptied the container (see the module docs)."""


class _Frames:
    """The exec's multiplexed stream (8-byte headers: stream, 0, 0, 0, size), split as it comes:
    stdout into `stdout`, the tail of stderr kept."""

    def __init__(self, stdout: IO[bytes]) -> None:
        self._stdout = stdout
        self._pending = bytearray()
        self.stderr = bytearray()

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
                self.stderr = (self.stderr + payload)[-_STDERR_KEPT:]
            offset = end
        del self._pending[:offset]


def _exec_runner(
    session: BuildSession,
    spec: BuildSpec,
    container: Any,
    name: str,
    user: str,
    environment: dict[str, str],
    archive: IO[bytes],
) -> _Ran:
    """Run the build runner in `container` until it ends, its stdout (the output archive) into
    `archive`. A build past its timeout is killed with its container."""
    api = session.client.api
    try:
        exec_id = api.exec_create(
            container.id,
            ["/bin/sh", "-c", RUNNER, "cihub-runner"],
            user=user,
            environment=environment,
            workdir="/",
            stdout=True,
            stderr=True,
        )["Id"]
        stream = api.exec_start(exec_id, socket=True)
    except (docker.errors.APIError, requests.RequestException) as exc:
        session.check_cancelled()
        raise InfraError(f"container {name}: lost the engine while building") from exc
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
            data = docker.utils.socket.read(stream, 256 * 1024)
            if data is None:  # interrupted (EINTR, EAGAIN): wait again
                continue
            if not data:  # the runner and everything it started are gone
                break
            frames.feed(data)
    except OSError as exc:
        session.check_cancelled()
        raise InfraError(f"container {name}: lost the engine while building") from exc
    finally:
        with contextlib.suppress(OSError):
            stream.close()
    session.check_cancelled()
    last = frames.stderr.rstrip().rsplit(b"\n", 1)[-1]
    return _Ran(timed_out=False, reset=last.strip() == RESET_OK.encode())
