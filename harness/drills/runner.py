"""The one drill runner: everything around a drill's steps.

`cihub run <drill>`, the pytest scenarios and the tox environments all go through `run_drill`,
so one drill gives the same evidence, the same pipeline_run record and the same verdict however
it is started. The runner owns:

- the evidence bundle (created, finalized, signed; kept and marked incomplete when the drill
  stops early, never lost);
- the verdict: what the drill observed against what its scenario expected. `result` follows the
  expectation, so an expected finding (a build the scenario says is not reproducible, with the
  culprits it names) passes and an unexpected one fails;
- the pipeline_run record (with the observed finding and the expectation);
- SIGINT and SIGTERM, from the moment `run_drill` is entered: the drill's containers and child
  processes are stopped, the bundle is finalized as cancelled, the record is written, then the
  interrupt goes on (exit 130). A signal while the bundle is being created cancels the drill
  before its steps; one while the finished bundle is sealed waits until its record is written.

A drill is a `Drill`: its steps only (see `harness.drills.determinism`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import signal
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from harness import _exit, telemetry
from harness.errors import CihubError
from harness.evidence import DrillOutcome, EvidenceBundle, Signer, StepOutcome
from harness.telemetry import ScenarioKind
from lab.errors import LabError

_logger = logging.getLogger(__name__)

Progress = Callable[[str], None]
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class DrillFinding:
    """What a drill's steps found, judged against the scenario's expectation.

    Attributes:
        observed: the finding, e.g. `reproducible`, `not-reproducible`, `build-failed`.
        expected: what the scenario expected, for people and records.
        met: whether the finding met the expectation.
        judged: False when the drill could not judge at all (e.g. a build command failed where
            the scenario expected a verdict): the run is then an error, not a failure.
        detail: one line for people.
        lines: more lines for people (culprits, diffoscope, problems).
        record: fields the drill adds to its pipeline_run record (e.g. `determinism`).
        problems: how the finding differs from the expectation (empty when met).
    """

    observed: str
    expected: str
    met: bool
    detail: str
    judged: bool = True
    lines: tuple[str, ...] = ()
    record: Mapping[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    @property
    def result(self) -> StepOutcome:
        if self.met:
            return "success"
        return "failure" if self.judged else "error"


class Drill(Protocol):
    """One drill: a typed scenario and its steps. The runner does everything else."""

    @property
    def kind(self) -> ScenarioKind:
        """The pipeline_run `scenario.kind` (dual-build, release, chaos, dr)."""
        ...

    @property
    def check(self) -> str:
        """The name of the drill's verdict in the bundle (and of verify's check)."""
        ...

    @property
    def name(self) -> str:
        """The scenario name."""
        ...

    @property
    def subject(self) -> Path | None:
        """The folder the drill works on (its VCS facts go into the record), if any."""
        ...

    @property
    def required(self) -> Sequence[str]:
        """Bundle paths the drill must produce."""
        ...

    def run(self, bundle: EvidenceBundle, progress: Progress | None) -> DrillFinding:
        """Run the steps, writing evidence into `bundle` (the runner finalizes it)."""
        ...

    def cancel(self) -> None:
        """Stop the drill's containers and child processes now (called from a signal handler,
        on the main thread, while `run` is interrupted)."""
        ...


@dataclass(frozen=True)
class RunSettings:
    """Where evidence goes and how it is signed: the same for every drill of a run.

    Attributes:
        evidence_dir: bundles go in `<evidence_dir>/<run id>/`, records in its
            `pipeline_run.ndjson`.
        signer: signs the manifest (keyless Sigstore by default; a local key when asked).
        pipeline: the pipeline name in records.
        session_id: groups the records of one pytest session or CI job.
        lab: the lab's facts, for the record.
        progress: called with a line for people at each long step.
    """

    evidence_dir: Path
    signer: Signer | None
    pipeline: str = "cihub"
    session_id: str | None = None
    lab: Mapping[str, Any] | None = None
    progress: Progress | None = None


@dataclass(frozen=True)
class DrillRun:
    """A finished run: the finding, the result, the bundle and the record."""

    finding: DrillFinding | None
    result: StepOutcome
    detail: str
    bundle: Path
    manifest_digest: str | None
    signed_by: str | None
    record: Mapping[str, Any]
    ndjson: Path | None

    @property
    def passed(self) -> bool:
        return self.result == "success"

    @property
    def exit_code(self) -> int:
        """0 the expectation was met, 1 it was not, 2 the drill could not judge, 130 cancelled."""
        return {
            "success": _exit.SUCCESS,
            "failure": _exit.FAILED,
            "cancellation": _exit.CANCELLED,
        }.get(self.result, _exit.ERROR)

    def lines(self) -> list[str]:
        """What people read at the end of a run."""
        out = [f"{self.verdict_word()}: {self.detail}"]
        if self.finding is not None:
            out += list(self.finding.lines)
        out.append(f"evidence: {self.bundle} ({self.manifest_digest or 'not signed'})")
        if self.signed_by:
            out.append(f"signed by: {self.signed_by}")
        return out

    def verdict_word(self) -> str:
        return {"success": "PASS", "failure": "FAIL", "cancellation": "CANCELLED"}.get(
            self.result, "ERROR"
        )

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "result": self.result,
            "passed": self.passed,
            "exit_code": self.exit_code,
            "detail": self.detail,
            "bundle": str(self.bundle),
            "manifest_digest": self.manifest_digest,
            "signed_by": self.signed_by,
            "pipeline_run": str(self.ndjson) if self.ndjson else None,
        }
        if self.finding is not None:
            value.update(
                observed=self.finding.observed,
                expected=self.finding.expected,
                expectation_met=self.finding.met,
                problems=list(self.finding.problems),
            )
        return value


class DrillCancelled(KeyboardInterrupt):
    """SIGINT or SIGTERM reached a running drill."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def run_id_for(kind: str, name: str) -> str:
    """`<kind>-<scenario>-<UTC stamp>-<6 hex>`: unique, sortable, safe as a folder name."""
    safe = _UNSAFE.sub("_", name).strip("_.")[:60] or "drill"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{kind}-{safe}-{stamp}-{uuid.uuid4().hex[:6]}"


