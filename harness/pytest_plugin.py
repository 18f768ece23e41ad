"""The cihub pytest plugin: a session-scoped `lab` fixture and the `--lab-*` options.

Registered through the `pytest11` entry point, so any test suite in an environment where cihub
is installed gets it. The lab of a session lives in `config.stash[LAB_KEY]`; under pytest-xdist
every worker gets its own lab, named after the run's uid and the worker id.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.drills.runner import RunSettings
from harness.sign import SigstoreSigner
from lab import Lab, LabConfig
from lab._internal.docker import docker_client
from lab.errors import LabError
from lab.images import IMAGE_MODES

_logger = logging.getLogger(__name__)

# The evidence fixture, `--evidence-dir` and the pipeline_run record live in their own module.
pytest_plugins = ["harness._internal.pytest_evidence"]

LAB_KEY = pytest.StashKey[Lab]()
"""Where the session's lab is kept once the `lab` fixture has started it."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cihub", "CI Intelligence Hub lab")
    group.addoption(
        "--lab-keep",
        action="store_true",
        default=False,
        help="keep the lab running after the session (`cihub lab down` removes it)",
    )
    group.addoption(
        "--lab-images",
        choices=IMAGE_MODES,
        default="offline",
        help="offline: bootstrap images from Debian packages (default); "
        "upstream: build on a pinned public debian image",
    )
    group.addoption(
        "--lab-timeout",
        type=float,
        default=60.0,
        help="seconds each lab service may take to become healthy (default 60)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: uses the real lab in Docker (builds images on first use)"
    )


def _run_identity(config: pytest.Config) -> tuple[str, str | None]:
    """(run uid, worker id): shared by all xdist workers of one run, unique per worker."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        return str(workerinput["testrunuid"]), str(workerinput["workerid"])
    return uuid.uuid4().hex, None


def _evidence_dir(config: pytest.Config) -> Path:
    value = getattr(config.option, "evidence_dir", None) or "evidence"
    return Path(value)


@pytest.fixture(scope="session")
def lab(pytestconfig: pytest.Config) -> Iterator[Lab]:
    """The containerized lab, up for the whole session (one per xdist worker).

    Its endpoints are in `lab.endpoints`; `lab.toxiproxy` controls the fault proxy. The lab is
    the run's own, named after the run (`cihub-test-<run>[-<worker>]`): the suite never
    removes, blocks or reuses a lab it did not start (`cihub lab down` reaps stale ones).
    """
    run_uid, worker = _run_identity(pytestconfig)
    try:
        client = docker_client()
        config = LabConfig(
            lab_id=f"cihub-test-{run_uid[:8]}" + (f"-{worker}" if worker else ""),
            session=run_uid,
            images=pytestconfig.getoption("lab_images"),
            evidence_dir=_evidence_dir(pytestconfig),
            startup_timeout=pytestconfig.getoption("lab_timeout"),
            keep=pytestconfig.getoption("lab_keep"),
            # A kept lab outlives the run like a `cihub lab up` one: not stale when the run
            # ends, removed by `cihub lab down`.
            persistent=pytestconfig.getoption("lab_keep"),
        )
        the_lab = Lab(config, client=client).start()
    except LabError as exc:
        pytest.fail(f"the lab did not come up: {exc.diagnostics()}", pytrace=False)
    pytestconfig.stash[LAB_KEY] = the_lab
    _sign_evidence_with(pytestconfig, the_lab)
    try:
        yield the_lab
    finally:
        the_lab.stop()
        del pytestconfig.stash[LAB_KEY]


def _sign_evidence_with(config: pytest.Config, the_lab: Lab) -> None:
    """From now on, evidence bundles are signed keylessly by the lab's Sigstore stack."""
    # Imported here, not at the top: pytest must load that plugin module itself (through
    # `pytest_plugins`) to rewrite its asserts.
    from harness._internal.pytest_evidence import EVIDENCE_KEY

    session = config.stash.get(EVIDENCE_KEY, None)
    trust_config = the_lab.endpoints.trust_config
    if session is None or trust_config is None or not session.keyless:
        return
    session.signer = SigstoreSigner(
        trust_config, the_lab.mint_token, the_lab.config.identity, the_lab.config.issuer
    )


@pytest.fixture
def drill_settings(request: pytest.FixtureRequest) -> RunSettings:
    """How this session's drills keep evidence: `run_drill(drill, drill_settings)` gives the same
    bundle, record and verdict as `cihub run` (signed keylessly through the lab by default)."""
    from harness._internal.pytest_evidence import EVIDENCE_KEY, evidence_signer

    session = request.config.stash[EVIDENCE_KEY]
    signer = evidence_signer(request)
    return RunSettings(
        evidence_dir=session.evidence_dir,
        signer=signer,
        pipeline=session.pipeline,
        session_id=session.run_id,
        progress=_logger.info,
    )
