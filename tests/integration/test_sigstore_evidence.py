"""Evidence signed keylessly by the lab's Sigstore stack verifies offline, only as itself and
only against the trust root the verifier pins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sigstore import dsse
from sigstore.models import ClientTrustConfig
from sigstore.oidc import IdentityToken
from sigstore.sign import SigningContext

from harness.evidence import (
    LOG_ENTRY,
    SIGSTORE_SIGNATURE,
    EvidenceBundle,
    IdentityPin,
    TrustPins,
    pack_bundle,
    verify_bundle,
)
from harness.evidence.manifest import SIGSTORE_TRUST_CONFIG
from lab import Lab

pytestmark = pytest.mark.integration


class _LabDsseSigner:
    """Signs the manifest as a DSSE envelope through the running lab (sigstore-python)."""

    signature_file = SIGSTORE_SIGNATURE

    def __init__(self, lab: Lab, identity: str | None = None) -> None:
        assert lab.endpoints.trust_config is not None
        self._trust_config = lab.endpoints.trust_config
        self._lab = lab
        self._identity = identity

    @property
    def identity(self) -> str:
        return f"{self._identity or self._lab.config.identity} ({self._lab.config.issuer})"

    def sign(self, data: bytes) -> bytes:
        trust = ClientTrustConfig.from_json(self._trust_config.read_text())
        token = self._lab.mint_token(self._identity)
        with SigningContext.from_trust_config(trust).signer(IdentityToken(token)) as signer:
            return signer.sign_dsse(dsse.Statement(data)).to_json().encode()

    def evidence_files(self) -> dict[str, bytes]:
        return {SIGSTORE_TRUST_CONFIG: self._trust_config.read_bytes()}


def _bundle(lab: Lab, root: Path, identity: str | None = None) -> Path:
    bundle = EvidenceBundle.create(root, run_id="sigstore-evidence")
    bundle.write_bytes("artifacts/release.txt", b"release artifact\n")
    bundle.finalize(_LabDsseSigner(lab, identity))
    return root


def _pins(lab: Lab, **identity: str) -> TrustPins:
    return TrustPins(trust_config=lab.endpoints.trust_config, identity=IdentityPin(**identity))


def test_a_keyless_dsse_manifest_and_its_log_entry_verify_offline(lab: Lab, tmp_path: Path) -> None:
    root = _bundle(lab, tmp_path / "bundle")
    envelope = json.loads((root / SIGSTORE_SIGNATURE).read_bytes())["dsseEnvelope"]
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    pinned = _pins(lab, identity=lab.config.identity, issuer=lab.config.issuer)
    for target in (root, pack_bundle(root, tmp_path / "bundle.tar.gz")):
        report = verify_bundle(target, pins=pinned)
        assert report.passed, report.failures
        assert report.signed_by == f"{lab.config.identity} ({lab.config.issuer})"
        assert report.check("rekor-inclusion").status == "ok", report.check("rekor-inclusion")
    assert (root / LOG_ENTRY).is_file()


def test_a_pinned_other_identity_fails_the_signature(lab: Lab, tmp_path: Path) -> None:
    root = _bundle(lab, tmp_path / "bundle", identity="intruder@cihub.test")
    check = verify_bundle(root, pins=_pins(lab, identity=lab.config.identity)).check("signature")
    assert check.status == "fail"
    assert "intruder@cihub.test" in check.detail and "not the pinned" in check.detail


def test_without_a_pinned_root_the_bundles_own_trust_config_is_not_used(
    lab: Lab, tmp_path: Path
) -> None:
    root = _bundle(lab, tmp_path / "bundle")
    assert (root / SIGSTORE_TRUST_CONFIG).is_file()
    report = verify_bundle(root, pins=TrustPins(use_local_trust_domain=False))
    assert "no pinned trust root" in report.check("signature").detail
    assert not report.passed


def test_a_manifest_changed_after_signing_fails_the_signature(lab: Lab, tmp_path: Path) -> None:
    root = _bundle(lab, tmp_path / "bundle")
    manifest = root / "manifest.json"
    manifest.write_bytes(manifest.read_bytes().replace(b"sigstore-evidence", b"sigstore-evidencE"))
    assert verify_bundle(root, pins=_pins(lab)).check("signature").status == "fail"
