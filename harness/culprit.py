"""Culprit search: which variations make build B differ from build A?

Like reprotest's `--auto-build`, a variation is named only when it alone makes the builds
differ: build B with the control environment plus that one variation, compared with a fresh
control. Builds run in parallel, as many at a time as the machine has CPUs.

- **Groups first** (strategy `groups`, with more than `GROUP_MIN` variations): the first round
  builds a few groups of variations (consecutive in catalogue order), and only the variations of
  the groups that differ are then built alone. A variation whose whole group matches the control
  is cleared without a build of its own; the ones finally named were each built alone against a
  fresh control, as with strategy `singles` (each variation alone from the start). A variation
  that differs alone but not beside the others of its group (their effects cancel out) would be
  missed: such pairs are not known on any sample subject.
- **Chained controls.** A round's closing control, built right before the next round's trials,
  is that round's opening control.

- **Fresh controls.** Every round of builds starts with a control build and ends with another
  (scheduled last, so it runs after the trials); each trial is compared with its round's first
  control, never with build A made minutes earlier. Both controls of every round, and build A,
  must agree: then the build gave the same output all through the window the trials ran in.
- **Controls disagree.** The build is not deterministic against itself, so no variation can be
  blamed. When the image has libfaketime, the search checks whether the clock is the cause:
  two controls with the clock pinned to the same instant, built at different times, agree,
  and a control pinned to another instant differs; then the verdict is "not reproducible: time"
  (time is the only culprit named). Otherwise it is "inconclusive: the build is not
  deterministic against itself", with no culprit.
- **Confirm.** A variation whose build differed is built once more; if it then matches, it is
  reported `flaky` rather than a culprit.
- **Rest check.** B with every applied variation except the culprits: if that matches the
  control, the culprits explain the whole difference (`explained`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from harness.build import BuildOutput, BuildSpec, Progress, run_build
from harness.build_session import BuildSession, run_parallel
from harness.variations import BuildEnv, VariationPlan

_logger = logging.getLogger(__name__)

TrialRound = Literal["single", "group", "confirm", "rest", "clock"]
SearchStrategy = Literal["singles", "groups"]
SearchMode = Literal["shared-control", "paired"]
SearchOutcome = Literal["culprits", "inconclusive", "time"]

PINNED_CLOCK = "@2024-01-01 00:00:00"
"""libfaketime start time of the two clock-pinned controls (each process starts its clock here)."""
OTHER_PINNED_CLOCK = "@2025-02-03 04:05:06"
"""The other pinned clock: another year, month, day, hour, minute and second."""
CLOCK_GAP_S = 1.5
"""The second pinned control starts at least this long after the first (a different real time)."""
GROUP_MIN = 4
"""With this many applied variations or fewer, each is built alone from the start."""
GROUPS_PER_WORKER = 2
"""Groups in the first round per build running at a time (2 workers: 4 groups, 6 builds)."""


@dataclass(frozen=True)
class CulpritTrial:
    """One experiment build of the search, compared with a control.

    Attributes:
        round: single (one variation), group (several, in the first round of strategy
            groups), confirm (the same again), rest (all but culprits) or clock (a control with
            the clock pinned, in the self-check).
        variations: what B varied (for clock trials: the pinned clock).
        identical: both built and their digests match.
        a_digest, b_digest: the tree digests compared (None when a build failed).
        a_failure, b_failure: why a build failed (empty when it succeeded).
        wall_s: the experiment build's wall time.
    """

    round: TrialRound
    variations: tuple[str, ...]
    identical: bool
    a_digest: str | None
    b_digest: str | None
    a_failure: str
    b_failure: str
    wall_s: float

    @property
    def breaks_the_build(self) -> bool:
        """The experiment build failed while the control built."""
        return bool(self.b_failure) and not self.a_failure

    def to_json(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "variations": list(self.variations),
            "identical": self.identical,
            "a_digest": self.a_digest,
            "b_digest": self.b_digest,
            "a_failure": self.a_failure,
            "b_failure": self.b_failure,
            "wall_s": round(self.wall_s, 3),
        }


def _digest(build: BuildOutput) -> str | None:
    return build.digest.digest if build.ok and build.digest is not None else None


def _compared(
    round_: TrialRound, varied: tuple[str, ...], control: BuildOutput, build: BuildOutput
) -> CulpritTrial:
    theirs, mine = _digest(control), _digest(build)
    return CulpritTrial(
        round_,
        varied,
        theirs is not None and mine == theirs,
        theirs,
        mine,
        control.failure(),
        build.failure(),
        build.duration_s,
    )


@dataclass(frozen=True)
class CulpritReport:
    """What the culprit search found.

    Attributes:
        culprits: variations that alone make the builds differ (catalogue order); `("time",)`
            alone when the self-check showed the clock is what varies the output.
        build_breakers: culprits under which build B failed outright.
        flaky: variations that differed once but not when built again.
        explained: B with every applied variation except the ones that differed matched the
            control (None: not checked, e.g. when every applied variation differed).
        controls_agree: build A and every control build of the search gave the same digest.
        mode: always shared-control now: each trial is compared with the fresh control that
            opened its round (kept for the record's schema).
        trials: every experiment build, in order.
        nondeterministic: control builds differ: the build is not deterministic against
            itself, and no variation is blamed (only time, when `clock_shown`).
        clock_shown: the self-check showed the clock decides the output.
        clock_check: what the self-check did, in a few words (empty when it did not run).
        strategy: singles (each variation alone) or groups (groups first, see the module docs).
        containers: warm (builder containers reused between builds) or cold (one per build).
    """

    culprits: tuple[str, ...]
    build_breakers: tuple[str, ...]
    flaky: tuple[str, ...]
    explained: bool | None
    controls_agree: bool
    mode: SearchMode
    trials: tuple[CulpritTrial, ...]
    builds: int
    wall_s: float
    nondeterministic: bool = False
    clock_shown: bool = False
    clock_check: str = ""
    strategy: SearchStrategy = "singles"
    containers: Literal["warm", "cold"] = "cold"

    @property
    def outcome(self) -> SearchOutcome:
        """culprits (a normal search), time (only the clock) or inconclusive."""
        if self.clock_shown:
            return "time"
        return "inconclusive" if self.nondeterministic else "culprits"

    def summary(self) -> str:
        """One line for people."""
        if self.clock_shown:
            return (
                "not reproducible: time: control builds made at different times differ; "
                f"{self.clock_check}; no other variation is judged"
            )
        if self.nondeterministic:
            text = (
                "inconclusive: the build is not deterministic against itself "
                "(control builds in the same environment differ), so no variation is blamed"
            )
            return text + (f"; {self.clock_check}" if self.clock_check else "")
        if not self.culprits:
            return "no single variation makes the builds differ"
        text = f"culprit{'s' if len(self.culprits) > 1 else ''}: {', '.join(self.culprits)}"
        if self.build_breakers:
            text += f" (build fails under {', '.join(self.build_breakers)})"
        if self.flaky:
            text += f"; flaky, not counted: {', '.join(self.flaky)}"
        if self.explained is False:
            text += "; they do not explain the whole difference"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "culprits": list(self.culprits),
            "build_breakers": list(self.build_breakers),
            "flaky": list(self.flaky),
            "explained": self.explained,
            "controls_agree": self.controls_agree,
            "mode": self.mode,
            "nondeterministic": self.nondeterministic,
            "clock_shown": self.clock_shown,
            "clock_check": self.clock_check,
            "strategy": self.strategy,
            "containers": self.containers,
            "builds": self.builds,
            "summary": self.summary(),
            "wall_s": round(self.wall_s, 3),
            "trials": [t.to_json() for t in self.trials],
        }


@dataclass(frozen=True)
class CulpritSearch:
    """The input of the culprit search.

    Attributes:
        spec: what to build.
        plan: the applied variations and the control/experiment environments.
        reference_digest: the digest of the drill's own build A (one more control: it must
            agree with the search's fresh controls; None when A failed).
        workers: builds run at the same time (default: the CPUs the engine has).
        confirm: build each differing variation a second time.
        strategy: groups (groups of variations first) or singles (each alone from the start).
    """

    spec: BuildSpec
    plan: VariationPlan
    reference_digest: str | None = None
    workers: int | None = None
    confirm: bool = True
    strategy: SearchStrategy = "groups"


_Job = tuple[TrialRound | Literal["control"], tuple[str, ...]]


def _first_jobs(search: CulpritSearch, workers: int) -> list[_Job]:
    """The trials of the search's first round (groups, or each variation alone)."""
    names = list(search.plan.applied)
    if search.strategy == "groups" and len(names) > GROUP_MIN:
        groups = split_groups(names, GROUPS_PER_WORKER * workers)
        return [("single" if len(g) == 1 else "group", g) for g in groups]
    return [("single", (n,)) for n in names]


def search_workers(search: CulpritSearch) -> int:
    """Builds the search runs at a time."""
    return max(1, search.workers or search.spec.image.capabilities.cpus)


def first_round_envs(search: CulpritSearch) -> list[BuildEnv]:
    """The environments of the first round's builds, controls included (to start their
    containers ahead, `harness.build_warm.prewarm`)."""
    jobs = _first_jobs(search, search_workers(search))
    plan = search.plan
    return [plan.control, *(plan.experiment(varied) for _, varied in jobs), plan.control]


class _Runner:
    def __init__(self, search: CulpritSearch, session: BuildSession, say: Progress) -> None:
        self.search = search
        self.session = session
        self.say = say
        self.workers = search_workers(search)
        self.builds = 0

    def environment(self, job: _Job) -> BuildEnv:
        kind, varied = job
        plan = self.search.plan
        if kind == "control":
            return plan.control
        if kind == "clock":
            return dataclasses.replace(plan.control, fake_clock=varied[0])
        return plan.experiment(varied)

    def builds_of(self, jobs: Sequence[_Job]) -> list[BuildOutput]:
        """Build each job's environment, `workers` at a time, started in list order."""

        def one(index: int, job: _Job) -> Callable[[], BuildOutput]:
            kind, varied = job
            tag = varied[0] if len(varied) == 1 and kind != "clock" else kind
            env = self.environment(job)
            spec = self.search.spec
            return lambda: run_build(self.session, spec, env, f"{tag}-{index}", keep=False)

        first = self.builds
        self.builds += len(jobs)
        calls = [one(first + i, job) for i, job in enumerate(jobs)]
        return run_parallel(self.session, calls, self.workers)

    def round(
        self, jobs: Sequence[_Job], opening: BuildOutput | None = None
    ) -> tuple[BuildOutput, BuildOutput, list[BuildOutput]]:
        """A round: a control (`opening`: the previous round's closing one), the jobs, and a
        closing control scheduled after them."""
        if opening is not None:
            built = self.builds_of([*jobs, ("control", ())])
            return opening, built[-1], built[:-1]
        built = self.builds_of([("control", ()), *jobs, ("control", ())])
        return built[0], built[-1], built[1:-1]

    def report(self, trials: Sequence[CulpritTrial]) -> None:
        for trial in trials:
            outcome = "same" if trial.identical else "DIFFERS"
            if trial.breaks_the_build:
                outcome = f"DIFFERS (build B {trial.b_failure})"
            elif trial.a_failure:
                outcome = f"control build {trial.a_failure}"
            varied = trial.variations
            name = "+".join(varied) if len(varied) <= 2 else f"{len(varied)} variations"
            self.say(f"  {trial.round} {name}: {outcome} ({trial.wall_s:.1f} s)")


def split_groups(names: Sequence[str], parts: int) -> list[tuple[str, ...]]:
    """`names` in `parts` consecutive groups, the first ones one longer when they don't divide.

    Example:
        >>> split_groups(["a", "b", "c", "d", "e"], 2)
        [('a', 'b', 'c'), ('d', 'e')]
    """
    parts = max(1, min(parts, len(names)))
    size, extra = divmod(len(names), parts)
    groups, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        groups.append(tuple(names[start:end]))
        start = end
    return groups


def _controls_agree(reference: str | None, controls: Sequence[BuildOutput]) -> bool:
    digests = {_digest(c) for c in controls}
    if reference is not None:
        digests.add(reference)
    return None not in digests and len(digests) == 1


def _clock_check(runner: _Runner) -> tuple[bool, str, list[CulpritTrial]]:
    """Is the clock what varies the output? (shown, what was done, the trials)"""
    if not runner.search.spec.image.capabilities.faketime_library:
        return False, "the clock could not be pinned to check it (no libfaketime in the image)", []
    runner.say("checking whether the clock is the cause (controls with the clock pinned)")
    started = time.monotonic()
    first, other = runner.builds_of([("clock", (PINNED_CLOCK,)), ("clock", (OTHER_PINNED_CLOCK,))])
    gap = CLOCK_GAP_S - (time.monotonic() - started)
    if gap > 0 and runner.session.wait_cancelled(gap):
        runner.session.check_cancelled()
    (second,) = runner.builds_of([("clock", (PINNED_CLOCK,))])
    same = _compared("clock", (PINNED_CLOCK,), first, second)
    moved = _compared("clock", (OTHER_PINNED_CLOCK,), first, other)
    trials = [same, moved]
    runner.report(trials)
    if same.identical and not moved.identical and not moved.breaks_the_build:
        return (
            True,
            "with the clock pinned, two controls built at different times agree and a "
            "control pinned to another time differs",
            trials,
        )
    if not same.identical:
        return False, "with the clock pinned, two controls still differ", trials
    return False, "pinning the clock did not show it decides the output", trials


def find_culprits(
    search: CulpritSearch, session: BuildSession, progress: Progress | None = None
) -> CulpritReport:
    """Build the control with each applied variation alone and name the culprits.

    Never blames a variation when the build is not deterministic against itself (see the
    module docs): the report is then inconclusive, or names only time when the self-check
    shows the clock decides the output.

    Raises:
        InfraError: the engine failed.

    Example:
        >>> report = find_culprits(CulpritSearch(spec, plan, reference_digest=a), session)
        >>> report.culprits
        ('time', 'umask')
    """
    started = time.monotonic()
    say = progress or (lambda _message: None)
    runner = _Runner(search, session, say)
    names = list(search.plan.applied)
    reference = search.reference_digest
    grouped = search.strategy == "groups" and len(names) > GROUP_MIN
    strategy: SearchStrategy = "groups" if grouped else "singles"
    containers: Literal["warm", "cold"] = "warm" if session.warm else "cold"
    say(
        f"culprit search: {len(names)} variation(s), "
        + ("in groups first, then " if grouped else "")
        + f"each alone beside fresh controls ({runner.workers} build(s) at a time)"
    )
    controls: list[BuildOutput] = []
    every: list[CulpritTrial] = []

    def inconclusive() -> CulpritReport:
        distinct = len({_digest(c) for c in controls} | ({reference} if reference else set()))
        say(
            f"control builds differ ({distinct} different outputs from build A and the fresh "
            "controls): the build is not deterministic against itself; the trials of this "
            "round are not judged"
        )
        shown, check, clock_trials = _clock_check(runner)
        report = CulpritReport(
            culprits=("time",) if shown else (),
            build_breakers=(),
            flaky=(),
            explained=None,
            controls_agree=False,
            mode="shared-control",
            trials=(*every, *clock_trials),
            builds=runner.builds,
            wall_s=time.monotonic() - started,
            nondeterministic=True,
            clock_shown=shown,
            clock_check=check,
            strategy=strategy,
            containers=containers,
        )
        say(report.summary())
        return report

    candidates = names
    previous: BuildOutput | None = None
    if grouped:
        jobs = _first_jobs(search, runner.workers)
        groups = [varied for _, varied in jobs]
        opening, previous, built_groups = runner.round(jobs)
        controls += [opening, previous]
        first = [
            _compared("single" if len(g) == 1 else "group", g, opening, b)
            for g, b in zip(groups, built_groups, strict=True)
        ]
        every += first
        if not _controls_agree(reference, controls):
            return inconclusive()
        runner.report(first)
        differ = [t.variations for t in first if not t.identical]
        say(f"groups that differ: {len(differ)} of {len(groups)}; building their variations alone")
        candidates = [n for g in differ if len(g) > 1 for n in g]
    if candidates:
        opening, previous, singles = runner.round([("single", (n,)) for n in candidates], previous)
        controls += [opening, previous]
        alone = [
            _compared("single", (n,), opening, b) for n, b in zip(candidates, singles, strict=True)
        ]
        every += alone
        if not _controls_agree(reference, controls):
            return inconclusive()
        runner.report(alone)
    differing = [t.variations[0] for t in every if t.round == "single" and not t.identical]
    rest = [n for n in names if n not in differing]
    flaky: list[str] = []
    explained: bool | None = None
    confirm = differing if search.confirm else []
    if confirm or (differing and rest):
        parts = []
        if confirm:
            parts.append(f"confirming {', '.join(confirm)}")
        if differing and rest:
            parts.append(f"rest check (every variation but {', '.join(differing)})")
        say("; ".join(parts))
        sets: list[tuple[TrialRound, tuple[str, ...]]] = [("confirm", (n,)) for n in confirm]
        if differing and rest:
            sets.append(("rest", tuple(rest)))
        opening, closing, built = runner.round(sets, previous)
        controls += [opening, closing]
        second = [
            _compared(kind, varied, opening, build)
            for (kind, varied), build in zip(sets, built, strict=True)
        ]
        every += second
        if not _controls_agree(reference, controls):
            return inconclusive()
        runner.report(second)
        flaky = [t.variations[0] for t in second if t.round == "confirm" and t.identical]
        checks = [t for t in second if t.round == "rest"]
        explained = checks[0].identical if checks else None
    culprits = [n for n in names if n in differing and n not in flaky]
    breakers = [
        n for n in culprits if any(t.breaks_the_build and t.variations == (n,) for t in every)
    ]
    report = CulpritReport(
        culprits=tuple(culprits),
        build_breakers=tuple(breakers),
        flaky=tuple(flaky),
        explained=explained,
        controls_agree=True,
        mode="shared-control",
        trials=tuple(every),
        builds=runner.builds,
        wall_s=time.monotonic() - started,
        strategy=strategy,
        containers=containers,
    )
    say(report.summary())
    return report
