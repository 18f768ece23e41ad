"""The step board behind `cihub run release`'s live table: steps and the dual build's
sub-steps, their states, verdicts and times; and the table drawn from it."""

from __future__ import annotations

import argparse
import io
from types import SimpleNamespace
from typing import Any

from rich.console import Console

from harness._commands import run as run_command
from harness.drills._steps import DUAL_BUILD, DUAL_BUILD_STEPS, StepBoard
from harness.drills.release import STEPS
from harness.evidence.manifest import StepEntry


def board() -> StepBoard:
    return StepBoard(STEPS, {DUAL_BUILD: DUAL_BUILD_STEPS})


def states(b: StepBoard) -> dict[str, str]:
    return {(f"{r.parent}/" if r.parent else "") + r.name: r.state for r in b.rows()}


def test_progress_lines_start_the_sub_steps_in_order() -> None:
    b = board()
    b.start(DUAL_BUILD)
    b.dual_build_said("preparing builder image builder-python (built once, then cached)")
    assert states(b)["dual-build/prepare"] == "running"
    b.dual_build_said("variations applied: umask (not applied: none)")  # no sub-step
    b.dual_build_said("building A (control) and B (experiment) in parallel; clock")
    s = states(b)
    assert (s["dual-build/prepare"], s["dual-build/build A"], s["dual-build/build B"]) == (
        "done",
        "running",
        "running",
    )
    b.dual_build_said("comparing the artifacts (tree digests; diffoscope only if they differ)")
    b.dual_build_said("culprit search: 3 variation(s), each alone beside fresh controls")
    s = states(b)
    assert s["dual-build/compare"] == "done" and s["dual-build/culprit search"] == "running"


def test_verdicts_and_times_come_from_the_bundle_and_the_builds() -> None:
    b = board()
    steps = [
        StepEntry("prepare", "success", 0.5),
        StepEntry("build", "success", 9.0),
        StepEntry("compare", "failure", 1.25),
        StepEntry("culprits", "success", 30.0),
    ]
    builds: list[Any] = [
        SimpleNamespace(label="A", ok=True, timed_out=False, duration_s=8.0),
        SimpleNamespace(label="B", ok=False, timed_out=True, duration_s=9.0),
    ]
    b.dual_build_done(steps, builds)
    rows = {r.name: (r.state, r.seconds) for r in b.rows() if r.parent == DUAL_BUILD}
    assert rows == {
        "prepare": ("success", 0.5),
        "build A": ("success", 8.0),
        "build B": ("timeout", 9.0),
        "compare": ("failure", 1.25),
        "culprit search": ("success", 30.0),
    }


def test_what_was_running_when_the_drill_stopped_is_marked_stopped() -> None:
    b = board()
    b.start(DUAL_BUILD)
    b.dual_build_said("building A (control) and B (experiment) in parallel; clock")
    b.stop_running()
    s = states(b)
    assert s["dual-build"] == s["dual-build/build A"] == "stopped"
    assert s["sbom"] == "waiting"


def test_the_live_table_shows_every_row_with_its_verdict_and_time() -> None:
    b = board()
    b.dual_build_done([StepEntry("compare", "success", 0.5)], [])
    b.finish("sbom", "success", 1.5)
    table = run_command._StepTable(b)
    table.said("comparing [the] artifacts")  # rich markup in a note is shown as text
    out = io.StringIO()
    Console(file=out, width=120).print(table.render())
    text = out.getvalue()
    for name in (*STEPS, *DUAL_BUILD_STEPS):
        assert name in text, name
    assert "└ compare" in text and "0.50 s" in text and "1.50 s" in text
    assert "comparing [the] artifacts" in text


def test_a_drill_registers_itself_with_two_lines(monkeypatch: Any) -> None:
    def register_drill(drills: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        example = drills.add_parser("example", help="an example drill")
        run_command.add_subject_options(example)
        run_command.add_run_options(example, lab_help="the lab")
        example.set_defaults(handler=lambda args: 0)

    monkeypatch.setattr(run_command, "DRILLS", (*run_command.DRILLS, register_drill))
    parser = argparse.ArgumentParser()
    run_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["run", "example", "--subject", "x", "--sign", "key:k.pem", "--json"])
    assert (args.drill, args.subject.name, args.sign, args.json) == (
        "example",
        "x",
        "key:k.pem",
        True,
    )
    assert parser.parse_args(["run", "release", "--vex", "v.json"]).vex[0].name == "v.json"
