"""pytest plugin part: the `evidence` fixture, `--evidence-dir`, and pipeline_run records.

Each test that uses `evidence` gets its own bundle, `<evidence-dir>/<run id>-<node id>`. When
the test ends (passed, failed, errored or skipped) the fixture writes `pytest/report.json`,
finalizes and signs the bundle, appends a pipeline_run record to
`<evidence-dir>/pipeline_run.ndjson`, and calls `pytest_cihub_evidence_finalized`.

Drills may declare what they are with a marker:
``@pytest.mark.evidence(scenario="dual-build", kind="dual-build", required=["determinism/"])``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from harness import hookspecs, telemetry
from harness._internal.signing import KEY_PREFIX, KEYLESS, SignSpec
from harness.errors import CihubError, StepFailed, VerificationFailed
from harness.evidence import EvidenceBundle, Signer, StepOutcome, Verdict

_logger = logging.getLogger(__name__)

DEFAULT_EVIDENCE_DIR = "evidence"
DEFAULT_PIPELINE = "cihub"
_FAILURE_TYPES = ("AssertionError", "Failed", StepFailed.__name__, VerificationFailed.__name__)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class EvidenceSession:
    """Per-session settings of the evidence fixture, in `config.stash[EVIDENCE_KEY]`.

    `signer` may be replaced (e.g. by a Sigstore signer) before tests run.
    """

    evidence_dir: Path
    run_id: str
    pipeline: str
    signer: Signer | None
    """None until the lab is up when signing keylessly (`--evidence-sign keyless`)."""
    root: Path
    keyless: bool = True
    _vcs: dict[str, Any] | None = None
    _vcs_done: bool = False
    _names: set[str] = field(default_factory=set)

    def claim_bundle_dir(self, nodeid: str) -> Path:
        """A new, unused bundle folder for test `nodeid` (reruns get a suffix)."""
        name = bundle_name(self.run_id, nodeid)
        while name in self._names or (self.evidence_dir / name).exists():
            name += "-x"
        self._names.add(name)
        return self.evidence_dir / name

    def vcs(self) -> dict[str, Any] | None:
        """The work tree's VCS facts, looked up once per session."""
        if not self._vcs_done:
            self._vcs = telemetry.vcs_facts(self.root)
            self._vcs_done = True
        return self._vcs


EVIDENCE_KEY = pytest.StashKey[EvidenceSession]()
_REPORTS_KEY = pytest.StashKey[dict[str, pytest.TestReport]]()
_EXCEPTIONS_KEY = pytest.StashKey[dict[str, tuple[str, str]]]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cihub", "CI Intelligence Hub lab")
    group.addoption(
        "--evidence-dir",
        dest="evidence_dir",
        default=None,
        metavar="DIR",
        help="where evidence bundles and pipeline_run.ndjson go "
        f"(default: ini cihub_evidence_dir, else '{DEFAULT_EVIDENCE_DIR}')",
    )
    parser.addini(
        "cihub_evidence_dir",
        help="folder for evidence bundles, relative to the ini file",
        default=DEFAULT_EVIDENCE_DIR,
    )
    group.addoption(
        "--evidence-sign",
        dest="evidence_sign",
        default=None,
        metavar="keyless|key:PATH",
        help="how evidence is signed: keyless through the lab's Sigstore stack (default; the "
        "lab comes up for it) or key:PATH, a local PEM private key "
        "(default: ini cihub_evidence_sign, else keyless)",
    )
    parser.addini(
        "cihub_evidence_sign",
        help="keyless (default) or key:PATH (relative to the ini file)",
        default=KEYLESS,
    )
    parser.addini(
        "cihub_pipeline",
        help="pipeline name in pipeline_run records (OTel cicd.pipeline.name)",
        default=DEFAULT_PIPELINE,
    )


