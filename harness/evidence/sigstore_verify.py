"""Keyless verification: a Sigstore bundle checked against a trust root the VERIFIER pins.

`manifest.sigstore.json` must be a Sigstore bundle v0.3 holding a DSSE envelope whose
payloadType is `application/vnd.in-toto+json` and whose payload is exactly `manifest.json`.
It is checked with sigstore-python's public API (`Verifier(trusted_root=...).verify_dsse`)
against the trusted root of a trust config the verifier chose (`--trust-config`, else the local
trust domain), never against anything the evidence bundle carries. Pinned identity and issuer
(`--cert-identity[-regexp]`, `--cert-oidc-issuer[-regexp]`) become a `VerificationPolicy`;
unpinned, the certificate's own identity and issuer are reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from sigstore.errors import Error as SigstoreError
from sigstore.errors import VerificationError
from sigstore.models import Bundle, ClientTrustConfig, TrustedRoot
from sigstore.verify import Verifier, policy

from harness.errors import ConfigError
from harness.evidence import _fs, _tlog
from harness.evidence.identity import IdentityMismatch, IdentityPin, certificate_identity
from harness.evidence.signer import (
    IN_TOTO_PAYLOAD_TYPE,
    SignatureDigestMismatch,
    SignatureInvalid,
)

MAX_TRUST_CONFIG_BYTES = 4 * 1024 * 1024


class CertificateIdentityPolicy:
    """A `sigstore.verify.policy.VerificationPolicy` for exact or regexp identity/issuer pins."""

    def __init__(self, pin: IdentityPin) -> None:
        self._pin = pin

    def verify(self, cert: x509.Certificate) -> None:
        identities, issuer = certificate_identity(cert)
        try:
            self._pin.check(identities, issuer)
        except IdentityMismatch as exc:
            raise VerificationError(str(exc)) from exc


def policy_for(pin: IdentityPin) -> policy.VerificationPolicy:
    """The sigstore-python policy for `pin` (`UnsafeNoOp` when nothing is pinned)."""
    if not pin.pinned:
        return policy.UnsafeNoOp()
    if pin.identity is not None and pin.issuer is not None:
        return policy.Identity(identity=pin.identity, issuer=pin.issuer)
    return CertificateIdentityPolicy(pin)


@dataclass(frozen=True)
class PinnedRoot:
    """A trust config (or bare trusted root) the verifier pinned, loaded once."""

    path: Path
    trusted_root: TrustedRoot
    document: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> PinnedRoot:
        """Load a ClientTrustConfig (`cihub trust export`) or a TrustedRoot JSON file.

        Raises:
            ConfigError: unreadable, or not a trust config sigstore-python accepts.
        """
        try:
            raw = _fs.read_regular(path.parent, path.name, MAX_TRUST_CONFIG_BYTES)
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: no such trust config") from exc
        except (OSError, _fs.UnsafeEntry, _fs.TooLarge) as exc:
            raise ConfigError(f"{path}: cannot read the trust config ({exc})") from exc
        try:
            document = json.loads(raw)
            if not isinstance(document, dict):
                raise ValueError("not a JSON object")
            if "trustedRoot" in document:
                trusted_root = ClientTrustConfig.from_json(raw.decode()).trusted_root
            else:
                trusted_root = TrustedRoot.from_file(str(path))
        except (ValueError, TypeError, KeyError, RecursionError, SigstoreError) as exc:
            raise ConfigError(f"{path}: not a Sigstore trust config or trusted root") from exc
        return cls(path, trusted_root, document)

    def log_keys(self) -> list[_tlog.PublicKey]:
        """The transparency-log public keys of this root (its `tlogs`)."""
        root = self.document.get("trustedRoot", self.document)
        tlogs = root.get("tlogs") if isinstance(root, dict) else None
        keys = []
        for tlog in tlogs if isinstance(tlogs, list) else []:
            try:
                keys.append(_tlog.load_public_key(tlog["publicKey"]))
            except (KeyError, TypeError, _tlog.LogEntryInvalid):
                continue  # a key this module can't use can't vouch for anything
        return keys


@dataclass(frozen=True)
class KeylessSignature:
    """A keyless signature that verified: who signed, and the log entry it carries."""

    identity: str
    issuer: str
    log_entry: dict[str, Any]
    """The bundle's tlog entry (protobuf JSON), as `rekor/entry.json` must repeat it."""

    @property
    def signed_by(self) -> str:
        return f"{self.identity} ({self.issuer})"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _parse_bundle(bundle_json: bytes) -> tuple[Bundle, dict[str, Any]]:
    try:
        document = json.loads(bundle_json)
        bundle = Bundle.from_json(bundle_json)
    except (ValueError, TypeError, KeyError, RecursionError, SigstoreError) as exc:
        raise SignatureInvalid(f"not a Sigstore bundle ({_one_line(exc)})") from exc
    if not isinstance(document, dict):
        raise SignatureInvalid("not a Sigstore bundle")
    return bundle, document


