"""Culprit search: which variations make build B differ from build A?

Like reprotest's `--auto-build`, each variation is tried alone: build B with the control
environment plus that one variation, and compare it with the control. Builds run in parallel,
as many at a time as the machine has CPUs.

- **Shared control.** Every trial is compared with the drill's own build A, as reprotest
  compares each experiment with its one control, provided a fresh control build made with the
  first round gives the same digest: the build does not depend on when it runs. If it does not
  (a build that reads the clock at a fine resolution, or randomness), the search falls back to
  **paired** trials: each variation built side by side with its own fresh control, so both see
  the same wall clock.
- **Confirm.** A variation whose build differed is built once more; if it then matches, it is
  reported `flaky` rather than a culprit.
- **Rest check.** B with every applied variation except the culprits: if that matches the
  control, the culprits explain the whole difference (`explained`).
- **Controls agree.** Every control build of the search is compared with build A; if one
  differs, the build is not deterministic even without variations and the culprits are marked
  unreliable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from harness.build import BuildOutput, BuildSession, BuildSpec, Progress, run_build, run_pair
from harness.variations import VariationPlan

_logger = logging.getLogger(__name__)

TrialRound = Literal["single", "confirm", "rest"]
SearchMode = Literal["shared-control", "paired"]


@dataclass(frozen=True)
class CulpritTrial:
    """One experiment build of the search, compared with a control.

    Attributes:
        round: single (one variation), confirm (the same again) or rest (all but culprits).
        variations: what B varied.
        identical: both built and their digests match.
        a_digest, b_digest: the tree digests compared (None when a build failed).
        a_failure, b_failure: why a build failed (empty when it succeeded).
        wall_s: the experiment build's wall time (the pair's, for paired trials).
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
    round_: TrialRound,
    varied: tuple[str, ...],
    control: str | None,
    control_failure: str,
    build: BuildOutput,
    wall_s: float | None = None,
) -> CulpritTrial:
    mine = _digest(build)
    return CulpritTrial(
        round_,
        varied,
        control is not None and mine == control,
        control,
        mine,
        control_failure,
        build.failure(),
        build.duration_s if wall_s is None else wall_s,
    )


@dataclass(frozen=True)
class CulpritReport:
    """What the culprit search found.

    Attributes:
        culprits: variations that alone make the builds differ (catalogue order).
        build_breakers: culprits under which build B failed outright.
        flaky: variations that differed once but not when built again.
        explained: B with every applied variation except the ones that differed matched the
            control (None: not checked, e.g. when every applied variation differed).
        controls_agree: every control build of the search gave build A's digest.
        mode: shared-control or paired (see the module docs).
        trials: every experiment build, in order.
        nondeterministic: two builds in the same environment, side by side, differ: the
            build is not deterministic at all, and no variation is blamed.
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

    def summary(self) -> str:
        """One line for people."""
        if self.nondeterministic:
            return (
                "not deterministic: two builds in the same environment differ, "
                "so no variation is to blame"
            )
        prefix = ""
        if not self.controls_agree:
            prefix = "the build's output changes from run to run even without variations"
            if self.mode == "paired":
                prefix += " (each variation was compared with a control built beside it)"
            prefix += "; "
        if not self.culprits:
            return prefix + "no single variation makes the builds differ"
        text = f"culprit{'s' if len(self.culprits) > 1 else ''}: {', '.join(self.culprits)}"
        text = prefix + text
        if self.build_breakers:
            text += f" (build fails under {', '.join(self.build_breakers)})"
        if self.flaky:
            text += f"; flaky, not counted: {', '.join(self.flaky)}"
        if self.explained is False:
            text += "; they do not explain the whole difference"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "culprits": list(self.culprits),
            "build_breakers": list(self.build_breakers),
            "flaky": list(self.flaky),
            "explained": self.explained,
            "controls_agree": self.controls_agree,
            "mode": self.mode,
            "nondeterministic": self.nondeterministic,
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
        reference_digest: the digest of the drill's own build A (the shared control).
        workers: builds run at the same time (default: the CPUs the engine has).
        confirm: build each differing variation a second time.
    """

    spec: BuildSpec
    plan: VariationPlan
    reference_digest: str | None = None
    workers: int | None = None
    confirm: bool = True


_Job = tuple[TrialRound | Literal["control"], tuple[str, ...]]


