"""The drill runner with fake drills: verdicts follow the expectation, evidence is never lost."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from harness import _exit
from harness.drills import DrillCancelled, DrillFinding, RunSettings, run_drill
from harness.errors import ConfigError, InfraError
from harness.evidence import EvidenceBundle, KeySigner, Manifest, TrustPins, verify_bundle
from harness.telemetry import NDJSON_NAME, validate_ndjson


class FakeDrill:
    """A determinism-shaped drill whose steps are a function."""

    kind = "dual-build"
    check = "determinism"
    name = "fake"
    subject: Path | None = None
    required: Sequence[str] = ("determinism/",)

    def __init__(self, steps: Callable[[EvidenceBundle], DrillFinding]) -> None:
        self._steps = steps
        self.cancelled = 0

    def run(self, bundle: EvidenceBundle, progress: Any) -> DrillFinding:
        return self._steps(bundle)

    def cancel(self) -> None:
        self.cancelled += 1


def _differing(bundle: EvidenceBundle, expect: dict[str, Any] | None) -> None:
    scenario: dict[str, Any] = {"name": "fake"}
    if expect is not None:
        scenario["expect"] = expect
    bundle.write_json("determinism/scenario.json", scenario)
    bundle.write_text("determinism/diff.txt", "--- A/o.txt\n+++ B/o.txt\n")
    bundle.write_json(
        "determinism/result.json", {"verdict": "not-reproducible", "culprits": ["time"]}
    )


def _finding(observed: str, expected: str, *, met: bool, judged: bool = True) -> DrillFinding:
    return DrillFinding(observed, expected, met, f"{observed}", judged=judged)


SIGNER = KeySigner.from_secret(7)
PINS = TrustPins(keys=(SIGNER.public_key_pem,))


@pytest.fixture
def settings(tmp_path: Path) -> RunSettings:
    return RunSettings(tmp_path / "evidence", SIGNER)


def _record(settings: RunSettings) -> dict[str, Any]:
    lines = (settings.evidence_dir / NDJSON_NAME).read_text().splitlines()
    assert len(lines) == 1
    assert validate_ndjson(settings.evidence_dir / NDJSON_NAME).valid == 1
    value: dict[str, Any] = json.loads(lines[0])
    return value


def test_an_expected_finding_passes_and_says_what_was_observed(settings: RunSettings) -> None:
    def steps(bundle: EvidenceBundle) -> DrillFinding:
        _differing(bundle, {"verdict": "not-reproducible", "culprits": ["time"]})
        return _finding("not-reproducible", "not-reproducible (culprits: time)", met=True)

    run = run_drill(FakeDrill(steps), settings)

    assert (run.result, run.exit_code, run.passed) == ("success", _exit.SUCCESS, True)
    record = _record(settings)
    assert record["result"] == "success"
    assert record["expectation"] == {
        "observed": "not-reproducible",
        "expected": "not-reproducible (culprits: time)",
        "met": True,
    }
    manifest = Manifest.from_path(run.bundle / "manifest.json")
    assert manifest.predicate.outcome is not None
    assert manifest.predicate.outcome.observed == "not-reproducible"
    assert manifest.predicate.verdicts["determinism"].verdict == "pass"
    report = verify_bundle(run.bundle, pins=PINS)
    assert report.passed, [c.to_json() for c in report.failures]
    determinism = {c.name: c for c in report.checks}["determinism"]
    assert determinism.status == "ok", determinism.detail
    assert "as the scenario expects" in determinism.detail


def test_an_unexpected_finding_fails(settings: RunSettings) -> None:
    def steps(bundle: EvidenceBundle) -> DrillFinding:
        _differing(bundle, None)
        return _finding("not-reproducible", "reproducible", met=False)

    run = run_drill(FakeDrill(steps), settings)

    assert (run.result, run.exit_code) == ("failure", _exit.FAILED)
    assert _record(settings)["result"] == "failure"
    report = verify_bundle(run.bundle, pins=PINS)
    assert [c.name for c in report.failures] == ["determinism", "verdicts"]


def test_a_finding_the_files_do_not_back_fails_verify(settings: RunSettings) -> None:
    # The drill claims its expectation was met, but the scenario expected other culprits.
    def steps(bundle: EvidenceBundle) -> DrillFinding:
        _differing(bundle, {"verdict": "not-reproducible", "culprits": ["umask"]})
        return _finding("not-reproducible", "not-reproducible (culprits: umask)", met=True)

    run = run_drill(FakeDrill(steps), settings)

    checks = {c.name: c for c in verify_bundle(run.bundle, pins=PINS).checks}
    assert checks["determinism"].status == "fail"
    assert "expected not-reproducible with culprits umask" in checks["determinism"].detail


def test_a_drill_that_could_not_judge_is_an_error(settings: RunSettings) -> None:
    def steps(bundle: EvidenceBundle) -> DrillFinding:
        bundle.write_text("determinism/diff.txt", "")
        return _finding("build-failed", "reproducible", met=False, judged=False)

    run = run_drill(FakeDrill(steps), settings)

    assert (run.result, run.exit_code) == ("error", _exit.ERROR)
    record = _record(settings)
    assert record["result"] == "error"
    assert record["errors"][0]["type"] == "NotJudged"


def test_bad_input_keeps_an_incomplete_signed_bundle_and_an_error_record(
    settings: RunSettings,
) -> None:
    def steps(bundle: EvidenceBundle) -> DrillFinding:
        bundle.write_text("determinism/notes.txt", "started")
        raise ConfigError("subject /nowhere: does not exist")

    with pytest.raises(ConfigError):
        run_drill(FakeDrill(steps), settings)

    record = _record(settings)
    assert record["result"] == "error"
    assert record["errors"][0]["message"] == "subject /nowhere: does not exist"
    bundle = settings.evidence_dir / record["evidence"]["bundle_path"]
    assert (bundle / "INCOMPLETE").exists()
    assert (bundle / "determinism/notes.txt").read_text() == "started"
    assert not verify_bundle(bundle).passed


def test_sigterm_cancels_the_drill_and_keeps_its_evidence(settings: RunSettings) -> None:
    def steps(bundle: EvidenceBundle) -> DrillFinding:
        bundle.write_text("determinism/notes.txt", "building")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the handler interrupts this
        raise AssertionError("not cancelled")

    drill = FakeDrill(steps)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(DrillCancelled) as caught:
        run_drill(drill, settings)

    assert caught.value.signum == signal.SIGTERM
    assert drill.cancelled == 1
    assert signal.getsignal(signal.SIGTERM) is before
    record = _record(settings)
    assert record["result"] == "cancellation"
    assert "SIGTERM" in record["errors"][0]["message"]
    bundle = settings.evidence_dir / record["evidence"]["bundle_path"]
    manifest = Manifest.from_path(bundle / "manifest.json")
    assert manifest.predicate.outcome is not None
    assert manifest.predicate.outcome.observed == "cancelled"
    assert (bundle / "INCOMPLETE").exists()


class _BrokenSigner:
    identity = "broken"
    signature_file = "manifest.sigstore.json"

    def sign(self, data: bytes) -> bytes:
        raise InfraError("signing failed: rekor unreachable")


def test_unsigned_evidence_is_never_a_pass(tmp_path: Path) -> None:
    settings = RunSettings(tmp_path / "evidence", _BrokenSigner())

    def steps(bundle: EvidenceBundle) -> DrillFinding:
        bundle.write_text("determinism/diff.txt", "")
        return _finding("reproducible", "reproducible", met=True)

    run = run_drill(FakeDrill(steps), settings)

    assert (run.result, run.exit_code) == ("error", _exit.ERROR)
    assert "not signed: signing failed: rekor unreachable" in run.detail
    assert _record(settings)["result"] == "error"
    assert (run.bundle / "INCOMPLETE").exists()


def test_another_drills_outcome_says_nothing_about_the_diff(settings: RunSettings) -> None:
    # A release records its gate's finding; its dual build's empty diff still passes on its own.
    drill = FakeDrill(lambda bundle: _empty_diff(bundle, "allowed"))
    drill.check = "release"
    run = run_drill(drill, settings)
    checks = {c.name: c for c in verify_bundle(run.bundle, pins=PINS).checks}
    assert checks["determinism"].status == "ok", checks["determinism"].detail
    assert run.passed


def _empty_diff(bundle: EvidenceBundle, observed: str) -> DrillFinding:
    bundle.write_text("determinism/diff.txt", "")
    return _finding(observed, observed, met=True)


def test_a_relative_evidence_dir_gives_an_absolute_bundle_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Steps run tools in other folders (the release's SBOM step runs in the subject).
    monkeypatch.chdir(tmp_path)
    seen: list[Path] = []

    def steps(bundle: EvidenceBundle) -> DrillFinding:
        seen.append(bundle.root)
        return _empty_diff(bundle, "reproducible")

    run = run_drill(FakeDrill(steps), RunSettings(Path("evidence"), SIGNER))
    assert seen[0].is_absolute() and run.bundle == seen[0]
    assert run.bundle.parent == tmp_path / "evidence"
    assert _record(RunSettings(tmp_path / "evidence", SIGNER))["evidence"]["bundle_path"] == (
        run.bundle.name
    )


def test_a_signal_while_the_bundle_is_created_cancels_before_the_steps(
    settings: RunSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.drills import runner

    real_create = runner.EvidenceBundle.create

    def create(*args: Any, **kwargs: Any) -> EvidenceBundle:
        os.kill(os.getpid(), signal.SIGTERM)  # before the bundle exists: held
        return real_create(*args, **kwargs)

    monkeypatch.setattr(runner.EvidenceBundle, "create", create)

    def steps(bundle: EvidenceBundle) -> DrillFinding:
        raise AssertionError("the steps ran after a SIGTERM")

    drill = FakeDrill(steps)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(DrillCancelled) as caught:
        run_drill(drill, settings)
    assert caught.value.signum == signal.SIGTERM and drill.cancelled == 1
    assert signal.getsignal(signal.SIGTERM) is before
    record = _record(settings)
    assert record["result"] == "cancellation"
    assert "SIGTERM" in record["errors"][0]["message"]
    bundle = settings.evidence_dir / record["evidence"]["bundle_path"]
    manifest = Manifest.from_path(bundle / "manifest.json")
    assert manifest.predicate.outcome is not None
    assert manifest.predicate.outcome.observed == "cancelled"


def test_a_signal_is_named_even_when_another_interrupt_carries_it_out(
    settings: RunSettings,
) -> None:
    from harness.build_session import BuildCancelled

    def steps(bundle: EvidenceBundle) -> DrillFinding:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        finally:  # a build unwinding from the cancellation raises its own
            raise BuildCancelled("the builds were cancelled")

    drill = FakeDrill(steps)
    with pytest.raises(KeyboardInterrupt) as caught:  # any, so a wrong one fails the test
        run_drill(drill, settings)
    assert isinstance(caught.value, DrillCancelled), repr(caught.value)
    assert caught.value.signum == signal.SIGTERM and drill.cancelled == 1
    record = _record(settings)
    assert record["result"] == "cancellation"
    assert record["errors"][0]["message"] == "cancelled by SIGTERM"


class _SignalWhileSigning(KeySigner):
    """The test key, sent SIGINT while it signs."""

    def sign(self, data: bytes) -> bytes:
        os.kill(os.getpid(), signal.SIGINT)
        return super().sign(data)


def test_a_signal_while_the_evidence_is_sealed_waits_for_the_record(tmp_path: Path) -> None:
    settings = RunSettings(tmp_path / "evidence", _SignalWhileSigning.from_secret(7))

    def steps(bundle: EvidenceBundle) -> DrillFinding:
        _differing(bundle, {"verdict": "not-reproducible", "culprits": ["time"]})
        return _finding("not-reproducible", "not-reproducible", met=True)

    drill = FakeDrill(steps)
    with pytest.raises(DrillCancelled) as caught:
        run_drill(drill, settings)
    assert caught.value.signum == signal.SIGINT
    assert drill.cancelled == 0  # nothing was left to stop
    record = _record(settings)  # the finished run's record, signed bundle and all
    assert record["result"] == "success"
    bundle = settings.evidence_dir / record["evidence"]["bundle_path"]
    assert verify_bundle(bundle, pins=PINS).passed
    assert not (bundle / "INCOMPLETE").exists()
