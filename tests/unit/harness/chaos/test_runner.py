"""The safe runner against chaostoolkit-lib's traps, with fake providers (no lab)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from harness.chaos import Experiment, SafeRunner, validate_experiment
from harness.chaos.runner import ChaosOutcome
from harness.drills import RunSettings, run_drill
from harness.drills.chaos import JOURNAL, ChaosDrill
from harness.drills.runner import DrillCancelled
from harness.errors import ConfigError
from harness.evidence import KeySigner

FAKE = "tests.unit.harness.chaos.fake_providers"


def activity(name: str, func: str, kind: str = "action", **arguments: Any) -> dict[str, Any]:
    provider: dict[str, Any] = {"type": "python", "module": FAKE, "func": func}
    if arguments:
        provider["arguments"] = arguments
    return {"type": kind, "name": name, "provider": provider}


def steady(func: str = "flag_is_up") -> dict[str, Any]:
    return {"title": "steady", "probes": [{**activity("steady", func, "probe"), "tolerance": True}]}


def experiment(
    method: list[dict[str, Any]],
    *,
    rollbacks: list[dict[str, Any]] | None = None,
    hypothesis: dict[str, Any] | None = None,
    twin: bool = False,
) -> Experiment:
    document: dict[str, Any] = {
        "title": "fake",
        "description": "a fake experiment",
        "configuration": {"log": "", "marker": "from-the-file"},
        "steady-state-hypothesis": hypothesis or steady(),
        "method": method,
        "rollbacks": rollbacks
        if rollbacks is not None
        else [activity("undo", "record", tag="rollback")],
    }
    if twin:
        document["extensions"] = [{"name": "cihub", "expect": "steady-state-fails"}]
    return validate_experiment(document, Path("fake.json"))


FAULT = activity("fault", "record", tag="fault")
CHECK = activity("check", "fault_seen", "probe")


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "log.txt"


def run(exp: Experiment, log: Path, **extra: Any) -> tuple[ChaosOutcome, list[str]]:
    outcome = SafeRunner({"log": str(log), **extra}, sweep=False).run(exp)
    lines = log.read_text().splitlines() if log.exists() else []
    return outcome, lines


def test_a_verified_fault_with_steady_state_held_passes(log: Path) -> None:
    outcome, lines = run(experiment([FAULT, CHECK]), log)
    assert outcome.met, outcome.problems
    assert outcome.observed == "steady-state-held"
    assert (outcome.hypothesis_before, outcome.hypothesis_after) == ("met", "met")
    assert outcome.fault_verified is True and outcome.method_ran
    assert (outcome.rollbacks_played, outcome.rollbacks_failed) == (1, 0)
    assert lines == ["fault", "fault-seen", "rollback"]
    record = outcome.record_json(JOURNAL)
    assert record["rollbacks"] == {"played": 1, "failed": 0} and record["journal"] == JOURNAL


def test_an_unmet_before_hypothesis_fails_the_drill_and_rollbacks_still_play(log: Path) -> None:
    log.with_suffix(".flag").touch()  # the steady state is already broken
    outcome, lines = run(experiment([FAULT, CHECK]), log)
    assert outcome.status in ("completed", "failed")  # chaoslib's word, not ours
    assert not outcome.met
    assert outcome.observed == "before-hypothesis-not-met"
    assert outcome.hypothesis_before == "not-met" and outcome.hypothesis_after == "not-run"
    assert not outcome.method_ran
    assert lines == ["rollback"]


def test_the_method_stops_at_its_first_failed_activity(log: Path) -> None:
    exp = experiment([FAULT, activity("broken", "fail", tag="broken"), CHECK, FAULT])
    outcome, lines = run(exp, log)
    assert lines == ["fault", "broken", "rollback"]
    assert not outcome.met and not outcome.method_ran
    assert (
        outcome.failed_activity is not None
        and "broken failed on purpose" in outcome.failed_activity
    )
    assert outcome.fault_verified is False  # its check never ran


def test_a_failed_rollback_fails_the_drill(log: Path) -> None:
    exp = experiment([FAULT, CHECK], rollbacks=[activity("undo", "fail", tag="bad-rollback")])
    outcome, _ = run(exp, log)
    assert outcome.observed == "rollback-failed"
    assert any("rollback(s) failed" in p for p in outcome.problems)


def test_every_rollback_is_played_even_after_one_fails(log: Path) -> None:
    rollbacks = [activity("undo-1", "fail", tag="r1"), activity("undo-2", "record", tag="r2")]
    outcome, lines = run(experiment([FAULT, CHECK], rollbacks=rollbacks), log)
    assert lines[-2:] == ["r1", "r2"]
    assert (outcome.rollbacks_played, outcome.rollbacks_failed) == (2, 1)


def test_a_fault_never_checked_is_not_a_pass(log: Path) -> None:
    outcome, _ = run(experiment([FAULT]), log)
    assert outcome.fault_verified is None
    assert not outcome.met and outcome.observed == "fault-not-verified"


def test_a_fault_check_that_fails_is_not_a_pass(log: Path) -> None:
    outcome, lines = run(experiment([FAULT, activity("check", "fault_not_seen", "probe")]), log)
    assert outcome.fault_verified is False and not outcome.met
    assert lines[-1] == "rollback"


def test_a_broken_steady_state_after_the_method_fails(log: Path) -> None:
    outcome, _ = run(experiment([activity("break", "raise_flag"), CHECK]), log)
    assert outcome.hypothesis_after == "not-met"
    assert not outcome.met and outcome.observed == "steady-state-failed"


def test_a_twin_passes_only_when_its_steady_state_fails(log: Path) -> None:
    broken, _ = run(experiment([activity("break", "raise_flag"), CHECK], twin=True), log)
    assert broken.met and broken.observed == "steady-state-failed"
    log.with_suffix(".flag").unlink()
    held, _ = run(experiment([FAULT, CHECK], twin=True), log)
    assert not held.met
    assert any("expected not-met" in p for p in held.problems)


def test_the_lab_comes_in_as_configuration_not_the_environment(
    log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("marker", "from-the-environment")
    _, lines = run(experiment([activity("echo", "echo_marker"), CHECK]), log, marker="from-the-lab")
    assert "marker=from-the-lab" in lines


def test_an_undeclared_lab_value_is_refused_before_anything_runs(log: Path) -> None:
    exp = experiment([FAULT, CHECK])
    with pytest.raises(ConfigError, match=r"fake.json: configuration.log: no value"):
        SafeRunner({}, sweep=False).run(exp)
    assert not log.exists()


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_a_signal_mid_method_plays_the_rollbacks(log: Path, name: str) -> None:
    exp = experiment([FAULT, activity("signal", "send_signal", signame=name), CHECK])
    outcome, lines = run(exp, log)
    assert outcome.signal == getattr(signal, name)
    assert lines == ["fault", f"signal {name}", "rollback"]  # the method stopped there
    assert outcome.observed == "cancelled" and not outcome.met
    assert outcome.rollbacks_played == 1


def test_a_second_signal_waits_for_every_rollback(log: Path) -> None:
    rollbacks = [
        activity("undo-1", "signal_now", signame="SIGTERM", tag="r1"),
        activity("undo-2", "signal_now", signame="SIGINT", tag="r2"),
        activity("undo-3", "record", tag="r3"),
    ]
    exp = experiment(
        [FAULT, activity("signal", "send_signal", signame="SIGINT"), CHECK], rollbacks=rollbacks
    )
    outcome, lines = run(exp, log)
    assert lines == ["fault", "signal SIGINT", "r1", "r2", "r3"]
    assert outcome.signal == signal.SIGINT  # the first one
    assert (outcome.rollbacks_played, outcome.rollbacks_failed) == (3, 0)


@contextmanager
def sigint_handler(handler: Any) -> Iterator[None]:
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def test_after_a_run_ctrl_c_still_interrupts_the_caller(log: Path) -> None:
    with sigint_handler(signal.default_int_handler):
        outcome, _ = run(experiment([FAULT, CHECK]), log)
        assert outcome.met and outcome.signal is None
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler raises at the next bytecode
        assert run(experiment([FAULT, CHECK]), log)[0].signal is None  # nothing was held


def test_the_callers_own_handlers_are_put_back_and_not_called_during_a_run(log: Path) -> None:
    seen: list[int] = []

    def callers(signum: int, frame: object) -> None:
        seen.append(signum)

    sigterm = signal.getsignal(signal.SIGTERM)
    with sigint_handler(callers):
        exp = experiment([FAULT, activity("signal", "send_signal", signame="SIGINT"), CHECK])
        outcome, _ = run(exp, log)
        assert outcome.signal == signal.SIGINT and seen == []  # the run took it
        assert signal.getsignal(signal.SIGINT) is callers
        assert signal.getsignal(signal.SIGTERM) is sigterm
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert seen == [signal.SIGINT]  # between runs: the caller's


def test_a_callers_handler_around_a_run_leaves_ctrl_c_working_after_it(log: Path) -> None:
    # A run with Python's default handler keeps the runner's in its place; a caller that
    # then installs its own around another run (the drill runner) and puts the runner's back
    # must get KeyboardInterrupt again, not its own stale handler.
    with sigint_handler(signal.default_int_handler):
        run(experiment([FAULT, CHECK]), log)
        calls: list[int] = []
        with sigint_handler(lambda signum, frame: calls.append(signum)):
            run(experiment([FAULT, CHECK]), log)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        assert calls == []


def test_the_drill_keeps_the_journal_and_records_the_chaos_object(
    log: Path, tmp_path: Path
) -> None:
    exp = experiment([FAULT, CHECK])
    drill = ChaosDrill(exp, {}, runner=SafeRunner({"log": str(log)}, sweep=False))
    result = run_drill(drill, RunSettings(tmp_path / "evidence", KeySigner.from_secret(7)))
    assert result.passed, result.lines()
    journal = json.loads((result.bundle / JOURNAL).read_text())
    assert journal["status"] == "completed"
    chaos = result.record["chaos"]
    assert chaos["hypothesis_before"] == "met" and chaos["fault_verified"] is True
    assert chaos["journal"] == JOURNAL
    assert result.record["scenario"]["kind"] == "chaos"


def test_the_drill_keeps_the_journal_of_a_failed_run(log: Path, tmp_path: Path) -> None:
    exp = experiment([FAULT, activity("broken", "fail", tag="broken")])
    drill = ChaosDrill(exp, {}, runner=SafeRunner({"log": str(log)}, sweep=False))
    result = run_drill(drill, RunSettings(tmp_path / "evidence", KeySigner.from_secret(7)))
    assert result.exit_code == 1
    assert (result.bundle / JOURNAL).is_file()
    assert result.record["chaos"]["method_ran"] is False


def test_a_signal_cancels_the_drill_after_the_journal_is_kept(log: Path, tmp_path: Path) -> None:
    exp = experiment([FAULT, activity("signal", "send_signal", signame="SIGTERM"), CHECK])
    drill = ChaosDrill(exp, {}, runner=SafeRunner({"log": str(log)}, sweep=False))
    with pytest.raises(DrillCancelled):
        run_drill(drill, RunSettings(tmp_path / "evidence", KeySigner.from_secret(7)))
    (bundle,) = (tmp_path / "evidence").glob("chaos-*")
    assert json.loads((bundle / JOURNAL).read_text())["rollbacks"]
    assert log.read_text().splitlines()[-1] == "rollback"


def test_a_sweep_that_cannot_reach_the_lab_fails_the_run_but_keeps_the_journal(
    log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.chaos import runner
    from lab.errors import LabError

    def broken(configuration: object) -> tuple[str, ...]:
        raise LabError("no engine")

    monkeypatch.setattr(runner, "restore_lab", broken)
    outcome = SafeRunner({"log": str(log)}).run(experiment([FAULT, CHECK]))
    assert outcome.journal["status"] == "completed"
    assert outcome.left_behind == ("the sweep failed: no engine",)
    assert not outcome.met and outcome.observed == "fault-left-behind"


def test_the_journal_is_kept_before_the_sweep_whatever_the_sweep_meets(
    log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.chaos import runner

    def cancelled_while_sweeping(configuration: object) -> tuple[str, ...]:
        raise DrillCancelled(signal.SIGTERM)

    monkeypatch.setattr(runner, "restore_lab", cancelled_while_sweeping)
    drill = ChaosDrill(experiment([FAULT, CHECK]), {}, runner=SafeRunner({"log": str(log)}))
    with pytest.raises(DrillCancelled):
        run_drill(drill, RunSettings(tmp_path / "evidence", KeySigner.from_secret(7)))
    (bundle,) = (tmp_path / "evidence").glob("chaos-*")
    assert json.loads((bundle / JOURNAL).read_text())["status"] == "completed"


def test_a_signal_noted_before_the_run_was_armed_stops_it_before_the_method() -> None:
    from harness.chaos.runner import _Events, _SignalGuard, _Timing

    guard = _SignalGuard()
    guard.received = signal.SIGTERM  # arrived between entering the runner and `running`
    events = _Events(guard, _Timing())
    events.running({"method": []}, {"status": "running"})
    assert guard.armed is False
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        events.start_hypothesis_before({})
    events.start_method({})  # raised once: the rollbacks follow undisturbed

    calm = _Events(_SignalGuard(), _Timing())
    calm.running({"method": []}, {"status": "running"})
    calm.start_hypothesis_before({})
    calm.start_method({})
