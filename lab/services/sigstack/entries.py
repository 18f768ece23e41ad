"""Proposed Rekor entries: validate them and build their canonical log bodies.

v1 (`POST /api/v1/log/entries`) takes hashedrekord and dsse 0.0.1; v2 (`POST
/api/v2/log/entries`) takes only hashedrekord 0.0.2, as rekor-tiles v2.3.0 does (it dropped
DSSE: "invalid type, must be hashedrekord"), and, like its grpc-gateway, refuses unknown JSON
fields. Every signature must verify with the given key or certificate; a failure is an
`EntryError` carrying the reason (a 400).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Collection, Sequence
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

from . import canonical
from .merkle import hash_leaf
from .store import NewEntry

_INTOTO_TYPE = "application/vnd.in-toto+json"

ArtifactKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

# hashedrekord 0.0.1 algorithm -> (hash, digest size); v2 HashAlgorithm -> 0.0.1 name
_V1_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_V2_HASH_NAMES = {"SHA2_256": "sha256", "SHA2_384": "sha384", "SHA2_512": "sha512"}
# PublicKeyDetails -> the prehash of the algorithm (None: pure Ed25519, no prehash)
_KEY_DETAILS: dict[str, str | None] = {
    "PKIX_ECDSA_P256_SHA_256": "SHA2_256",
    "PKIX_ECDSA_P384_SHA_384": "SHA2_384",
    "PKIX_ECDSA_P521_SHA_512": "SHA2_512",
    "PKIX_RSA_PKCS1V15_2048_SHA256": "SHA2_256",
    "PKIX_RSA_PKCS1V15_3072_SHA256": "SHA2_256",
    "PKIX_RSA_PKCS1V15_4096_SHA256": "SHA2_256",
    "PKIX_ED25519": None,
}
_CURVE_DETAILS = {
    "secp256r1": "PKIX_ECDSA_P256_SHA_256",
    "secp384r1": "PKIX_ECDSA_P384_SHA_384",
    "secp521r1": "PKIX_ECDSA_P521_SHA_512",
}


class EntryError(ValueError):
    """A proposed entry is malformed or its signature does not verify (a 400)."""


# -- proposed entries -----------------------------------------------------------------------


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise EntryError(f"{where} must be an object")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise EntryError(f"{where} must be a non-empty string")
    return value


def _b64(value: Any, where: str) -> bytes:
    text = _str(value, where).strip()
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EntryError(f"{where} is not valid base64") from exc


def _b64s(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _hash_algorithm(name: str) -> hashes.HashAlgorithm:
    return _V1_HASHES[name]()


def _verify(
    key: ArtifactKey, signature: bytes, data: bytes, hash_name: str | None, prehashed: bool
) -> bool:
    """Whether `signature` over `data` (or over the digest `data`) verifies with `key`."""
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            if prehashed:
                raise EntryError("an Ed25519 key can't sign a bare digest; use ECDSA or RSA")
            key.verify(signature, data)
            return True
        assert hash_name is not None
        algorithm = _hash_algorithm(hash_name)
        chosen: hashes.HashAlgorithm | utils.Prehashed = (
            utils.Prehashed(algorithm) if prehashed else algorithm
        )
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(chosen))
        else:
            key.verify(signature, data, padding.PKCS1v15(), chosen)
    except InvalidSignature:
        return False
    except ValueError as exc:  # e.g. a digest of the wrong length for Prehashed
        raise EntryError(f"cannot verify the signature: {exc}") from exc
    return True


def _artifact_key(key: Any, where: str) -> ArtifactKey:
    if isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        return key
    raise EntryError(f"{where}: unsupported key type {type(key).__name__}")


def _pem_verifier(value: Any, where: str) -> tuple[ArtifactKey, bytes]:
    """A base64 PEM certificate or public key -> (key, canonical PEM)."""
    pem = _b64(value, where)
    try:
        if b"-----BEGIN CERTIFICATE-----" in pem:
            cert = x509.load_pem_x509_certificate(pem)
            return (
                _artifact_key(cert.public_key(), where),
                cert.public_bytes(serialization.Encoding.PEM),
            )
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise EntryError(f"{where} is not a PEM certificate or public key: {exc}") from exc
    canonical_pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _artifact_key(key, where), canonical_pem


def key_index_keys(pem: bytes) -> list[str]:
    """What Rekor v1 indexes a verifier under: the hex SHA-256 of its canonical PEM, and for a
    certificate its email SANs (lower case)."""
    keys = [hashlib.sha256(pem).hexdigest()]
    if b"-----BEGIN CERTIFICATE-----" in pem:
        try:
            cert = x509.load_pem_x509_certificate(pem)
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            keys.extend(e.lower() for e in san.get_values_for_type(x509.RFC822Name))
        except (ValueError, x509.ExtensionNotFound):
            pass
    return keys


def public_key_search_keys(value: Any) -> list[str]:
    """The index key of a SearchIndex `publicKey` ({"format": "x509", "content": b64 PEM}).

    Raises:
        EntryError: another format than x509, or content that is no PEM key or certificate.
    """
    query = _obj(value, "publicKey")
    key_format = query.get("format")
    if key_format not in ("x509", "pgp", "minisign", "ssh", "tuf"):
        raise EntryError("publicKey.format must be one of x509, pgp, minisign, ssh, tuf")
    if key_format != "x509":
        raise EntryError(f"publicKey.format {key_format} is not supported by this log")
    _, pem = _pem_verifier(query.get("content"), "publicKey.content")
    return [hashlib.sha256(pem).hexdigest()]


def _details_of(key: ArtifactKey) -> str:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "PKIX_ED25519"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return _CURVE_DETAILS.get(key.curve.name, f"unsupported curve {key.curve.name}")
    return f"PKIX_RSA_PKCS1V15_{key.key_size}_SHA256"


def _v2_verifier(value: Any, where: str) -> tuple[ArtifactKey, dict[str, Any], str]:
    """A v2 `Verifier` -> (key, canonical Verifier JSON, keyDetails)."""
    obj = _obj(value, where)
    _known_fields(obj, _camel_and_snake("keyDetails", "x509Certificate", "publicKey"), "Verifier")
    details = _str(_field(obj, "keyDetails"), f"{where}.keyDetails")
    if details not in _KEY_DETAILS:
        raise EntryError(f"{where}.keyDetails {details} is not supported")
    cert_obj, key_obj = _field(obj, "x509Certificate"), _field(obj, "publicKey")
    if (cert_obj is None) == (key_obj is None):
        raise EntryError(f"{where} needs exactly one of x509Certificate and publicKey")
    try:
        if cert_obj is not None:
            cert_fields = _obj(cert_obj, f"{where}.x509Certificate")
            _known_fields(cert_fields, _camel_and_snake("rawBytes"), "X509Certificate")
            der = _b64(_field(cert_fields, "rawBytes"), where)
            cert = x509.load_der_x509_certificate(der)
            key = _artifact_key(cert.public_key(), where)
            material = {"x509Certificate": {"rawBytes": _b64s(der)}}
        else:
            key_fields = _obj(key_obj, f"{where}.publicKey")
            _known_fields(key_fields, _camel_and_snake("rawBytes"), "PublicKey")
            der = _b64(_field(key_fields, "rawBytes"), where)
            key = _artifact_key(serialization.load_der_public_key(der), where)
            material = {"publicKey": {"rawBytes": _b64s(der)}}
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise EntryError(f"{where} holds no readable DER certificate or key: {exc}") from exc
    if _details_of(key) != details:
        raise EntryError(f"{where}.keyDetails {details} does not match the key")
    return key, {"keyDetails": details, **material}, details


def _pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding."""
    head = f"DSSEv1 {len(payload_type.encode())} {payload_type} {len(payload)} "
    return head.encode() + payload


