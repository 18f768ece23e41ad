"""A build session: labels, names, scratch space, the driver's lease, and cancellation.

Every container a drill starts belongs to one `BuildSession`, and dies with the driver:
a warm container's idle process exits when the stdin stream the session holds open ends
(`hold_lease`: the driver's process ended, killed too); for one-off builds the session touches a
lease file every `HEARTBEAT_S` seconds and the watchdog in each container stops the build when
the lease is older than `LEASE_S`. `reap_stale_builds`, run before a session's first build,
removes what such drivers left. `cancel()` stops every
container of the session at once, from any thread; `run_parallel` calls it when Ctrl-C (or
SIGTERM turned into KeyboardInterrupt) arrives while builds run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import docker
import docker.errors
import requests

from lab import labels
from lab.config import new_lab_id

if TYPE_CHECKING:
    from harness.build import BuildOutput

_logger = logging.getLogger(__name__)

HEARTBEAT_S = 2.0
"""How often a session touches its lease file while builds may run."""
LEASE_S = 12
"""A build whose lease is older than this (seconds) is abandoned: its watchdog kills it."""


class BuildCancelled(KeyboardInterrupt):
    """The session was cancelled (`BuildSession.cancel()`, Ctrl-C or SIGTERM) while builds ran.

    A KeyboardInterrupt, so whoever stops on Ctrl-C stops on it too."""


@dataclass
class BuildSession:
    """Labels, names, scratch space, lease and cancellation of the containers one drill starts.

    Every container is labelled with `lab_id` and `session`; `close()` removes whatever is left
    by label, so a crash mid-build leaves nothing behind (and `cihub lab down` finds leftovers
    of a killed process as a stale lab). While builds may run, a heartbeat thread touches the
    lease file the containers' watchdogs read (see the module docs).

    `cancel()` is thread-safe and idempotent: it stops and removes every build container of the
    session at once, and makes every build running or started later raise `BuildCancelled`.
    """

    client: docker.DockerClient
    workdir: Path
    lab_id: str = field(default_factory=lambda: new_lab_id("det"))
    session: str = field(default_factory=lambda: str(uuid.uuid4()))
    lease_s: int = LEASE_S
    warm: bool = True
    """Reuse builder containers between builds (`harness.build_warm`); False: one per build."""
    reuse: bool = True
    """A warm container may run another build after the one under way, so each warm build
    ends by emptying it. False when no build follows (a drill with no culprit search): the
    runner skips that reset and the container goes once its build is collected."""
    _counter: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _finished: list[BuildOutput] = field(default_factory=list)
    _containers: dict[str, Any] = field(default_factory=dict)
    _cancelled: threading.Event = field(default_factory=threading.Event)
    _closed: threading.Event = field(default_factory=threading.Event)
    _idle: dict[Hashable, list[Any]] = field(default_factory=dict)
    _pending: dict[Hashable, list[Future[Any]]] = field(default_factory=dict)
    _heartbeat: threading.Thread | None = None
    _started: bool = False
    _background_slots: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(2))
    """Removals and the reap run two at a time beside the builds (`_in_background`)."""
    _releasing: list[threading.Thread] = field(default_factory=list)
    _fitted: dict[tuple[str, str], str] = field(default_factory=dict)
    _leases: dict[str, Any] = field(default_factory=dict)
    _cpus_witness: Any = None
    engine_cpus: str | None = None
    """Every CPU of the engine as a cpuset, once known (`harness.build_warm.engine_cpus`)."""
    host_paths_seen: bool = False
    """The engine sees this machine's folders (`harness.build.check_host_paths`)."""
    _subjects: dict[tuple[str, bool], Path] = field(default_factory=dict)
    _subject_locks: dict[tuple[str, bool], threading.Lock] = field(default_factory=dict)

    def subject_archive(
        self, subject: Path, reverse: bool, write: Callable[[Path, IO[bytes], bool], None]
    ) -> Path:
        """The archive `write` makes of `subject` in `reverse` order, made once per session:
        every build of a drill gets the same snapshot of the subject (and reads it once per
        file order, not once per build). Kept in the scratch folder.

        Raises:
            whatever `write` raises (nothing is kept then).
        """
        key = (str(subject), reverse)
        with self._lock:
            lock = self._subject_locks.setdefault(key, threading.Lock())
        with lock:
            made = self._subjects.get(key)
            if made is not None:
                return made
            folder = self.workdir / ".subjects"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{'reverse' if reverse else 'forward'}-{len(self._subject_locks)}.tar"
            partial = path.with_name(path.name + ".partial")
            try:
                with partial.open("wb") as sink:
                    write(subject, sink, reverse)
                partial.replace(path)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            self._subjects[key] = path
            return path

    def next_name(self, label: str) -> str:
        with self._lock:
            self._counter += 1
            return f"{self.lab_id}-{self._counter:03d}-{label}"

    def add_finished(self, build: BuildOutput) -> None:
        with self._lock:
            self._finished.append(build)

    def take_finished(self) -> list[BuildOutput]:
        """The builds finished since the last call (for the audit log), in finishing order."""
        with self._lock:
            taken, self._finished = self._finished, []
            return taken

    # -- warm containers ------------------------------------------------------------------------

    def take_idle(self, key: Hashable) -> Any | None:
        """An idle warm container made for `key`, now busy (None when there is none); one still
        starting in the background (`add_pending`) is waited for."""
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                return idle.pop()
            pending = self._pending.get(key)
            future = pending.pop() if pending else None
        if future is None:
            return None
        try:
            return future.result()
        except Exception as exc:  # a failed start in the background: the build starts its own
            _logger.info("a warm container did not start in the background: %s", exc)
            return None

    def add_pending(self, key: Hashable, future: Future[Any]) -> None:
        """A warm container for `key` starting in the background (see `take_idle`)."""
        with self._lock:
            self._pending.setdefault(key, []).append(future)

    def ready(self, key: Hashable) -> int:
        """Warm containers for `key` idle or starting."""
        with self._lock:
            return len(self._idle.get(key, ())) + len(self._pending.get(key, ()))

    def give_back(self, key: Hashable, container: Any) -> None:
        """Make a reset warm container idle again (removed instead once the session ends)."""
        with self._lock:
            keep = not (self._cancelled.is_set() or self._closed.is_set())
            if keep:
                self._idle.setdefault(key, []).append(container)
        if not keep:
            self.unregister(container)
            remove_container(container)

    def fitted(self, container: Any, aspect: str) -> str | None:
        """What a warm container was last given for `aspect` (its cpuset, HOME: `set_fitted`)."""
        with self._lock:
            return self._fitted.get((container.id, aspect))

    def set_fitted(self, container: Any, aspect: str, value: str) -> None:
        with self._lock:
            self._fitted[(container.id, aspect)] = value

    def offer_cpus_witness(self, container: Any) -> None:
        """A warm container started with no cpuset: its idle process says which CPUs are
        every CPU (`harness.build_warm.engine_cpus`); the first one offered is kept."""
        with self._lock:
            if self._cpus_witness is None:
                self._cpus_witness = container

    def cpus_witness(self) -> Any | None:
        with self._lock:
            return self._cpus_witness

    def hold_lease(self, container: Any, stream: Any) -> None:
        """Keep a warm container's attached stdin open: it ends when this process does, and the
        container with it (`harness.build_warm`). Closed when the container is unregistered."""
        with self._lock:
            self._leases[container.id] = stream

    def release(self) -> None:
        """No build follows for now: remove the idle warm containers in the background, while
        the caller goes on (diffoscope, evidence); `close()` waits for it. A later build starts
        a container of its own."""
        with self._lock:
            idle = [container for pool in self._idle.values() for container in pool]
            self._idle.clear()
        self.discard(idle)

    def discard(self, containers: Sequence[Any]) -> None:
        """Remove containers no build will use again in the background (their builds are
        collected: nobody waits for the removal); `close()` waits for it."""
        for container in containers:
            self.unregister(container)
        for container in containers:
            self._in_background(remove_container, container)

    def _in_background(self, work: Callable[..., Any], *args: Any) -> None:
        """Run `work` on the session's background workers, or now once the session is closed;
        `close()` waits for it."""
        with self._lock:
            if self._submit(work, *args):
                return
        work(*args)

    def settle(self, within_s: float = 60.0) -> None:
        """Wait for the removals (and the reap) handed to the background so far, `within_s`
        seconds at most in all (a wedged engine: the label sweep of `close()` follows)."""
        with self._lock:
            releasing, self._releasing = self._releasing, []
        deadline = time.monotonic() + within_s
        for thread in releasing:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _submit(self, work: Callable[..., Any], *args: Any) -> bool:
        """(The lock held.) Run `work` in the background, at most two at a time (removals must
        not crowd out the builds), in daemon threads (a wedged engine never holds up this
        process's exit); False once the session is closed."""
        if self._closed.is_set():
            return False
        thread = threading.Thread(
            target=self._bounded, args=(work, *args), name="cihub-release", daemon=True
        )
        thread.start()
        self._releasing.append(thread)
        return True

    def _bounded(self, work: Callable[..., Any], *args: Any) -> None:
        with self._background_slots:
            try:
                work(*args)
            except Exception as exc:  # a removal the label sweep of `close()` will retry
                _logger.warning("%s in the background failed: %s", work.__name__, exc)

    # -- lease ----------------------------------------------------------------------------------

    @property
    def lease_dir(self) -> Path:
        """The folder holding the lease file `beat`, mounted read-only in every build."""
        return self.workdir / ".lease"

    def start_heartbeat(self) -> None:
        """Before the first build: reap what dead drivers left (in the background: their
        containers are no concern of this drill's, which starts its own meanwhile; `close()`
        waits for it), then touch the lease file now and every `HEARTBEAT_S` seconds until
        `close()` (no lease when `lease_s` is 0)."""
        with self._lock:
            if self._started:
                return
            self._started = True
            if os.environ.get("CIHUB_REAP_STALE_BUILDS", "1") != "0":
                self._submit(reap_stale_builds, self.client)  # what killed drivers left
            if self.lease_s <= 0:
                return
            self.lease_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
            os.chmod(self.lease_dir, 0o755)
            self._beat()
            self._heartbeat = threading.Thread(
                target=self._beat_until_closed, name="cihub-lease", daemon=True
            )
            self._heartbeat.start()

    def _beat(self) -> None:
        beat = self.lease_dir / "beat"
        try:
            beat.touch(mode=0o644)
            os.utime(beat)
        except OSError as exc:
            _logger.warning("lease %s not renewed: %s", beat, exc)

    def _beat_until_closed(self) -> None:
        while not self._closed.wait(HEARTBEAT_S):
            self._beat()

    # -- cancellation ---------------------------------------------------------------------------

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def check_cancelled(self) -> None:
        """Raise `BuildCancelled` when the session was cancelled."""
        if self._cancelled.is_set():
            raise BuildCancelled("the builds were cancelled")

    def wait_cancelled(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking at once on `cancel()`; True when cancelled."""
        return self._cancelled.wait(seconds)

    def register(self, container: Any) -> None:
        """Track a created build container; a cancelled session removes it and raises."""
        with self._lock:
            cancelled = self._cancelled.is_set()
            if not cancelled:
                self._containers[container.id] = container
        if cancelled:
            remove_container(container)
            self.check_cancelled()

    def unregister(self, container: Any) -> None:
        with self._lock:
            self._containers.pop(container.id, None)
            lease = self._leases.pop(container.id, None)
        if lease is not None:
            close_stream(lease)

    def cancel(self) -> None:
        """Stop and remove every build container of the session now (any thread, any time).

        Builds waiting on a container return at once and raise `BuildCancelled`; builds not
        yet started never start.
        """
        with self._lock:
            self._cancelled.set()
            running = list(self._containers.values())
        if running:
            _logger.info("cancelling %d build container(s)", len(running))
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="cihub-cancel") as pool:
            list(pool.map(remove_container, running))

    def close(self) -> None:
        """Stop the heartbeat and remove every container of this drill that is still there."""
        self._closed.set()
        with self._lock:
            self._idle.clear()
            pending = [f for futures in self._pending.values() for f in futures]
            self._pending.clear()
        for future in pending:  # so none is created after the sweep below
            with contextlib.suppress(Exception):
                future.result(timeout=60)
        self.settle()  # removals under way are not raced by the sweep
        with self._lock:
            leases, self._leases = list(self._leases.values()), {}
        for lease in leases:  # their containers stop (the sweep below removes them)
            close_stream(lease)
        selector: dict[str, str | list[str] | bool] = {
            "label": [f"{labels.MANAGED}=true", f"{labels.LAB}={self.lab_id}"]
        }
        try:
            leftovers = self.client.containers.list(all=True, filters=selector)
        except (docker.errors.APIError, requests.RequestException) as exc:
            _logger.warning("could not list the containers of %s: %s", self.lab_id, exc)
            return
        _remove_all(leftovers)

    def __enter__(self) -> BuildSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _remove_all(containers: Sequence[Any]) -> None:
    if len(containers) == 1:
        remove_container(containers[0])
    elif containers:
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="cihub-remove") as pool:
            list(pool.map(remove_container, containers))


def close_stream(raw: Any) -> None:
    """Close an attached connection for good: its socket is shut down, so the engine sees the
    end even while another object still holds the file descriptor."""
    sock = getattr(raw, "_sock", raw)
    with contextlib.suppress(OSError, AttributeError):
        if isinstance(sock, socket.socket):
            sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        raw.close()


def remove_container(container: Any) -> None:
    with contextlib.suppress(docker.errors.APIError, requests.RequestException):
        container.remove(force=True, v=True)


def reap_stale_builds(client: docker.DockerClient, owner_pid: int | None = None) -> list[str]:
    """Remove the build and probe containers whose driver process on this host is gone.

    The watchdog already stopped their builds (or they exited); this removes what is left.
    Containers of live drivers and of other hosts are never touched. Every session runs it
    before its first build unless `CIHUB_REAP_STALE_BUILDS=0`.

    Args:
        owner_pid: only the containers of that (dead) driver process.

    Returns:
        the names of the containers removed.
    """
    selector = [f"{labels.MANAGED}=true"]
    if owner_pid is not None:
        selector.append(f"{labels.OWNER_PID}={owner_pid}")
    try:
        found = client.containers.list(all=True, filters={"label": selector})
    except (docker.errors.APIError, requests.RequestException) as exc:
        _logger.warning("could not list build containers to reap: %s", exc)
        return []
    removed = []
    for container in found:
        container_labels = dict(container.labels or {})
        service = str(container_labels.get(labels.SERVICE, ""))
        if service.startswith(("build-", "probe")) and labels.is_stale(container_labels):
            remove_container(container)
            removed.append(str(container.name))
    if removed:
        _logger.info("reaped %d build container(s) of drivers that are gone", len(removed))
    return removed


def run_parallel(
    session: BuildSession, jobs: Sequence[Callable[[], BuildOutput]], workers: int
) -> list[BuildOutput]:
    """Run build jobs `workers` at a time, started in list order; their results in that order.

    On any exception while waiting (KeyboardInterrupt from Ctrl-C, SIGTERM turned into it, or a
    failed build), the session is cancelled first, so every running container stops at once
    instead of at its build timeout, and the exception is raised after the threads finished.
    """
    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="cihub-build")
    try:
        futures = [pool.submit(job) for job in jobs]
        return [future.result() for future in futures]
    except BaseException:
        session.cancel()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