def run_drill(drill: Drill, settings: RunSettings) -> DrillRun:
    """Run `drill`: its steps, then the verdict, the signed bundle and the record.

    Returns:
        the run; `exit_code` is 0 when the expectation was met, 1 when not, 2 when the drill
        could not judge (e.g. a build command failed).

    Raises:
        ConfigError, InfraError, LabError: bad input or broken infrastructure; the bundle is
            kept (incomplete, signed if possible) and an `error` record is written first.
        DrillCancelled: SIGINT/SIGTERM; the bundle is kept as cancelled and a `cancellation`
            record is written first.
    """
    # Steps may run tools in other folders (a subject's): the bundle's path must not depend on
    # the current one.
    settings = dataclasses.replace(settings, evidence_dir=settings.evidence_dir.absolute())
    with _DrillSignals.installed(drill) as signals:
        run = _run(drill, settings, signals)
        signals.raise_held()  # a signal while the evidence was sealed: it is, now stop
    return run


def _run(drill: Drill, settings: RunSettings, signals: _DrillSignals) -> DrillRun:
    run_id = run_id_for(drill.kind, drill.name)
    bundle = EvidenceBundle.create(
        settings.evidence_dir / run_id,
        run_id=run_id,
        scenario=drill.name,
        required=tuple(drill.required),
        tool_versions={},
    )
    started = datetime.now(UTC)
    try:
        with signals.cancelling():
            finding = drill.run(bundle, settings.progress)
    except KeyboardInterrupt as exc:
        stopped = signals.cancellation(exc)
        _stop_early(drill, bundle, settings, started, stopped, "cancellation")
        if stopped is exc:
            raise
        raise stopped from exc
    except (CihubError, LabError) as exc:
        _stop_early(drill, bundle, settings, started, exc, "error")
        raise
    except Exception as exc:
        _stop_early(drill, bundle, settings, started, exc, "error")
        raise
    bundle.set_verdict(drill.check, "pass" if finding.met else "fail", finding.detail)
    bundle.set_outcome(
        DrillOutcome(
            drill=drill.check,
            observed=finding.observed,
            expected=finding.expected,
            met=finding.met,
            result=finding.result,
            detail=finding.detail,
        )
    )
    errors: list[dict[str, str]] = []
    if not finding.judged:
        errors.append({"message": finding.detail, "type": "NotJudged", "step": drill.check})
    result = finding.result
    signed_by: str | None = None
    digest: str | None = None
    detail = finding.detail
    try:
        finalized = bundle.finalize(settings.signer)
        digest, signed_by = finalized.digest, finalized.signed_by
    except (CihubError, LabError) as exc:
        # The evidence stays (incomplete): signing is part of the proof, so no pass without it.
        message = _first_line(exc)
        _logger.error("%s: the bundle could not be signed: %s", bundle.root, message)
        result, detail = "error", f"{finding.detail}; not signed: {message}"
        errors.append({"message": message, "type": type(exc).__name__, "step": "sign"})
    record = _record(drill, bundle, settings, result, started, errors, finding)
    ndjson = telemetry.append_record(record, settings.evidence_dir)
    return DrillRun(finding, result, detail, bundle.root, digest, signed_by, record, ndjson)