def _intoto_digests(payload_type: str, payload: bytes) -> list[str]:
    """`alg:hex` of the subjects of an in-toto statement (what upstream indexes)."""
    if payload_type != _INTOTO_TYPE:
        return []
    try:
        statement = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return []
    found: list[str] = []
    subjects = statement.get("subject") if isinstance(statement, dict) else None
    for subject in subjects if isinstance(subjects, list) else []:
        digests = subject.get("digest") if isinstance(subject, dict) else None
        if isinstance(digests, dict):
            found.extend(
                f"{alg}:{value}".lower()
                for alg, value in digests.items()
                if isinstance(alg, str) and isinstance(value, str)
            )
    return found[:1024]


def _envelope(value: Any, where: str) -> tuple[str, bytes, list[bytes]]:
    """(payloadType, payload, signatures) of a DSSE envelope object."""
    env = _obj(value, where)
    payload_type = _str(env.get("payloadType"), f"{where}.payloadType")
    payload = _b64(env.get("payload"), f"{where}.payload")
    sigs = env.get("signatures")
    if not isinstance(sigs, list) or not sigs:
        raise EntryError(f"{where}.signatures must be a non-empty list")
    signatures = [_b64(_obj(s, f"{where}.signatures[]").get("sig"), f"{where}.sig") for s in sigs]
    return payload_type, payload, signatures


