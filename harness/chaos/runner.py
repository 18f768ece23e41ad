"""The safe runner: chaostoolkit-lib's `run_experiment` with its traps fixed.

- The experiment is validated first (`harness.chaos.experiment`): nothing runs when a provider,
  function or argument is wrong.
- Rollbacks are always played (strategy `always`), after a failure, an unmet hypothesis or a
  signal; then the lab is swept (`restore_lab`): a toxic or a frozen container still there
  after the rollbacks is removed and counted as a failure of the drill.
- The method stops at its first failed activity: the run's event handler marks the journal
  interrupted, which ends chaoslib's activity loop (a control would do the same at twice the
  cost of a whole no-op run: chaoslib deep-copies every control at every level).
- The verdict is read from the journal, never from its status (chaoslib says `completed` when
  the before hypothesis failed): pass only if the before hypothesis held, a fault check proved
  the fault in effect, every method activity ran and succeeded, the after hypothesis held (or,
  for a negative twin, did not) and every rollback succeeded.
- The lab is given as `configuration` (the lab variables), never through `os.environ`.
- SIGINT and SIGTERM (chaoslib turns SIGTERM into an interruption of its own) stop the
  hypothesis or method where it is; the rollbacks are played, a second signal waits for them.
  One process-wide handler (`_dispatch`) hands both to the guard of the run in progress; see
  `_SignalGuard` for how it is put in place without a `signal.signal` call per run.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # the C half of `signal`; see _route
import functools
import importlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Literal

import chaoslib.exit  # type: ignore[import-untyped]
import docker.errors
import requests
from chaoslib.exceptions import ActivityFailed  # type: ignore[import-untyped]
from chaoslib.experiment import run_experiment  # type: ignore[import-untyped]
from chaoslib.run import RunEventHandler  # type: ignore[import-untyped]
from chaoslib.types import Strategy  # type: ignore[import-untyped]

from harness.chaos.actions import FAULTABLE_SERVICES, lab_container, reset_toxics, start_container
from harness.chaos.experiment import Experiment
from harness.chaos.probes import FAULT_CHECK_MARK
from harness.chaos.vars import need
from harness.errors import ConfigError
from lab.errors import LabError
from lab.toxiproxy import ToxiproxyClient

_logger = logging.getLogger(__name__)

Phase = Literal["met", "not-met", "skipped", "not-run"]
SETTINGS: Mapping[str, Any] = {
    "runtime": {"rollbacks": {"strategy": "always"}, "hypothesis": {"strategy": "default"}}
}
"""chaostoolkit-lib settings of every safe run: rollbacks always played."""


@dataclass(frozen=True)
class ChaosOutcome:
    """How an experiment went, phase by phase, judged against its expectation.

    Attributes:
        experiment: the experiment (its title, file and expectation).
        journal: chaostoolkit-lib's journal, as it returned it.
        hypothesis_before, hypothesis_after: met, not-met, skipped (none declared) or not-run.
        fault_verified: a fault check in the method succeeded (None: the method has none).
        method_ran: every method activity ran and succeeded.
        rollbacks_declared, rollbacks_played, rollbacks_failed: the experiment's rollbacks.
        left_behind: what the sweep after the rollbacks still found (toxics, frozen containers).
        faults: the faults the method applied, e.g. `toxic:latency on registry`.
        failed_activity: the first method activity that failed, with its error.
        signal: the signal that interrupted the run, if any.
        recovery_s: seconds from the method's end to the after hypothesis holding.
    """

    experiment: Experiment
    journal: Mapping[str, Any] = field(hash=False)
    hypothesis_before: Phase
    hypothesis_after: Phase
    fault_verified: bool | None
    method_ran: bool
    rollbacks_declared: int
    rollbacks_played: int
    rollbacks_failed: int
    left_behind: tuple[str, ...] = ()
    faults: tuple[str, ...] = ()
    failed_activity: str | None = None
    signal: int | None = None
    recovery_s: float | None = None

    @property
    def status(self) -> str:
        return str(self.journal.get("status", "unknown"))

    @property
    def problems(self) -> tuple[str, ...]:
        """Why the run does not meet its expectation (empty when it does)."""
        found: list[str] = []
        if self.signal is not None:
            found.append(f"interrupted by {signal.Signals(self.signal).name}")
        if self.hypothesis_before != "met":
            found.append(f"the before hypothesis was {self.hypothesis_before}")
        if self.fault_verified is None:
            found.append("no fault check in the method: the fault was never shown in effect")
        elif not self.fault_verified:
            found.append("the fault was not verified in effect")
        if not self.method_ran:
            found.append(f"the method did not run through: {self.failed_activity or 'interrupted'}")
        wanted: Phase = "met" if self.experiment.expect == "steady-state-holds" else "not-met"
        if self.hypothesis_before == "met" and self.hypothesis_after != wanted:
            found.append(f"the after hypothesis was {self.hypothesis_after}, expected {wanted}")
        if self.rollbacks_played < self.rollbacks_declared:
            found.append(
                f"{self.rollbacks_played} of {self.rollbacks_declared} rollbacks were played"
            )
        if self.rollbacks_failed:
            found.append(f"{self.rollbacks_failed} rollback(s) failed")
        if self.left_behind:
            found.append(f"left behind after the rollbacks: {', '.join(self.left_behind)}")
        return tuple(found)

    @property
    def met(self) -> bool:
        return not self.problems

    @property
    def observed(self) -> str:
        """One word for the record: what happened to the steady state (or what broke first)."""
        if self.signal is not None:
            return "cancelled"
        if self.hypothesis_before != "met":
            return "before-hypothesis-not-met"
        if not self.fault_verified:
            return "fault-not-verified"
        if not self.method_ran:
            return "method-failed"
        if self.rollbacks_failed or self.rollbacks_played < self.rollbacks_declared:
            return "rollback-failed"
        if self.left_behind:
            return "fault-left-behind"
        return "steady-state-held" if self.hypothesis_after == "met" else "steady-state-failed"

    def record_json(self, journal_path: str | None = None) -> dict[str, Any]:
        """The pipeline_run v1.4 `chaos` object."""
        value: dict[str, Any] = {
            "experiment": self.experiment.title,
            "status": self.status,
            "hypothesis_before": self.hypothesis_before,
            "fault_verified": self.fault_verified,
            "method_ran": self.method_ran,
            "hypothesis_after": self.hypothesis_after,
            "rollbacks": {"played": self.rollbacks_played, "failed": self.rollbacks_failed},
            "faults": list(self.faults),
            "recovery_s": self.recovery_s,
        }
        if journal_path is not None:
            value["journal"] = journal_path
        return value


class SafeRunner:
    """Runs experiments safely; see the module docstring.

    Args:
        configuration: the lab variables (`harness.chaos.vars.lab_vars`).
        sweep: after the rollbacks, remove toxics and thaw/start lab containers still faulted
            (turned off only by tests of the runner without a lab).

    Example:
        >>> outcome = SafeRunner(lab_vars(lab.endpoints)).run(load_experiment(path))
        >>> outcome.met, outcome.observed
        (True, 'steady-state-held')
    """

    def __init__(self, configuration: Mapping[str, Any], *, sweep: bool = True) -> None:
        self.configuration = dict(configuration)
        self._sweep = sweep

    def cancel(self) -> None:
        """Restore the lab now (called by the drill runner on a signal outside the method)."""
        if self._sweep:
            restore_lab(self.configuration)

    def run(
        self,
        experiment: Experiment,
        on_journal: Callable[[Mapping[str, Any]], object] | None = None,
    ) -> ChaosOutcome:
        """Run `experiment`: hypothesis, method, hypothesis, rollbacks, sweep; then judge.

        Args:
            experiment: a validated experiment.
            on_journal: called with the journal as soon as chaoslib returns it, before the
                sweep (so evidence keeps it whatever happens next).

        Raises:
            ConfigError: the experiment declares configuration keys the lab does not provide.
        """
        document = experiment.copy()
        self._check_configuration(experiment, document)
        timing = _Timing()
        guard = _SignalGuard()
        left: tuple[str, ...] = ()
        with guard.installed():  # SIGINT from here; SIGTERM inside run_experiment
            journal: Mapping[str, Any] = run_experiment(
                document,
                settings=dict(SETTINGS),
                experiment_vars=(dict(self.configuration), {}),
                strategy=Strategy.DEFAULT,
                event_handlers=[_Events(guard, timing)],
            )
            if on_journal is not None or self._sweep:
                # chaoslib gave SIGTERM back to the caller: keep it through the hand-off and
                # the sweep (a no-op run has neither, and skips the two signal.signal calls).
                with guard.taking(signal.SIGTERM):
                    if on_journal is not None:
                        on_journal(journal)
                    if self._sweep:
                        left = self._swept()
        return judge(experiment, journal, left_behind=left, signum=guard.received, timing=timing)

    def _swept(self) -> tuple[str, ...]:
        try:
            return restore_lab(self.configuration)
        except (LabError, docker.errors.DockerException, requests.RequestException) as exc:
            # The journal must still be judged: with the sweep failed.
            return (f"the sweep failed: {exc}",)

    def _check_configuration(self, experiment: Experiment, document: Mapping[str, Any]) -> None:
        declared = document.get("configuration") or {}
        missing = [
            key
            for key, value in declared.items()
            if value in ("", None) and self.configuration.get(key) in ("", None)
        ]
        if missing:
            raise ConfigError(
                f"{experiment.source}: configuration.{missing[0]}: no value (the lab variables "
                f"have none; see `cihub lab vars`)"
            )


def run_safely(experiment: Experiment, configuration: Mapping[str, Any]) -> ChaosOutcome:
    """`SafeRunner(configuration).run(experiment)`."""
    return SafeRunner(configuration).run(experiment)


def lab_faults(configuration: Mapping[str, Any]) -> tuple[str, ...]:
    """What is faulted in the lab now: every toxic on its proxies, every faultable service
    container that is not running (paused, exited, ...).

    Raises:
        ActivityFailed: the fault proxy cannot be asked.
    """
    found: list[str] = []
    with ToxiproxyClient(need(configuration, "faultproxy_api_url")) as api:
        try:
            found += [f"toxic {name}/{t.name}" for name in api.proxies() for t in api.toxics(name)]
        except LabError as exc:
            raise ActivityFailed(f"cannot ask the fault proxy: {exc}") from exc
    for service in FAULTABLE_SERVICES:
        try:
            container = lab_container(configuration, service)
        except ActivityFailed:
            continue  # a lab without that service
        container.reload()
        state = str(container.attrs["State"]["Status"])
        if state != "running":
            found.append(f"{service} {state}")
    return tuple(found)


def restore_lab(configuration: Mapping[str, Any]) -> tuple[str, ...]:
    """Remove every toxic of the lab's fault proxy and thaw or start every faultable lab
    container that is not running.

    Returns:
        what was still faulted (empty when the rollbacks had done their job).
    """
    try:
        found = lab_faults(configuration)
    except ActivityFailed as exc:
        _logger.error("sweep: %s", exc)
        return (f"fault proxy unreachable ({exc})",)
    if not found:
        return ()
    _logger.warning("after the rollbacks, still faulted: %s", ", ".join(found))
    try:
        reset_toxics(configuration)
    except ActivityFailed as exc:
        _logger.error("sweep: %s", exc)
    for entry in found:
        service, _, _state = entry.partition(" ")
        if service in FAULTABLE_SERVICES:
            try:
                start_container(service, configuration=configuration)
            except ActivityFailed as exc:
                _logger.error("sweep: %s", exc)
    return found


def judge(
    experiment: Experiment,
    journal: Mapping[str, Any],
    *,
    left_behind: Sequence[str] = (),
    signum: int | None = None,
    timing: _Timing | None = None,
) -> ChaosOutcome:
    """Read what happened from a journal (see `ChaosOutcome`)."""
    declared = _declared(experiment)
    states = journal.get("steady_states") or {}
    before = _phase(states.get("before"), declared.has_hypothesis)
    after = _phase(states.get("after"), declared.has_hypothesis)
    if before == "not-met":
        after = "not-run"
    runs: list[Mapping[str, Any]] = journal.get("run") or []
    failed = next((r for r in runs if r.get("status") != "succeeded"), None)
    method_ran = (
        len(runs) == declared.method
        and failed is None
        and journal.get("status") not in ("interrupted", "aborted")
    )
    verified: bool | None = None
    if declared.fault_checks:
        checks = [r for r in runs if (r.get("activity") or {}).get("name") in declared.fault_checks]
        # declared but never reached: not verified
        verified = bool(checks) and all(r.get("status") == "succeeded" for r in checks)
    rollbacks: list[Mapping[str, Any]] = journal.get("rollbacks") or []
    return ChaosOutcome(
        experiment=experiment,
        journal=journal,
        hypothesis_before=before,
        hypothesis_after=after,
        fault_verified=verified,
        method_ran=method_ran,
        rollbacks_declared=declared.rollbacks,
        rollbacks_played=len(rollbacks),
        rollbacks_failed=sum(1 for r in rollbacks if r.get("status") != "succeeded"),
        left_behind=tuple(left_behind),
        faults=declared.faults,
        failed_activity=_describe_failure(failed) if failed is not None else None,
        signal=signum,
        recovery_s=timing.recovery_s if timing is not None else None,
    )


@dataclass(frozen=True)
class _Declared:
    """What an experiment declares that judging needs (the same for each of its runs)."""

    has_hypothesis: bool
    method: int
    rollbacks: int
    fault_checks: frozenset[str]
    faults: tuple[str, ...]


@functools.lru_cache(maxsize=64)
def _declared(experiment: Experiment) -> _Declared:
    # Keyed by the experiment: equal experiments (same file, document and expectation) share it.
    document = experiment.document
    method = list(document.get("method") or [])
    return _Declared(
        has_hypothesis=bool((document.get("steady-state-hypothesis") or {}).get("probes")),
        method=len(method),
        rollbacks=len(document.get("rollbacks") or []),
        fault_checks=frozenset(str(a.get("name")) for a in method if _is_fault_check(a)),
        faults=tuple(f for f in (_fault_of(a) for a in method) if f),
    )


def _phase(state: Any, declared: bool) -> Phase:
    if not declared:
        return "skipped"
    if not isinstance(state, (dict, Mapping)):  # a dict (chaoslib's) is the cheap check
        return "not-run"
    return "met" if state.get("steady_state_met") else "not-met"


def _is_fault_check(activity: Mapping[str, Any]) -> bool:
    """A probe whose Python function is marked with `harness.chaos.probes.fault_check`."""
    provider = activity.get("provider") or {}
    if activity.get("type") != "probe" or provider.get("type") != "python":
        return False
    return _marked(str(provider.get("module")), str(provider.get("func")))


@functools.cache
def _marked(module_name: str, func_name: str) -> bool:
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return False
    return bool(getattr(getattr(module, func_name, None), FAULT_CHECK_MARK, False))


def _fault_of(activity: Mapping[str, Any]) -> str | None:
    """`toxic:<type> on <proxy>` or `container:<fault> on <service>` for a fault action."""
    if activity.get("type") != "action":
        return None
    provider = activity.get("provider") or {}
    module, func = str(provider.get("module", "")), str(provider.get("func", ""))
    args = provider.get("arguments") or {}
    if module.startswith("chaostoxi.toxic") and func.startswith("create_"):
        kind = str(args.get("toxic_type") or func.removeprefix("create_").removesuffix("_toxic"))
        return f"toxic:{kind} on {args.get('for_proxy')}"
    if module == "harness.chaos.actions":
        if func == "add_toxic":
            return f"toxic:{args.get('type')} on {args.get('proxy')}"
        for verb in ("kill", "stop", "pause", "restart", "disconnect"):
            if func.startswith(verb + "_"):
                return f"container:{verb} on {args.get('service')}"
        if func == "fill_volume":
            return f"volume:fill on {args.get('service')}"
    return None


def _describe_failure(run: Mapping[str, Any]) -> str:
    name = (run.get("activity") or {}).get("name", "?")
    exception = run.get("exception") or []
    last = str(exception[-1]).strip() if exception else str(run.get("status"))
    return f"{name}: {last}"


class _Timing:
    """When the method ended and when the after hypothesis finished (recovery time)."""

    def __init__(self) -> None:
        self.method_end: float | None = None
        self.after_end: float | None = None

    @property
    def recovery_s(self) -> float | None:
        if self.method_end is None or self.after_end is None:
            return None
        return round(self.after_end - self.method_end, 3)


class _SignalGuard:
    """One run's signals. SIGINT/SIGTERM while the hypotheses or the method run: raise
    KeyboardInterrupt there (chaoslib then plays the rollbacks); any other time, and for a
    second signal, only note it so the rollbacks (and the sweep) finish.

    The guard does not install itself as a handler: `_dispatch` is the handler, process-wide,
    and hands the signal to the guard in `_routing` (the run in progress). How it gets there
    without a signal.signal call per run (each costs about as much as a no-op activity):
    - SIGINT: `installed` routes it to `_dispatch`. Where the caller had Python's default
      handler, `_dispatch` stays after the run and stands in for it (KeyboardInterrupt when no
      run is in progress), so the next run finds it in place; any other handler of the caller
      (the drill runner's) is put back when the run ends.
    - SIGTERM: chaoslib's `exit_signals` installs `chaoslib.exit._terminate_now` for the run
      and puts the caller's handler back after it; that name is pointed at `_dispatch`
      (`_route_chaoslib_sigterm`), which falls back to chaoslib's own handler outside our
      runs. After chaoslib returns, `taking(SIGTERM)` holds it for the sweep.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self.armed = False
        self._lock = threading.Lock()

    def handler(self, signum: int, frame: FrameType | None) -> None:
        with self._lock:
            if self.received is None:
                self.received = signum
            fire, self.armed = self.armed, False
        _logger.warning(
            "%s: stopping the experiment; rollbacks follow", signal.Signals(signum).name
        )
        if fire:
            raise KeyboardInterrupt(signal.Signals(signum).name)

    @contextmanager
    def installed(self) -> Iterator[None]:
        """This guard takes the signals `_dispatch` gets while the block runs: SIGINT from
        here, SIGTERM within chaoslib's scope. Only the main thread can take signals."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        _route_chaoslib_sigterm()
        outer = _routing.guard
        restore = None
        try:
            # In the try: a signal landing between these two lines still restores the routing.
            _routing.guard = self
            restore = _route(signal.SIGINT)  # `taking`, inlined: one generator less per run
            yield
        finally:
            self.armed = False
            if restore is not None:
                signal.signal(signal.SIGINT, restore)
            _routing.guard = outer

    @contextmanager
    def taking(self, signum: int) -> Iterator[None]:
        """`signum` goes to `_dispatch` (so to the routed guard) while the block runs."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        restore = _route(signum)
        try:
            yield
        finally:
            if restore is not None:
                signal.signal(signum, restore)


class _Routing:
    """Which guard `_dispatch` hands signals to. Signal handlers belong to the process, so
    this does too: the runner's one piece of module state."""

    guard: _SignalGuard | None = None


_routing = _Routing()
_CHAOSLIB_TERMINATE: Callable[[int, FrameType | None], None] = chaoslib.exit._terminate_now
_SignalHandler = Callable[[int, FrameType | None], Any] | int | None


def _dispatch(signum: int, frame: FrameType | None) -> None:
    """The process's SIGINT (and, inside chaoslib's runs, SIGTERM) handler: the run in
    progress gets the signal; with none, what would have got it without us."""
    guard = _routing.guard
    if guard is not None:
        guard.handler(signum, frame)
    elif signum == signal.SIGTERM:
        _CHAOSLIB_TERMINATE(signum, frame)  # a chaoslib run not ours: chaoslib's behaviour
    else:
        signal.default_int_handler(signum, frame)


def _route(signum: int) -> _SignalHandler:
    """Send `signum` to `_dispatch`; return the handler to put back after, or None.

    None when `_dispatch` was there already, or when SIGINT had Python's default handler:
    `_dispatch` stays and stands in for it (a handler set outside Python is left alone).
    The current handler is read from `_signal`: `signal.getsignal` converts it to an enum
    member first, which for a function costs a ValueError raised and caught inside `enum`
    (about as long as a no-op activity).
    """
    current: _SignalHandler = _signal.getsignal(signum)
    if current is _dispatch or current is None:
        return None  # None: a handler set outside Python, which could not be put back
    signal.signal(signum, _dispatch)
    if signum == signal.SIGINT and current is signal.default_int_handler:
        return None
    return current


def _route_chaoslib_sigterm() -> None:
    """Have chaoslib's `exit_signals` (chaostoolkit-lib 1.44, pinned) install `_dispatch` for
    SIGTERM: it looks `_terminate_now` up when a run starts."""
    if chaoslib.exit._terminate_now is not _dispatch:
        chaoslib.exit._terminate_now = _dispatch


class _Events(RunEventHandler):  # type: ignore[misc]
    """Stops the method at its first failed activity; arms the signal guard for the
    hypotheses and the method and disarms it for the rollbacks; times the recovery."""

    def __init__(self, guard: _SignalGuard, timing: _Timing) -> None:
        self._guard = guard
        self._timing = timing
        self._journal: dict[str, Any] | None = None
        self._method: list[Any] = []
        self._pending: int | None = None

    def running(self, experiment: Any, journal: Any, *args: Any, **kwargs: Any) -> None:
        self._journal = journal
        self._method = list(experiment.get("method") or [])
        # A signal noted before the run was armed stops it before its hypothesis or method
        # (chaoslib catches the KeyboardInterrupt from these events and plays the rollbacks).
        self._pending = self._guard.received
        self._guard.armed = self._pending is None

    def start_hypothesis_before(self, *args: Any, **kwargs: Any) -> None:
        self._stop_if_signalled()

    def start_method(self, *args: Any, **kwargs: Any) -> None:
        self._stop_if_signalled()

    def _stop_if_signalled(self) -> None:
        signum, self._pending = self._pending, None
        if signum is not None:
            raise KeyboardInterrupt(signal.Signals(signum).name)

    def activity_completed(self, activity: Any, run: Any) -> None:
        # chaoslib's loop ends when the journal says interrupted; hypothesis probes and
        # rollbacks are not method activities, so an unmet probe or a failed rollback goes on.
        journal = self._journal
        if journal is None or run.get("status") != "failed":
            return
        if any(a is activity for a in self._method):
            _logger.error("activity %r failed: the method stops here", activity.get("name"))
            journal["status"] = "interrupted"

    def method_completed(self, *args: Any, **kwargs: Any) -> None:
        self._timing.method_end = time.monotonic()

    def hypothesis_after_completed(self, *args: Any, **kwargs: Any) -> None:
        self._timing.after_end = time.monotonic()

    def start_rollbacks(self, *args: Any, **kwargs: Any) -> None:
        self._guard.armed = False

    def finish(self, *args: Any, **kwargs: Any) -> None:
        self._guard.armed = False
