from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

from harness.evidence import MANIFEST, TestKeyVerifier, verify_bundle
from harness.telemetry import validate_ndjson

DATA = Path(__file__).resolve().parents[3] / "data"
GOLDEN = DATA / "golden_bundle"


def _maker() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_golden_bundle", DATA / "make_golden_bundle.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_golden_bundle_passes_every_check() -> None:
    maker = _maker()
    report = verify_bundle(GOLDEN, verifier=TestKeyVerifier([maker.signer().public_key_pem]))
    assert report.passed, report.failures
    assert {c.status for c in report.checks} == {"ok"}
    assert report.run_id == "golden-run-0001"


def test_the_golden_bundle_is_what_the_script_makes(tmp_path: Path) -> None:
    """After an intended format change, run `python tests/data/make_golden_bundle.py`."""
    maker = _maker()
    fresh = maker.build(tmp_path / "golden_bundle")
    assert fresh.finalized is not None
    assert (tmp_path / "golden_bundle" / MANIFEST).read_bytes() == (GOLDEN / MANIFEST).read_bytes()


def test_the_golden_bundle_packs_and_verifies(tmp_path: Path) -> None:
    copy = tmp_path / "golden_bundle"
    shutil.copytree(GOLDEN, copy)
    from harness.evidence import pack_bundle

    assert verify_bundle(pack_bundle(copy)).passed


def test_the_sample_ndjson_validates() -> None:
    errors: list[object] = []
    report = validate_ndjson(DATA / "pipeline_run.sample.ndjson", errors.append)
    assert report.valid and report.lines == 3 and errors == []