class _Runner:
    def __init__(self, search: CulpritSearch, session: BuildSession, say: Progress) -> None:
        self.search = search
        self.session = session
        self.say = say
        self.workers = max(1, search.workers or search.spec.image.capabilities.cpus)
        self.builds = 0

    def builds_of(self, jobs: Sequence[_Job]) -> list[BuildOutput]:
        """Build each job's environment (control or experiment), `workers` at a time."""
        plan = self.search.plan

        def one(index: int, job: _Job) -> BuildOutput:
            kind, varied = job
            env = plan.control if kind == "control" else plan.experiment(varied)
            tag = varied[0] if len(varied) == 1 else kind
            return run_build(self.session, self.search.spec, env, f"{tag}-{index}", keep=False)

        self.builds += len(jobs)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="cihub-trial") as pool:
            return list(pool.map(one, range(len(jobs)), jobs))

    def pairs_of(self, round_: TrialRound, sets: Sequence[tuple[str, ...]]) -> list[CulpritTrial]:
        """Each variation set built side by side with its own fresh control."""
        plan = self.search.plan

        def one(varied: tuple[str, ...]) -> CulpritTrial:
            tag = varied[0] if len(varied) == 1 else round_
            pair = run_pair(
                self.session,
                self.search.spec,
                plan.control,
                plan.experiment(varied),
                labels_ab=(f"{tag}-A", f"{tag}-B"),
                keep=False,
            )
            return _compared(round_, varied, _digest(pair.a), pair.a.failure(), pair.b, pair.wall_s)

        self.builds += 2 * len(sets)
        with ThreadPoolExecutor(max(1, self.workers // 2), thread_name_prefix="cihub-pair") as pool:
            return list(pool.map(one, sets))

    def report(self, trials: Sequence[CulpritTrial]) -> None:
        for trial in trials:
            outcome = "same" if trial.identical else "DIFFERS"
            if trial.breaks_the_build:
                outcome = f"DIFFERS (build B {trial.b_failure})"
            elif trial.a_failure:
                outcome = f"control build {trial.a_failure}"
            varied = trial.variations
            name = "+".join(varied) if len(varied) <= 2 else f"{len(varied)} variations"
            name = name or "no variation (control beside control)"
            self.say(f"  {trial.round} {name}: {outcome} ({trial.wall_s:.1f} s)")


def find_culprits(
    search: CulpritSearch, session: BuildSession, progress: Progress | None = None
) -> CulpritReport:
    """Build the control with each applied variation alone and name the culprits.

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
    say(
        f"culprit search: {len(names)} variation(s), each alone "
        f"({runner.workers} build(s) at a time)"
    )
    first = runner.builds_of([("control", ()), *(("single", (n,)) for n in names)])
    controls = [_digest(first[0])]
    mode: SearchMode = "shared-control"
    if reference is not None and controls[0] == reference:
        trials = [
            _compared("single", (n,), reference, "", build)
            for n, build in zip(names, first[1:], strict=True)
        ]
    else:
        mode = "paired"
        say(
            "a second control build differs from build A: the build depends on when it "
            "runs; trying each variation beside its own control instead"
        )
        paired = runner.pairs_of("single", [()])
        runner.report(paired)
        if not paired[0].identical:
            say("two builds in the same environment, side by side, differ: no variation to blame")
            report = CulpritReport(
                culprits=(),
                build_breakers=(),
                flaky=(),
                explained=None,
                controls_agree=False,
                mode=mode,
                trials=tuple(paired),
                builds=runner.builds,
                wall_s=time.monotonic() - started,
                nondeterministic=True,
            )
            say(report.summary())
            return report
        trials = runner.pairs_of("single", [(n,) for n in names])
        controls += [t.a_digest for t in [*paired, *trials]]
    runner.report(trials)
    differing = [t.variations[0] for t in trials if not t.identical]
    rest = [n for n in names if n not in differing]
    flaky: list[str] = []
    explained: bool | None = None
    second: list[CulpritTrial] = []
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
        if mode == "shared-control":
            built = runner.builds_of([("control", ()), *sets])
            controls.append(_digest(built[0]))
            second = [
                _compared(kind, varied, reference, "", build)
                for (kind, varied), build in zip(sets, built[1:], strict=True)
            ]
        else:
            for kind in ("confirm", "rest"):
                chosen = [varied for k, varied in sets if k == kind]
                if chosen:
                    second += runner.pairs_of(kind, chosen)
            controls += [t.a_digest for t in second]
        runner.report(second)
        flaky = [t.variations[0] for t in second if t.round == "confirm" and t.identical]
        checks = [t for t in second if t.round == "rest"]
        explained = checks[0].identical if checks else None
    culprits = [n for n in names if n in differing and n not in flaky]
    every = [*trials, *second]
    breakers = [
        n for n in culprits if any(t.breaks_the_build and t.variations == (n,) for t in every)
    ]
    report = CulpritReport(
        culprits=tuple(culprits),
        build_breakers=tuple(breakers),
        flaky=tuple(flaky),
        explained=explained,
        controls_agree=all(c is not None and c == reference for c in controls),
        mode=mode,
        trials=tuple(every),
        builds=runner.builds,
        wall_s=time.monotonic() - started,
    )
    say(report.summary())
    return report