def _finish(body: dict[str, Any], api: int, digests: Sequence[str]) -> NewEntry:
    data = canonical.dumps(body)
    return NewEntry(
        body=data,
        leaf_hash=hash_leaf(data),
        kind=str(body["kind"]),
        api_version=str(body["apiVersion"]),
        api=api,
        digests=tuple(dict.fromkeys(d.lower() for d in digests)),
    )


def canonicalize_v1(proposed: Any) -> NewEntry:
    """Validate a v1 proposed entry (hashedrekord or dsse 0.0.1) and build its log entry.

    Raises:
        EntryError: with the reason, if it is malformed or a signature does not verify.
    """
    entry = _obj(proposed, "entry")
    kind = entry.get("kind")
    version = entry.get("apiVersion")
    if version != "0.0.1":
        raise EntryError(f"unsupported apiVersion {version!r} for {kind!r} (want 0.0.1)")
    spec = _obj(entry.get("spec"), "spec")
    if kind == "hashedrekord":
        return _v1_hashedrekord(spec)
    if kind == "dsse":
        return _v1_dsse(spec)
    raise EntryError(f"unsupported entry kind {kind!r}: this log takes hashedrekord and dsse")


def _v1_hashedrekord(spec: dict[str, Any]) -> NewEntry:
    hashed = _obj(_obj(spec.get("data"), "spec.data").get("hash"), "spec.data.hash")
    algorithm = hashed.get("algorithm")
    if algorithm not in _V1_HASHES:
        raise EntryError(f"spec.data.hash.algorithm {algorithm!r} is not sha256/sha384/sha512")
    value = _str(hashed.get("value"), "spec.data.hash.value").lower()
    try:
        digest = bytes.fromhex(value)
    except ValueError as exc:
        raise EntryError("spec.data.hash.value is not hex") from exc
    if len(digest) != _hash_algorithm(algorithm).digest_size:
        raise EntryError(f"spec.data.hash.value is not a {algorithm} digest")
    sig = _obj(spec.get("signature"), "spec.signature")
    signature = _b64(sig.get("content"), "spec.signature.content")
    key_obj = _obj(sig.get("publicKey"), "spec.signature.publicKey")
    key, pem = _pem_verifier(key_obj.get("content"), "spec.signature.publicKey.content")
    if not _verify(key, signature, digest, algorithm, prehashed=True):
        raise EntryError("signature does not verify over the artifact digest with the given key")
    body = {
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": algorithm, "value": digest.hex()}},
            "signature": {"content": _b64s(signature), "publicKey": {"content": _b64s(pem)}},
        },
    }
    return _finish(body, 1, [f"{algorithm}:{digest.hex()}", *key_index_keys(pem)])


