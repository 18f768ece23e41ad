"""Signing `manifest.json`: the `Signer` protocol, and the key signer for air-gapped use.

Two signature formats, one file each (a bundle holds exactly one):

- keyless, `manifest.sigstore.json`: a Sigstore bundle v0.3 holding a DSSE envelope over the
  exact bytes of `manifest.json` (payloadType `application/vnd.in-toto+json`). Written by the
  Sigstore signer in `harness/sign.py`; verified by `sigstore_verify.py` against a pinned trust
  root.
- key, `manifest.dsse.json`: a plain, standard DSSE envelope
  (``{"payloadType", "payload", "signatures": [{"keyid", "sig"}]}``) whose signature is
  ECDSA P-256 / SHA-256 over the DSSE pre-authentication encoding (PAE), with
  ``keyid = "sha256:<hex of the DER SubjectPublicKeyInfo>"``. `KeySigner` writes it and
  `KeyVerifier` checks it, only against keys the verifier pins (`--key PUB.pem`); any standard
  DSSE verifier holding the public key can check it too. The envelope format and its PAE come
  from securesystemslib's `dsse.Envelope`; signing is RFC 6979 deterministic ECDSA.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from securesystemslib.dsse import Envelope

from harness.errors import ConfigError, VerificationFailed
from harness.evidence.manifest import DSSE_SIGNATURE

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
"""The DSSE payloadType of a signed in-toto Statement (the manifest is one)."""


class SignatureInvalid(VerificationFailed):
    """A signature is malformed, from an untrusted key or root, or does not match the data."""


class SignatureDigestMismatch(SignatureInvalid):
    """The signature is intact but was made over other bytes than the file beside it."""


class Signer(Protocol):
    """Signs `manifest.json` for `EvidenceBundle.finalize()`.

    A signer may also offer `evidence_files() -> Mapping[str, bytes]`: files it wants in the
    bundle (listed by the manifest) before the manifest is written.
    """

    @property
    def identity(self) -> str:
        """Who signs, as a verifier will report it (an email or URI and issuer, a key id)."""
        ...

    @property
    def signature_file(self) -> str:
        """The bundle-relative file the signature goes to (`manifest.sigstore.json` or
        `manifest.dsse.json`)."""
        ...

    def sign(self, data: bytes) -> bytes:
        """Return the signature file's content, a signature over exactly `data`."""
        ...


