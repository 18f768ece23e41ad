"""Evidence signed keylessly by the lab's Sigstore stack verifies offline, and only as itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.evidence import EvidenceBundle, verify_bundle
from harness.sign import (
    SigningSetup,
    SigstoreSigner,
    SigstoreVerifier,
    record_signature,
    sign_artifact,
)
from lab import Lab

pytestmark = pytest.mark.integration


def _signer(lab: Lab) -> SigstoreSigner:
    assert lab.endpoints.trust_config is not None
    return SigstoreSigner(
        lab.endpoints.trust_config, lab.mint_token, lab.config.identity, lab.config.issuer
    )


def _bundle(lab: Lab, root: Path) -> Path:
    bundle = EvidenceBundle.create(root, run_id="sigstore-evidence")
    artifact = b"release artifact\n"
    bundle.write_bytes("artifacts/release.txt", artifact)
    assert lab.endpoints.trust_config is not None
    setup = SigningSetup(
        lab.endpoints.trust_config, lab.mint_token(), lab.config.identity, lab.config.issuer
    )
    record_signature(bundle, "artifacts/release.txt", sign_artifact(artifact, setup))
    bundle.finalize(_signer(lab))
    return root


def test_a_keyless_manifest_signature_and_log_entry_verify_offline(
    lab: Lab, tmp_path: Path
) -> None:
    root = _bundle(lab, tmp_path / "bundle")
    assert (root / "sigstore" / "trust_config.json").is_file()
    report = verify_bundle(root)
    signature = report.check("signature")
    assert signature.status == "ok", signature.detail
    assert report.signed_by == "lab@cihub.test (https://oidc.lab.cihub)"
    rekor = report.check("rekor-inclusion")
    assert rekor.status == "ok", rekor.detail


def test_a_pinned_other_identity_fails_the_signature(lab: Lab, tmp_path: Path) -> None:
    root = _bundle(lab, tmp_path / "bundle")
    pinned = SigstoreVerifier(root / "sigstore" / "trust_config.json", identity="x@cihub.test")
    check = verify_bundle(root, verifier=pinned).check("signature")
    assert check.status == "fail"
    assert "x@cihub.test" in check.detail


def test_a_manifest_changed_after_signing_fails_the_signature(lab: Lab, tmp_path: Path) -> None:
    root = _bundle(lab, tmp_path / "bundle")
    manifest = root / "manifest.json"
    manifest.write_bytes(manifest.read_bytes().replace(b"sigstore-evidence", b"sigstore-evidencE"))
    assert verify_bundle(root).check("signature").status == "fail"