def _v1_dsse(spec: dict[str, Any]) -> NewEntry:
    if any(spec.get(k) is not None for k in ("envelopeHash", "payloadHash", "signatures")):
        raise EntryError("send proposedContent only: the log computes hashes and signatures")
    content = _obj(spec.get("proposedContent"), "spec.proposedContent")
    envelope_text = _str(content.get("envelope"), "spec.proposedContent.envelope")
    try:
        envelope = json.loads(envelope_text)
    except ValueError as exc:
        raise EntryError("spec.proposedContent.envelope is not JSON") from exc
    payload_type, payload, signatures = _envelope(envelope, "envelope")
    verifiers = content.get("verifiers")
    if not isinstance(verifiers, list) or not verifiers:
        raise EntryError("spec.proposedContent.verifiers must be a non-empty list")
    keys = [_pem_verifier(v, "spec.proposedContent.verifiers[]") for v in verifiers]
    pae = _pae(payload_type, payload)
    signed = []
    for signature in signatures:
        match = next((pem for k, pem in keys if _verify(k, signature, pae, "sha256", False)), None)
        if match is None:
            raise EntryError("all signatures must have a key that verifies it")
        signed.append({"signature": _b64s(signature), "verifier": _b64s(match)})
    signed.sort(key=lambda s: s["signature"])
    payload_hash = hashlib.sha256(payload).hexdigest()
    envelope_hash = hashlib.sha256(envelope_text.encode()).hexdigest()
    body = {
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {
            "envelopeHash": {"algorithm": "sha256", "value": envelope_hash},
            "payloadHash": {"algorithm": "sha256", "value": payload_hash},
            "signatures": signed,
        },
    }
    digests = [f"sha256:{payload_hash}", f"sha256:{envelope_hash}"]
    for pem in dict.fromkeys(s_["verifier"] for s_ in signed):
        digests.extend(key_index_keys(base64.b64decode(pem)))
    return _finish(body, 1, digests + _intoto_digests(payload_type, payload))


_V2_REQUEST_FIELDS = {
    "hashedRekordRequestV002",
    "hashed_rekord_request_v002",
    "dsseRequestV002",
    "dsse_request_v002",
}


def _known_fields(obj: dict[str, Any], allowed: Collection[str], where: str) -> None:
    """Refuse fields the protobuf message doesn't have, as grpc-gateway's decoder does."""
    for name in obj:
        if name not in allowed:
            raise EntryError(f'unknown field "{name}" in {where}')


def _field(obj: dict[str, Any], name: str) -> Any:
    """A protobuf-JSON field by its lowerCamelCase or its original snake_case name."""
    if name in obj:
        return obj[name]
    snake = "".join(f"_{ch.lower()}" if ch.isupper() else ch for ch in name)
    return obj.get(snake)


def _camel_and_snake(*names: str) -> set[str]:
    out = set(names)
    out.update("".join(f"_{c.lower()}" if c.isupper() else c for c in n) for n in names)
    return out


def canonicalize_v2(request: Any) -> NewEntry:
    """Validate a v2 CreateEntryRequest and build its hashedrekord 0.0.2 log entry.

    Raises:
        EntryError: with the reason, if it is malformed, not a hashedrekord, has unknown
            fields, or its signature does not verify.
    """
    req = _obj(request, "request")
    _known_fields(req, _V2_REQUEST_FIELDS, "CreateEntryRequest")
    hashed = _field(req, "hashedRekordRequestV002")
    if _field(req, "dsseRequestV002") is not None or hashed is None:
        raise EntryError("invalid type, must be hashedrekord")
    return _v2_hashedrekord(_obj(hashed, "hashedRekordRequestV002"))


def _v2_hashedrekord(req: dict[str, Any]) -> NewEntry:
    _known_fields(req, {"digest", "signature"}, "HashedRekordRequestV002")
    digest = _b64(req.get("digest"), "digest")
    sig = _obj(req.get("signature"), "signature")
    _known_fields(sig, {"content", "verifier"}, "Signature")
    signature = _b64(sig.get("content"), "signature.content")
    key, verifier, details = _v2_verifier(sig.get("verifier"), "signature.verifier")
    algorithm = _KEY_DETAILS[details]
    if algorithm is None:
        raise EntryError(f"{details} has no prehash, so it can't be used for hashedrekord")
    name = _V2_HASH_NAMES[algorithm]
    if len(digest) != _hash_algorithm(name).digest_size:
        raise EntryError(f"digest is not a {algorithm} digest as {details} requires")
    if not _verify(key, signature, digest, name, prehashed=True):
        raise EntryError("signature does not verify over the artifact digest with the given key")
    body = {
        "apiVersion": "0.0.2",
        "kind": "hashedrekord",
        "spec": {
            "hashedRekordV002": {
                "data": {"algorithm": algorithm, "digest": _b64s(digest)},
                "signature": {"content": _b64s(signature), "verifier": verifier},
            }
        },
    }
    return _finish(body, 2, [f"{name}:{digest.hex()}"])
