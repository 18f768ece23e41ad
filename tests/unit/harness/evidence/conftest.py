from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness.evidence import EvidenceBundle, KeySigner, Redactor, TrustPins


@pytest.fixture(autouse=True)
def _no_local_trust_domain(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tests never see the user's trust domain: an empty one is pinned unless a test says."""
    monkeypatch.setenv("CIHUB_TRUST_DOMAIN", str(tmp_path_factory.mktemp("no-trust-domain")))


@pytest.fixture(scope="session")
def signer() -> KeySigner:
    return KeySigner.from_secret(0xC1_4B)


@pytest.fixture(scope="session")
def pins(signer: KeySigner) -> TrustPins:
    """What a verifier of `signer`'s bundles pins: its public key."""
    return TrustPins(keys=(signer.public_key_pem,))


@pytest.fixture
def make_bundle(tmp_path: Path, signer: KeySigner) -> Callable[..., Path]:
    """Factory: a finalized, signed bundle that passes `verify` (determinism drill evidence)."""

    def make(name: str = "run-1", *, finalize: bool = True, **create: object) -> Path:
        bundle = EvidenceBundle.create(
            tmp_path / name,
            run_id=name,
            scenario="dual-build",
            required=create.pop("required", ["determinism/"]),  # type: ignore[arg-type]
            redactor=Redactor.from_environ({}),
        )
        bundle.write_text("determinism/build-A/hello.txt", "hello\n")
        bundle.write_text("determinism/build-B/hello.txt", "hello\n")
        bundle.write_text("determinism/diff.txt", "")
        bundle.write_bytes("blob.bin", bytes(range(256)) * 64)
        bundle.audit.record(["true"], exit_code=0, duration_s=0.01)
        bundle.set_verdict("determinism", "pass")
        if finalize:
            bundle.finalize(signer)
        return bundle.root

    return make
