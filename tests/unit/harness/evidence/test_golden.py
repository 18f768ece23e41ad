from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

from harness.evidence import DSSE_SIGNATURE, MANIFEST, TrustPins, verify_bundle
from harness.telemetry import validate_ndjson

DATA = Path(__file__).resolve().parents[3] / "data"
GOLDEN = DATA / "golden_bundle"
PINS = TrustPins(keys=((DATA / "golden_bundle.pub.pem").read_bytes(),))


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
    assert PINS.keys == (maker.signer().public_key_pem,)
    report = verify_bundle(GOLDEN, pins=PINS)
    assert report.passed, report.failures
    # A key-signed (air-gapped) bundle has no transparency-log entry; everything else is ok.
    assert {c.name for c in report.checks if c.status != "ok"} == {"rekor-inclusion"}
    assert report.check("rekor-inclusion").status == "missing"
    assert report.run_id == "golden-run-0001"
    assert report.signed_by == "key " + maker.signer().keyid


def test_the_golden_signature_is_a_standard_dsse_envelope() -> None:
    """securesystemslib's own DSSE verifier accepts it with the public key alone."""
    import json

    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey

    maker = _maker()
    envelope = Envelope.from_dict(json.loads((GOLDEN / DSSE_SIGNATURE).read_bytes()))
    key = SSlibKey.from_crypto(
        load_pem_public_key(PINS.keys[0]), keyid=maker.signer().keyid, scheme="ecdsa-sha2-nistp256"
    )
    assert set(envelope.verify([key], 1)) == {maker.signer().keyid}
    assert envelope.payload == (GOLDEN / MANIFEST).read_bytes()
    assert envelope.payload_type == "application/vnd.in-toto+json"


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

    assert verify_bundle(pack_bundle(copy), pins=PINS).passed


def test_the_sample_ndjson_validates() -> None:
    errors: list[object] = []
    report = validate_ndjson(DATA / "pipeline_run.sample.ndjson", errors.append)
    assert report.valid and report.lines == 3 and errors == []