def _session_run_id(config: pytest.Config) -> str:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and workerinput.get("testrunuid"):
        return _UNSAFE.sub("_", str(workerinput["testrunuid"]))[:16]
    explicit = os.environ.get("CIHUB_RUN_ID")
    if explicit:
        return _UNSAFE.sub("_", explicit)[:64]
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def _resolve_dir(config: pytest.Config) -> Path:
    option = config.getoption("evidence_dir")
    if option:
        return (config.invocation_params.dir / str(option)).resolve()
    base = config.inipath.parent if config.inipath else config.rootpath
    return (base / str(config.getini("cihub_evidence_dir"))).resolve()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "evidence(scenario=None, kind='test', required=()): what the evidence fixture records "
        "for this drill: scenario name and kind, and paths the bundle must hold",
    )
    evidence_dir = _resolve_dir(config)
    config.option.evidence_dir = str(evidence_dir)
    spec = _sign_spec(config)
    config.stash[EVIDENCE_KEY] = EvidenceSession(
        evidence_dir=evidence_dir,
        run_id=_session_run_id(config),
        pipeline=str(config.getini("cihub_pipeline")),
        signer=None if spec.keyless else spec.key_signer(),
        root=config.rootpath,
        keyless=spec.keyless,
    )


def _sign_spec(config: pytest.Config) -> SignSpec:
    option = config.getoption("evidence_sign")
    value = str(option or config.getini("cihub_evidence_sign") or KEYLESS)
    if not option and value.startswith(KEY_PREFIX):  # an ini path is relative to the ini file
        base = config.inipath.parent if config.inipath else config.rootpath
        value = KEY_PREFIX + str(base / value[len(KEY_PREFIX) :])
    try:
        return SignSpec.parse(value)
    except CihubError as exc:
        raise pytest.UsageError(f"--evidence-sign: {exc.diagnostics()}") from exc


def evidence_signer(request: pytest.FixtureRequest) -> Signer:
    """The session's evidence signer; signing keylessly brings the lab up first.

    Raises:
        pytest.fail: keyless signing without the cihub lab plugin, or a lab without Sigstore.
    """
    session = request.config.stash[EVIDENCE_KEY]
    if session.signer is None:
        try:
            request.getfixturevalue("lab")  # its setup hands the session a keyless signer
        except pytest.FixtureLookupError:
            pytest.fail(
                "evidence is signed keylessly through the lab, but the cihub lab plugin is not "
                "loaded: load it, or pass --evidence-sign key:PATH",
                pytrace=False,
            )
    if session.signer is None:
        pytest.fail("the lab has no Sigstore stack to sign evidence with", pytrace=False)
    return session.signer


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(_REPORTS_KEY, {})[report.when] = report
    if call.excinfo is not None:
        message = str(call.excinfo.value).strip()
        first = message.splitlines()[0] if message else call.excinfo.typename
        item.stash.setdefault(_EXCEPTIONS_KEY, {})[report.when] = (call.excinfo.typename, first)
    return report


def bundle_name(run_id: str, nodeid: str) -> str:
    """A filesystem-safe, unique folder name for the bundle of test `nodeid` in run `run_id`."""
    safe = _UNSAFE.sub("_", nodeid).strip("_.")[:80] or "test"
    return f"{run_id}-{safe}-{hashlib.sha256(nodeid.encode()).hexdigest()[:8]}"


def _outcome(item: pytest.Item) -> tuple[str, StepOutcome, list[dict[str, str]]]:
    """(pytest outcome, pipeline result, errors) from the reports made so far."""
    reports = item.stash.get(_REPORTS_KEY, {})
    exceptions = item.stash.get(_EXCEPTIONS_KEY, {})
    errors = []
    result: StepOutcome = "success"
    outcome = "passed"
    for when in ("setup", "call"):
        report = reports.get(when)
        if report is None:
            continue
        if report.skipped:
            return "skipped", "skip", []
        if report.failed:
            typename, message = exceptions.get(when, ("Error", report.longreprtext[:200]))
            outcome = "failed"
            failure = when == "call" and typename in _FAILURE_TYPES
            result = "failure" if failure else ("timeout" if "Timeout" in message else "error")
            errors.append({"message": message, "type": typename, "phase": when})
            break
    if "call" not in reports and outcome == "passed":
        outcome, result = "failed", "error"
        errors.append({"message": "the test did not run", "type": "NotRun", "phase": "setup"})
    return outcome, result, errors


