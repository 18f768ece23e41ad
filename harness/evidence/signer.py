"""Signing `manifest.json`: a `Signer`/`Verifier` interface and a test-key implementation.

Signatures are Sigstore bundles v0.3 (`application/vnd.dev.sigstore.bundle.v0.3+json`) with a
`messageSignature` over the signed bytes. `TestKeySigner` uses an ECDSA P-256 key and puts the
public key into `verificationMaterial.publicKey.hint` as
``cihub-test-key:ecdsa-p256-sha256:<base64 DER SubjectPublicKeyInfo>``. Such a signature proves
the bundle was not altered after signing; it proves *who* signed only if the verifier pins the
key. The Sigstore issue plugs a keyless signer in through the same two protocols.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from harness.errors import VerificationFailed

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
TEST_KEY_HINT_PREFIX = "cihub-test-key:ecdsa-p256-sha256:"
"""Start of `publicKey.hint` in test-key signatures; marks them as not from a real identity."""


class SignatureInvalid(VerificationFailed):
    """A signature is malformed, from an untrusted key, or does not match the signed bytes."""


class Signer(Protocol):
    """Signs bytes and returns a serialized Sigstore bundle."""

    @property
    def identity(self) -> str:
        """Who signs, as a verifier will report it (e.g. an email, a URI, a key fingerprint)."""
        ...

    def sign(self, data: bytes) -> bytes:
        """Return a Sigstore bundle (JSON bytes) whose signature covers `data`."""
        ...


class Verifier(Protocol):
    """Checks a serialized Sigstore bundle over bytes."""

    def verify(self, data: bytes, bundle: bytes) -> str:
        """Return the signer's identity if `bundle` is a valid signature over `data`.

        Raises:
            SignatureInvalid: why not; the message names what did not match.
        """
        ...


def key_fingerprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """`sha256:<hex>` of the key's DER SubjectPublicKeyInfo."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


def _ecdsa() -> ec.ECDSA:
    try:  # RFC 6979 deterministic signatures make golden files stable (cryptography >= 43)
        return ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
    except (TypeError, UnsupportedAlgorithm):  # pragma: no cover - older OpenSSL
        return ec.ECDSA(hashes.SHA256())