def key_fingerprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """`sha256:<hex>` of the key's DER SubjectPublicKeyInfo: the DSSE keyid."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


def _ecdsa() -> ec.ECDSA:
    try:  # RFC 6979 deterministic signatures keep golden files stable (cryptography >= 43)
        return ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
    except (TypeError, UnsupportedAlgorithm):  # pragma: no cover - older OpenSSL
        return ec.ECDSA(hashes.SHA256())


def _p256(key: object, what: str) -> None:
    curve = getattr(key, "curve", None)
    if not isinstance(curve, ec.SECP256R1):
        raise ConfigError(f"{what}: not an ECDSA P-256 key")


class KeySigner:
    """Signs with an ECDSA P-256 key into a standard DSSE envelope (`manifest.dsse.json`).

    For air-gapped use, when no Sigstore instance is reachable. A verifier must pin the public
    key (`cihub evidence verify --key PUB.pem`); the envelope names the key only by its id.

    Args:
        private_key: the P-256 key to sign with.
        payload_type: the DSSE payloadType of what is signed.

    Example:
        >>> signer = KeySigner.generate()
        >>> envelope = signer.sign(manifest_bytes)
        >>> KeyVerifier([signer.public_key_pem]).verify(manifest_bytes, envelope)
        'key sha256:…'
    """

    signature_file = DSSE_SIGNATURE

    def __init__(
        self, private_key: ec.EllipticCurvePrivateKey, payload_type: str = IN_TOTO_PAYLOAD_TYPE
    ) -> None:
        _p256(private_key, "KeySigner")
        self._key = private_key
        self._payload_type = payload_type

    @classmethod
    def generate(cls) -> KeySigner:
        """A signer with a fresh random key (tests; throwaway evidence)."""
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_secret(cls, secret: int) -> KeySigner:
        """A signer whose key is derived from the integer `secret` (reproducible test data)."""
        return cls(ec.derive_private_key(secret, ec.SECP256R1()))

    @classmethod
    def from_pem(cls, pem: bytes, *, source: str = "the private key") -> KeySigner:
        """A signer with the unencrypted PEM private key `pem`.

        Raises:
            ConfigError: not an unencrypted PEM P-256 private key.
        """
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ConfigError(f"{source}: not an unencrypted PEM private key") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError(f"{source}: not an EC private key")
        _p256(key, source)
        return cls(key)

    @classmethod
    def from_pem_file(cls, path: Path) -> KeySigner:
        """A signer with the unencrypted PEM private key in the file `path`.

        Raises:
            ConfigError: the file can't be read or holds no P-256 private key.
        """
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the signing key ({exc.strerror})") from exc
        return cls.from_pem(pem, source=str(path))

    @property
    def private_key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (keep it secret)."""
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def public_key_pem(self) -> bytes:
        """The public key in PEM: what a verifier pins with `--key`."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def keyid(self) -> str:
        """`sha256:<hex of the DER SubjectPublicKeyInfo>`."""
        return key_fingerprint(self._key.public_key())

    @property
    def identity(self) -> str:
        return f"key {self.keyid}"

    def sign(self, data: bytes) -> bytes:
        pae = Envelope(data, self._payload_type, {}).pae()
        envelope = {  # the DSSE JSON envelope, as securesystemslib's Envelope.to_dict spells it
            "payload": base64.b64encode(data).decode(),
            "payloadType": self._payload_type,
            "signatures": [
                {
                    "keyid": self.keyid,
                    "sig": base64.b64encode(self._key.sign(pae, _ecdsa())).decode(),
                }
            ],
        }
        return (json.dumps(envelope, indent=2, sort_keys=True) + "\n").encode()


class KeyVerifier:
    """Checks DSSE envelopes against pinned ECDSA P-256 public keys.

    Args:
        public_keys: PEM public keys to accept (at least one).

    Raises:
        ConfigError: no key, or a key is not a PEM P-256 public key.
    """

    def __init__(self, public_keys: Iterable[bytes]) -> None:
        keys: dict[str, ec.EllipticCurvePublicKey] = {}
        for pem in public_keys:
            try:
                key = serialization.load_pem_public_key(pem)
            except (ValueError, UnsupportedAlgorithm) as exc:
                raise ConfigError("a pinned key is not a PEM public key") from exc
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise ConfigError("a pinned key is not an EC public key")
            _p256(key, "a pinned key")
            keys[key_fingerprint(key)] = key
        if not keys:
            raise ConfigError("KeyVerifier needs at least one public key")
        self._keys: Mapping[str, ec.EllipticCurvePublicKey] = keys

    @classmethod
    def from_pem_files(cls, paths: Iterable[Path]) -> KeyVerifier:
        """Pin the public keys in the PEM files `paths`.

        Raises:
            ConfigError: a file can't be read or holds no P-256 public key; names the file.
        """
        pems = []
        for path in paths:
            try:
                pem = path.read_bytes()
            except OSError as exc:
                raise ConfigError(f"{path}: cannot read the public key ({exc.strerror})") from exc
            try:
                cls([pem])
            except ConfigError as exc:
                raise ConfigError(f"{path}: {exc}") from exc
            pems.append(pem)
        return cls(pems)

    @property
    def keyids(self) -> tuple[str, ...]:
        return tuple(sorted(self._keys))

    def verify(
        self, data: bytes, envelope_json: bytes, *, payload_type: str | None = IN_TOTO_PAYLOAD_TYPE
    ) -> str:
        """Return `key <keyid>` if `envelope_json` is a DSSE envelope over exactly `data`,
        signed by a pinned key (and of `payload_type`, unless that is None).

        Raises:
            SignatureDigestMismatch: the signature verifies but its payload is not `data`.
            SignatureInvalid: malformed, of another payloadType, or no signature by a
                pinned key verifies.
        """
        envelope = parse_envelope(envelope_json)
        if payload_type is not None and envelope.payload_type != payload_type:
            raise SignatureInvalid(
                f"payloadType is {envelope.payload_type!r}, expected {payload_type!r}"
            )
        pae = envelope.pae()
        named = set()
        for signature in envelope.signatures.values():
            candidates = (
                [signature.keyid] if signature.keyid else list(self._keys)
            )  # DSSE allows an empty keyid: then try every pinned key
            for keyid in candidates:
                key = self._keys.get(keyid)
                if key is None:
                    named.add(keyid)
                    continue
                try:
                    key.verify(bytes.fromhex(signature.signature), pae, ec.ECDSA(hashes.SHA256()))
                except (InvalidSignature, ValueError):
                    continue
                if envelope.payload != data:
                    raise SignatureDigestMismatch(
                        "the signed payload is not this file (it was changed after signing)"
                    )
                return f"key {keyid}"
        if named:
            others = ", ".join(sorted(named))
            raise SignatureInvalid(
                f"signed by {others}, not by a pinned key ({', '.join(self.keyids)})"
            )
        raise SignatureInvalid("no signature verifies with the pinned key")


def parse_envelope(envelope_json: bytes) -> Envelope:
    """A DSSE envelope from its JSON bytes.

    Raises:
        SignatureInvalid: not a JSON DSSE envelope with at least one signature.
    """
    try:
        value = json.loads(envelope_json)
    except (ValueError, RecursionError) as exc:
        raise SignatureInvalid("not a JSON DSSE envelope") from exc
    if not isinstance(value, dict):
        raise SignatureInvalid("not a DSSE envelope (not a JSON object)")
    try:
        if not isinstance(value["payloadType"], str) or not isinstance(value["payload"], str):
            raise TypeError("payloadType and payload must be strings")
        if not isinstance(value["signatures"], list) or not all(
            isinstance(s, dict)
            and isinstance(s.get("sig"), str)
            and isinstance(s.get("keyid", ""), str)
            for s in value["signatures"]
        ):
            raise TypeError("signatures must be a list of objects with a string sig and keyid")
        base64.b64decode(value["payload"], validate=True)
        for signature in value["signatures"]:
            signature.setdefault("keyid", "")  # optional in DSSE
        envelope = Envelope.from_dict(value)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise SignatureInvalid(f"not a DSSE envelope ({type(exc).__name__}: {exc})") from exc
    except Exception as exc:  # securesystemslib's FormatError and relatives
        raise SignatureInvalid(f"not a DSSE envelope ({type(exc).__name__})") from exc
    if not envelope.signatures:
        raise SignatureInvalid("the DSSE envelope holds no signature")
    return envelope