@pytest.fixture
def evidence(request: pytest.FixtureRequest) -> Iterator[EvidenceBundle]:
    """This test's own evidence bundle, finalized with a pipeline_run record when it ends.

    A failed test still gets its bundle and its record, with the failure in both.
    """
    session = request.config.stash[EVIDENCE_KEY]
    item = request.node
    marker = item.get_closest_marker("evidence")
    options = dict(marker.kwargs) if marker else {}
    root = session.claim_bundle_dir(item.nodeid)
    bundle = EvidenceBundle.create(
        root,
        run_id=root.name,
        scenario=options.get("scenario") or item.nodeid,
        required=options.get("required", ()),
        tool_versions={"pytest": pytest.__version__},
    )
    started = datetime.now(UTC)
    lab: Any = None
    try:
        evidence_signer(request)
        if "lab" in request.fixturenames or session.keyless:
            lab = request.getfixturevalue("lab")
    except BaseException as exc:
        _finish(request, session, bundle, started, None, setup_error=exc)
        raise
    yield bundle
    _finish(request, session, bundle, started, lab)


def _finish(
    request: pytest.FixtureRequest,
    session: EvidenceSession,
    bundle: EvidenceBundle,
    started: datetime,
    lab: Any,
    setup_error: BaseException | None = None,
) -> None:
    item = request.node
    result: StepOutcome
    if setup_error is not None:
        message = str(setup_error).strip().splitlines()
        outcome, result = "failed", "error"
        errors = [
            {
                "message": message[0] if message else type(setup_error).__name__,
                "type": type(setup_error).__name__,
                "phase": "setup",
            }
        ]
    else:
        outcome, result, errors = _outcome(item)
    errors = [{k: bundle.redactor.redact(v) for k, v in e.items()} for e in errors]
    if bundle.finalized is None:
        reports = item.stash.get(_REPORTS_KEY, {})
        bundle.write_json(
            "pytest/report.json",
            {
                "nodeid": item.nodeid,
                "outcome": outcome,
                "result": result,
                "errors": errors,
                "phases": {
                    when: {
                        "outcome": r.outcome,
                        "duration_s": round(r.duration, 6),
                        "longrepr": bundle.redactor.redact(r.longreprtext) if r.failed else "",
                    }
                    for when, r in sorted(reports.items())
                },
            },
        )
        if "test" not in bundle.predicate.verdicts:
            verdict: Verdict = (
                "pass" if outcome == "passed" else "fail" if outcome == "failed" else "skip"
            )
            bundle.set_verdict("test", verdict, errors[0]["message"] if errors else "")
        bundle.finalize(session.signer)
    facts = _lab_facts(lab)
    options = dict(marker.kwargs) if (marker := item.get_closest_marker("evidence")) else {}
    finished = datetime.now(UTC)
    record = telemetry.record_for_bundle(
        bundle,
        pipeline=session.pipeline,
        result=result,
        evidence_dir=session.evidence_dir,
        scenario_kind=options.get("kind", "test"),
        started_at=started,
        finished_at=finished,
        duration_s=(finished - started).total_seconds(),
        errors=errors,
        vcs=session.vcs(),
        lab=facts,
        session_id=session.run_id,
        test={"nodeid": item.nodeid, "outcome": outcome},
    )
    try:
        telemetry.append_record(record, session.evidence_dir)
    except CihubError as exc:
        raise pytest.fail.Exception(
            f"pipeline_run record of {item.nodeid} not written: {exc.diagnostics()}", pytrace=False
        ) from exc
    request.config.hook.pytest_cihub_evidence_finalized(bundle=bundle, record=record)


def _lab_facts(lab: Any) -> dict[str, Any] | None:
    facts = getattr(lab, "facts", None)
    if not callable(facts):
        return None
    try:
        value = facts()
    except Exception as exc:
        _logger.warning("lab.facts() failed: %s", exc)
        return {"facts_error": f"{type(exc).__name__}: {exc}"}
    return dict(value) if isinstance(value, dict) else None