class TestKeySigner:
    """Signs with an ECDSA P-256 test key. Not an identity: use it until Sigstore signing lands.

    Args:
        private_key: the key to sign with.

    Example:
        >>> signer = TestKeySigner.generate()
        >>> bundle = signer.sign(b"manifest bytes")
        >>> TestKeyVerifier().verify(b"manifest bytes", bundle) == signer.identity
        True
    """

    __test__ = False

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise ValueError("TestKeySigner needs a P-256 key")
        self._key = private_key

    @classmethod
    def generate(cls) -> TestKeySigner:
        """A signer with a fresh random key."""
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_secret(cls, secret: int) -> TestKeySigner:
        """A signer whose key is derived from the integer `secret` (reproducible test data)."""
        return cls(ec.derive_private_key(secret, ec.SECP256R1()))

    @classmethod
    def from_pem(cls, pem: bytes) -> TestKeySigner:
        """A signer with the PEM private key `pem` (unencrypted)."""
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("not an EC private key")
        return cls(key)

    @property
    def public_key_pem(self) -> bytes:
        """The public key in PEM, to pin it in `TestKeyVerifier(trusted_keys=...)`."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def identity(self) -> str:
        return f"test-key:{key_fingerprint(self._key.public_key())}"

    def sign(self, data: bytes) -> bytes:
        signature = self._key.sign(data, _ecdsa())
        spki = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        bundle = {
            "mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": {
                "publicKey": {"hint": TEST_KEY_HINT_PREFIX + base64.b64encode(spki).decode()},
                "tlogEntries": [],
            },
            "messageSignature": {
                "messageDigest": {
                    "algorithm": "SHA2_256",
                    "digest": base64.b64encode(hashlib.sha256(data).digest()).decode(),
                },
                "signature": base64.b64encode(signature).decode(),
            },
        }
        return (json.dumps(bundle, indent=2, sort_keys=True) + "\n").encode()


class TestKeyVerifier:
    """Verifies test-key signatures, optionally only from pinned keys.

    Args:
        trusted_keys: PEM public keys to accept; None accepts the key embedded in the
            signature (which proves integrity, not identity).
    """

    __test__ = False

    def __init__(self, trusted_keys: Iterable[bytes] | None = None) -> None:
        self._trusted: frozenset[str] | None = None
        if trusted_keys is not None:
            fingerprints = set()
            for pem in trusted_keys:
                key = serialization.load_pem_public_key(pem)
                if not isinstance(key, ec.EllipticCurvePublicKey):
                    raise ValueError("trusted test keys must be EC public keys")
                fingerprints.add(key_fingerprint(key))
            self._trusted = frozenset(fingerprints)

    def verify(self, data: bytes, bundle: bytes) -> str:
        value = _parse_bundle(bundle)
        hint = _get(value, "verificationMaterial", "publicKey", "hint")
        if not isinstance(hint, str) or not hint.startswith(TEST_KEY_HINT_PREFIX):
            raise SignatureInvalid("not a cihub test-key signature (no test-key publicKey hint)")
        try:
            key = serialization.load_der_public_key(
                base64.b64decode(hint[len(TEST_KEY_HINT_PREFIX) :], validate=True)
            )
        except ValueError as exc:
            raise SignatureInvalid("the test-key public key hint is malformed") from exc
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
            key.curve, ec.SECP256R1
        ):
            raise SignatureInvalid("the test key is not an ECDSA P-256 key")
        fingerprint = key_fingerprint(key)
        if self._trusted is not None and fingerprint not in self._trusted:
            raise SignatureInvalid(f"signed by an untrusted test key {fingerprint}")
        algorithm = _get(value, "messageSignature", "messageDigest", "algorithm")
        digest_b64 = _get(value, "messageSignature", "messageDigest", "digest")
        signature_b64 = _get(value, "messageSignature", "signature")
        if algorithm != "SHA2_256" or not isinstance(digest_b64, str):
            raise SignatureInvalid("messageSignature.messageDigest is not a SHA2_256 digest")
        try:
            signed_digest = base64.b64decode(digest_b64, validate=True)
            signature = base64.b64decode(str(signature_b64), validate=True)
        except ValueError as exc:
            raise SignatureInvalid("messageSignature is not valid base64") from exc
        if signed_digest != hashlib.sha256(data).digest():
            raise SignatureDigestMismatch("the signed digest does not match the signed file")
        try:
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature as exc:
            raise SignatureInvalid("the signature does not verify with its key") from exc
        return f"test-key:{fingerprint}"


class SignatureDigestMismatch(SignatureInvalid):
    """The signature bundle is intact but was made over other bytes than the file beside it."""


def _parse_bundle(bundle: bytes) -> dict[str, Any]:
    try:
        value = json.loads(bundle)
    except ValueError as exc:
        raise SignatureInvalid(f"not a JSON Sigstore bundle ({exc})") from exc
    if not isinstance(value, dict) or value.get("mediaType") != BUNDLE_MEDIA_TYPE:
        raise SignatureInvalid(f"not a Sigstore bundle with mediaType {BUNDLE_MEDIA_TYPE}")
    return value


def _get(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def default_verifier(bundle: bytes, trust_config: Path | None = None) -> Verifier:
    """The verifier for a signature when the caller named none.

    Test-key bundles verify against their embedded key; keyless Sigstore bundles verify with
    sigstore-python against `trust_config` (the one the signer saved in the evidence bundle).

    Raises:
        SignatureInvalid: the bundle is not one this build knows how to verify offline.
    """
    parsed = _parse_bundle(bundle)
    hint = _get(parsed, "verificationMaterial", "publicKey", "hint")
    if isinstance(hint, str) and hint.startswith(TEST_KEY_HINT_PREFIX):
        return TestKeyVerifier()
    material = parsed.get("verificationMaterial") or {}
    if "certificate" in material or "x509CertificateChain" in material:
        if trust_config is None or not trust_config.is_file():
            raise SignatureInvalid("a Sigstore signature but no trust config to check it with")
        from harness.sign import SigstoreVerifier  # sigstore-python loads only when needed

        return SigstoreVerifier(trust_config)
    raise SignatureInvalid("no verifier configured for this kind of signature")