def _record(
    drill: Drill,
    bundle: EvidenceBundle,
    settings: RunSettings,
    result: StepOutcome,
    started: datetime,
    errors: Sequence[Mapping[str, str]],
    finding: DrillFinding | None,
) -> dict[str, Any]:
    record = telemetry.record_for_bundle(
        bundle,
        pipeline=settings.pipeline,
        result=result,
        evidence_dir=settings.evidence_dir,
        scenario_kind=drill.kind,
        started_at=started,
        finished_at=datetime.now(UTC),
        errors=[{k: bundle.redactor.redact(v) for k, v in e.items()} for e in errors],
        vcs=telemetry.vcs_facts(drill.subject) if drill.subject is not None else None,
        lab=settings.lab,
        session_id=settings.session_id,
    )
    if finding is not None:
        record.update(finding.record)
        record["expectation"] = {
            "observed": finding.observed,
            "expected": finding.expected,
            "met": finding.met,
            **({"problems": list(finding.problems)} if finding.problems else {}),
        }
    return record


def _stop_early(
    drill: Drill,
    bundle: EvidenceBundle,
    settings: RunSettings,
    started: datetime,
    exc: BaseException,
    result: StepOutcome,
) -> None:
    """Keep the evidence of a drill that stopped early: incomplete, signed, recorded."""
    if bundle.finalized is not None:
        return
    message = _first_line(exc)
    if isinstance(exc, KeyboardInterrupt):
        message = f"cancelled by {exc.args[0] if exc.args else 'SIGINT'}"
    try:
        bundle.set_verdict(drill.check, "fail", f"the drill stopped: {message}")
        observed = "cancelled" if result == "cancellation" else "error"
        bundle.set_outcome(
            DrillOutcome(drill.check, observed, "", met=False, result=result, detail=message)
        )
        with contextlib.suppress(CihubError, LabError):
            bundle.finalize(settings.signer, complete=False)
        if bundle.finalized is None:
            bundle.finalize(None, complete=False)
    except Exception as inner:  # the original error matters more
        _logger.warning("could not finalize %s: %s", bundle.root, inner)
    errors = [{"message": message, "type": type(exc).__name__}]
    try:
        record = _record(drill, bundle, settings, result, started, errors, None)
        telemetry.append_record(record, settings.evidence_dir)
    except Exception as inner:
        _logger.warning("could not write the record of %s: %s", bundle.root, inner)


class _DrillSignals:
    """SIGINT and SIGTERM from the moment `run_drill` is entered until it returns.

    While the steps run, the first signal stops the drill's work (`Drill.cancel`) and raises
    `DrillCancelled`, so the bundle is kept as cancelled and a `cancellation` record written.
    Before the steps (the bundle is being created) a signal is held and cancels the drill as
    soon as they would start; after them (the bundle is sealed, the record written) it is held
    until the record is out, then raised: evidence is never cut in half. A second signal while
    the first is being handled is ignored.
    """

    def __init__(self, drill: Drill) -> None:
        self._drill = drill
        self._held: int | None = None
        self._live = False

    @classmethod
    @contextlib.contextmanager
    def installed(cls, drill: Drill) -> Iterator[_DrillSignals]:
        signals = cls(drill)
        if threading.current_thread() is not threading.main_thread():
            yield signals  # only the main thread can take signals; the caller's handlers stay
            return
        previous = {
            signum: signal.signal(signum, signals._handle)
            for signum in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield signals
        finally:
            for signum, old in previous.items():
                signal.signal(signum, old)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._held is not None:
            return  # a second signal while cancelling: let the first one finish
        self._held = signum
        if self._live:
            self._cancel()

    def _cancel(self) -> None:
        assert self._held is not None
        _logger.warning("%s: stopping the drill's containers", signal.Signals(self._held).name)
        try:
            self._drill.cancel()
        finally:
            raise DrillCancelled(self._held)

    @contextlib.contextmanager
    def cancelling(self) -> Iterator[None]:
        """While the steps run: a signal (or one held until now) cancels the drill."""
        self._live = True
        try:
            if self._held is not None:
                self._cancel()
            yield
        finally:
            self._live = False

    def cancellation(self, exc: KeyboardInterrupt) -> KeyboardInterrupt:
        """What stopped the drill: the signal taken, whichever KeyboardInterrupt carried it
        out (code unwinding from `DrillCancelled` may raise its own, e.g. a cancelled build's).
        """
        if self._held is None or isinstance(exc, DrillCancelled):
            return exc
        return DrillCancelled(self._held)

    def raise_held(self) -> None:
        """Raise `DrillCancelled` for a signal held until now."""
        if self._held is not None:
            raise DrillCancelled(self._held)


def _first_line(exc: BaseException) -> str:
    diagnostics = getattr(exc, "diagnostics", None)
    text = diagnostics() if callable(diagnostics) else str(exc)
    text = str(text).strip()
    return text.splitlines()[0] if text else type(exc).__name__