class KeylessVerifier:
    """Verifies Sigstore bundles against a pinned root for a pinned (or reported) identity.

    Args:
        root: the pinned trust root.
        pin: the identity and issuer to require (nothing pinned: report them).
    """

    def __init__(self, root: PinnedRoot, pin: IdentityPin | None = None) -> None:
        self._root = root
        self._pin = pin or IdentityPin()
        self._verifier = Verifier(trusted_root=root.trusted_root)

    @property
    def root(self) -> PinnedRoot:
        return self._root

    def _check_certificate(self, bundle: Bundle) -> tuple[str, str]:
        cert = bundle.signing_certificate
        identities, issuer = certificate_identity(cert)
        cas = self._root.trusted_root.get_fulcio_certs()
        if not any(_issued_by(cert, ca) for ca in cas):
            raise SignatureInvalid(
                f"the signing certificate was not issued under the pinned trust root "
                f"{self._root.path} (signed under another root or a self-made CA)"
            )
        who = f"{identities[0] if identities else '?'} ({issuer or '?'})"
        try:
            self._pin.check(identities, issuer)
        except IdentityMismatch as exc:
            raise SignatureInvalid(
                f"signed by {who}, not the pinned {self._pin.describe()}: {exc}"
            ) from exc
        return (identities[0] if identities else "?"), issuer

    def _log_entry(self, document: dict[str, Any]) -> dict[str, Any]:
        entries = (document.get("verificationMaterial") or {}).get("tlogEntries") or []
        if not isinstance(entries, list) or len(entries) != 1 or not isinstance(entries[0], dict):
            raise SignatureInvalid("the Sigstore bundle does not hold exactly one log entry")
        return entries[0]

    def verify_manifest(self, data: bytes, bundle_json: bytes) -> KeylessSignature:
        """Check that `bundle_json` is a DSSE signature over exactly `data` (an in-toto
        Statement), valid under the pinned root, for the pinned identity.

        Raises:
            SignatureDigestMismatch: the signature verifies but its payload is not `data`.
            SignatureInvalid: anything else; the message says what.
        """
        bundle, document = _parse_bundle(bundle_json)
        if "dsseEnvelope" not in document:
            raise SignatureInvalid("the Sigstore bundle holds no DSSE envelope")
        identity, issuer = self._check_certificate(bundle)
        try:
            payload_type, payload = self._verifier.verify_dsse(bundle, policy_for(self._pin))
        except SigstoreError as exc:
            raise SignatureInvalid(
                f"does not verify under the pinned trust root {self._root.path}: {_one_line(exc)}"
            ) from exc
        if payload_type != IN_TOTO_PAYLOAD_TYPE:
            raise SignatureInvalid(
                f"payloadType is {payload_type!r}, expected {IN_TOTO_PAYLOAD_TYPE!r}"
            )
        if payload != data:
            raise SignatureDigestMismatch(
                "the signed payload is not this file (it was changed after signing)"
            )
        return KeylessSignature(identity, issuer, self._log_entry(document))

    def verify_blob(self, data: bytes, bundle_json: bytes) -> KeylessSignature:
        """Like `verify_manifest` for any file: a DSSE envelope whose payload is `data` (any
        payloadType), or a message signature over `data`."""
        bundle, document = _parse_bundle(bundle_json)
        identity, issuer = self._check_certificate(bundle)
        try:
            if "dsseEnvelope" in document:
                _, payload = self._verifier.verify_dsse(bundle, policy_for(self._pin))
                if payload != data:
                    raise SignatureDigestMismatch("the signed payload is not this file")
            else:
                self._verifier.verify_artifact(data, bundle, policy_for(self._pin))
        except SigstoreError as exc:
            raise SignatureInvalid(
                f"does not verify under the pinned trust root {self._root.path}: {_one_line(exc)}"
            ) from exc
        return KeylessSignature(identity, issuer, self._log_entry(document))


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except Exception:  # any failure to check means "not issued by this CA"
        return False
    return True
