"""Warm builder containers: start a builder once, run many builds in it with `docker exec`.

Starting a container costs about 0.35 s on this engine (0.7 s with create and remove), more than
many builds take, and the culprit search runs a dozen builds. A warm container is created with
exactly a cold build's options (`harness.build.container_options`: the same hardening, mounts,
limits and tmpfs folders) but idles (`IDLE`) instead of building; each build is one `docker
exec` of the build runner as the build user, with its own output folder `/out/<n>`. The runner
copies the subject afresh into the build path and, after collecting, ends the processes the
build left and empties every folder it could write (`/build`, HOME, /tmp, /var/tmp, /dev/shm);
only a container whose reset succeeded goes back to the session's pool.

What an exec can't change decides which container a build goes to (`warm_key`): the hostname
and domain name (domain_host), the cpuset (num_cpus), the build user and its identity files
(user_group), the HOME tmpfs (home), the seccomp profile (aslr). Everything else (build path,
file order, clock, umask, environment, locale, time zone) is set per build. disorderfs builds
(root, FUSE) always get a container of their own (`harness.build.run_build`).

The idle script exits when the driver's lease goes stale, as a build's watchdog does, so warm
containers die with their driver too; `BuildSession.close()` removes them.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Hashable, Iterable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import docker
import docker.errors
import requests

from harness._internal.build_runner import IDLE, RUNNER
from harness.build_session import BuildSession, remove_container
from harness.errors import InfraError
from harness.variations import BuildEnv

if TYPE_CHECKING:
    from harness.build import BuildOutput, BuildSpec

RESET_OK = "reset-ok"
"""The runner's mark that it emptied the container after the build (see the module docs)."""
_POLL_FIRST_S = 0.02
_POLL_MAX_S = 0.25


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
        env.cpuset,
        env.user,
        env.group,
        env.uid,
        env.gid,
        env.home,
        env.aslr,
    )


def prewarm(session: BuildSession, spec: BuildSpec, envs: Iterable[BuildEnv], workers: int) -> int:
    """Start, in the background, the warm containers builds in `envs` will want, at most
    `workers` per key, less those idle or already starting: work that would otherwise wait
    (e.g. the culprit search's containers while diffoscope runs). Returns how many it starts.
    """
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
    try:
        container = session.client.containers.create(spec.image.image_id, **options)
        session.register(container)
        container.start()
    except (docker.errors.APIError, requests.RequestException) as exc:
        session.check_cancelled()
        raise InfraError(f"container {name}: could not start a warm builder") from exc
    return container, name


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
    number = session.next_name(label)[len(session.lab_id) + 1 :].split("-", 1)[0]
    out = f"/out/{number}-{label}"
    name = f"{base}:{number}-{label}"
    reusable = False
    try:
        started = time.monotonic()
        environment = build_exec_environment(session, spec, env, out)
        user = f"{env.uid}:{env.gid}"
        timed_out = _exec_runner(session, spec, container, name, user, environment)
        duration = time.monotonic() - started
        out_dir = session.workdir / label
        if out_dir.exists():
            out_dir = session.workdir / f"{number}-{label}"
        try:
            output, meta = collect_output(
                container, name, label, env, duration, timed_out, out_dir, keep, root=out
            )
        except InfraError:
            session.check_cancelled()
            raise
        reusable = RESET_OK in meta and not timed_out
        session.add_finished(output)
        return output
    finally:
        if reusable:
            session.give_back(key, container)
        else:
            session.unregister(container)
            remove_container(container)


def _exec_runner(
    session: BuildSession,
    spec: BuildSpec,
    container: Any,
    name: str,
    user: str,
    environment: dict[str, str],
) -> bool:
    """Run the build runner in `container` until it ends; True when it hit the build timeout."""
    api = session.client.api
    try:
        exec_id = api.exec_create(
            container.id,
            ["/bin/sh", "-c", RUNNER, "cihub-runner"],
            user=user,
            environment=environment,
            workdir="/",
        )["Id"]
        api.exec_start(exec_id, detach=True)
        started = time.monotonic()
        delay = _POLL_FIRST_S
        while True:
            state = api.exec_inspect(exec_id)
            if not state.get("Running") and state.get("ExitCode") is not None:
                return False
            if time.monotonic() - started > spec.timeout_s:
                with contextlib.suppress(docker.errors.APIError, requests.RequestException):
                    container.kill()
                return True
            if session.wait_cancelled(delay):
                session.check_cancelled()
            delay = min(delay * 1.5, _POLL_MAX_S)
    except (docker.errors.APIError, requests.RequestException) as exc:
        session.check_cancelled()
        raise InfraError(f"container {name}: lost the engine while building") from exc
