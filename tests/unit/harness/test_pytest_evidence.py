from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from harness.evidence import KeySigner, TrustPins, verify_bundle
from harness.telemetry import NDJSON_NAME, validate_ndjson

pytest_plugins = ["pytester"]

PLUGIN = ["-p", "harness._internal.pytest_evidence"]


@pytest.fixture(autouse=True)
def _key_signing(pytester: pytest.Pytester) -> None:
    """These tests sign with a local key (`--evidence-sign key:PATH`): no lab, no Docker."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (pytester.path / "signing-key.pem").write_bytes(pem)
    pytester.makeini("[pytest]\ncihub_evidence_sign = key:signing-key.pem\n")


def _pins(pytester: pytest.Pytester) -> TrustPins:
    """Verify pins the session's signing key (a key signature proves nothing unpinned)."""
    signer = KeySigner.from_pem_file(pytester.path / "signing-key.pem")
    return TrustPins(keys=(signer.public_key_pem,))


DRILLS = """
import pytest

class FakeLab:
    def facts(self):
        return {"lab_id": "lab-1", "images": {"registry": {"tag": "t", "id": "sha256:1"}},
                "services": {"registry": {"version": "2.8"}}}

@pytest.fixture
def lab():
    return FakeLab()

FINALIZED = []

def test_passes(evidence):
    with evidence.step("build"):
        evidence.write_text("determinism/diff.txt", "")
    evidence.add_artifact("hello", "sha256:" + "a" * 64)

def test_fails(evidence):
    evidence.write_text("notes.txt", "about to fail")
    assert 1 == 2, "the builds differ"

@pytest.mark.evidence(scenario="dual-build", kind="dual-build", required=["determinism/"])
def test_uses_lab(evidence, lab):
    evidence.write_text("determinism/diff.txt", "")

@pytest.fixture
def broken():
    raise RuntimeError("setup exploded")

def test_setup_error(evidence, broken):
    pass

def test_skipped(evidence):
    pytest.skip("not today")
"""

CONFTEST = """
SEEN = []

def pytest_cihub_evidence_finalized(bundle, record):
    SEEN.append(record["run_id"])
    with open("hook.log", "a") as handle:
        handle.write(record["result"] + " " + bundle.finalized.digest + "\\n")
"""


def _records(evidence_dir: Path) -> dict[str, dict[str, Any]]:
    lines = (evidence_dir / NDJSON_NAME).read_text().splitlines()
    return {json.loads(line)["test"]["nodeid"].split("::")[1]: json.loads(line) for line in lines}


def test_every_test_gets_a_bundle_and_a_record_pass_or_fail(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_drills=DRILLS)
    pytester.makeconftest(CONFTEST)
    result = pytester.runpytest(*PLUGIN, "--evidence-dir", "out/evidence")
    result.assert_outcomes(passed=2, failed=1, errors=1, skipped=1)

    evidence_dir = pytester.path / "out" / "evidence"
    records = _records(evidence_dir)
    assert set(records) == {
        "test_passes",
        "test_fails",
        "test_uses_lab",
        "test_setup_error",
        "test_skipped",
    }
    assert validate_ndjson(evidence_dir / NDJSON_NAME).valid
    assert len((pytester.path / "hook.log").read_text().splitlines()) == 5

    passed, failed = records["test_passes"], records["test_fails"]
    assert (passed["result"], passed["test"]["outcome"]) == ("success", "passed")
    assert [s["name"] for s in passed["steps"]] == ["build"]
    assert passed["subject"]["artifacts"][0]["digest"] == "sha256:" + "a" * 64
    assert (failed["result"], failed["test"]["outcome"]) == ("failure", "failed")
    assert failed["errors"][0]["type"] == "AssertionError"
    assert "the builds differ" in failed["errors"][0]["message"]
    assert records["test_setup_error"]["result"] == "error"
    assert records["test_setup_error"]["errors"][0]["phase"] == "setup"
    assert records["test_skipped"]["result"] == "skip"
    assert passed["session_id"] == failed["session_id"]

    lab = records["test_uses_lab"]
    assert lab["lab"]["services"]["registry"]["version"] == "2.8"
    assert lab["scenario"] == {"name": "dual-build", "kind": "dual-build"}
    assert "lab" not in passed

    for name, record in records.items():
        bundle = evidence_dir / record["evidence"]["bundle_path"]
        assert bundle.is_dir(), name
        assert record["evidence"]["complete"] is True
        report = verify_bundle(bundle, pins=_pins(pytester))
        assert report.digest == record["evidence"]["manifest_digest"]
        assert report.check("files").status == "ok" and report.check("signature").status == "ok"
        assert report.run_id == record["run_id"]
    passed_bundle = evidence_dir / passed["evidence"]["bundle_path"]
    assert verify_bundle(passed_bundle, pins=_pins(pytester)).passed
    failed_bundle = evidence_dir / failed["evidence"]["bundle_path"]
    failed_report = verify_bundle(failed_bundle, pins=_pins(pytester))
    assert not failed_report.passed and failed_report.check("verdicts").status == "fail"
    pytest_report = json.loads((failed_bundle / "pytest" / "report.json").read_text())
    assert pytest_report["outcome"] == "failed"
    assert "the builds differ" in pytest_report["phases"]["call"]["longrepr"]
    assert (failed_bundle / "notes.txt").read_text() == "about to fail"


def test_bundle_names_are_filesystem_safe_and_unique(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_names="""
        import pytest

        @pytest.mark.parametrize("value", ["a/b", "../c", "d e:f", "a/b "])
        def test_param(evidence, value):
            evidence.write_text("value.txt", value)
        """
    )
    pytester.runpytest(*PLUGIN).assert_outcomes(passed=4)
    evidence_dir = pytester.path / "evidence"  # the default
    bundles = [p for p in evidence_dir.iterdir() if p.is_dir()]
    assert len(bundles) == 4
    for bundle in bundles:
        assert all(c.isalnum() or c in "._-" for c in bundle.name), bundle.name
        assert verify_bundle(bundle, pins=_pins(pytester)).passed


def test_ini_sets_the_evidence_dir(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\ncihub_evidence_dir = from-ini\ncihub_pipeline = nightly\n"
        "cihub_evidence_sign = key:signing-key.pem\n"
    )
    pytester.makepyfile(test_one="def test_one(evidence):\n    pass\n")
    pytester.runpytest(*PLUGIN).assert_outcomes(passed=1)
    (record,) = _records(pytester.path / "from-ini").values()
    assert record["pipeline"]["name"] == "nightly"


def test_keyless_signing_without_the_lab_plugin_fails_clearly(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")  # keyless, the default
    pytester.makepyfile(test_one="def test_one(evidence):\n    pass\n")
    result = pytester.runpytest("-p", "no:cihub", *PLUGIN)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*signed keylessly through the lab*--evidence-sign key:PATH*"])


def test_a_bad_sign_option_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    result = pytester.runpytest(*PLUGIN, "--evidence-sign", "cosign")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--evidence-sign*expected 'keyless' or 'key:PATH'*"])
