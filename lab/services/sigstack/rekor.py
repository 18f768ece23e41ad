"""The `rekor` role: a Rekor-compatible transparency log with the v1 and v2 APIs over one tree.

Run as::

    python3 -m sigstack rekor --host 0.0.0.0 --port 3000 --db /var/lib/rekor/log.db \\
        --key /etc/cihub/sigstack/rekor.key [--key-v2 /etc/cihub/sigstack/rekor-v2.key] \\
        --origin rekor.cihub.lab

Keys (PEM private keys, PKCS#8 or SEC1): `--key` signs v1 checkpoints and Signed Entry
Timestamps (ECDSA P-256 as public Rekor v1 uses; P-384, P-521 and Ed25519 work too).
`--key-v2` signs v2 checkpoints (Ed25519 as rekor-tiles uses; defaults to `--key`).

Log IDs, as clients look them up in a trusted root:
    v1: SHA256(DER SubjectPublicKeyInfo of --key)           ("logID", hex, in v1 responses)
    v2: SHA256(origin || 0x0A || 0x01 || Ed25519 key)        (C2SP key ID, base64 in
        `logId.keyId`); for an ECDSA --key-v2 it is SHA256(DER SPKI) like v1.
`--print-log-ids` prints both (with the public keys and key details) as JSON and exits.

Checkpoints (C2SP signed notes, see `checkpoint.py`) of the same tree:
    v1: origin "<origin> - <treeID>", signature name <origin>, hint = v1 logID[:4]
    v2: origin "<origin>",            signature name <origin>, hint = v2 logId[:4]
treeID is a random 63-bit number fixed when the database is created.

Endpoints:
    POST /api/v2/log/entries            hashedRekordRequestV002 | dsseRequestV002 -> 201
                                        TransparencyLogEntry (protobuf JSON)
    GET  /api/v2/checkpoint             the v2 checkpoint at the current size (text/plain)
    POST /api/v1/log/entries            hashedrekord | dsse 0.0.1 -> 201 {uuid: LogEntry}
    GET  /api/v1/log                    LogInfo {rootHash, treeSize, signedTreeHead, treeID}
    GET  /api/v1/log/publicKey          the v1 public key (PEM)
    GET  /api/v1/log/proof?firstSize=&lastSize=   consistency proof {rootHash, hashes}
    GET  /api/v1/log/entries?logIndex=N and GET /api/v1/log/entries/{uuid}
    POST /api/v1/log/entries/retrieve   {entryUUIDs | logIndexes | entries} -> [{uuid: entry}]
    POST /api/v1/index/retrieve         {"hash": "sha256:<hex>"} -> [uuid, ...]
    GET  /healthz, GET /metrics         health (200 when the database answers), Prometheus text

Every entry body is RFC 8785 JSON in the format of the API it came through (hashedrekord or
dsse 0.0.1 for v1, 0.0.2 for v2); proposed entries are validated (the signature must verify
with the given key or certificate) and a failure is a 400 with the reason. A second
submission of an identical body is a 409 (v1: Location of the existing entry; v2: header
x-log-index), as upstream answers. Appends from concurrent requests are grouped into one
SQLite transaction (group commit) and answered only after it is on disk.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import bisect
import hashlib
import json
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

from . import canonical
from .checkpoint import (
    Checkpoint,
    KeySigner,
    NoteError,
    PrivateKey,
    PublicKey,
    check_key_name,
    ecdsa_hash,
    note_key_id,
    spki_der,
    spki_key_id,
)
from .http import HttpError, Request, Response, Server, json_response, serve_until_signal
from .http import text_response as _text
from .merkle import ProofError, hash_leaf
from .store import NewEntry, Store, StoredEntry, StoreError

DEFAULT_ORIGIN = "rekor.cihub.lab"
MAX_BATCH = 256
_CHECKPOINT_CACHE = 64
_INTOTO_TYPE = "application/vnd.in-toto+json"

ArtifactKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

# gRPC status codes, which Rekor v2 (a grpc-gateway) puts in its JSON error bodies
_GRPC_INVALID_ARGUMENT = 3
_GRPC_NOT_FOUND = 5
_GRPC_ALREADY_EXISTS = 6
_GRPC_INTERNAL = 13

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


# -- keys -----------------------------------------------------------------------------------


def load_private_key(pem: bytes, what: str = "key") -> PrivateKey:
    """An ECDSA or Ed25519 private key from PEM (PKCS#8 or SEC1), unencrypted.

    Raises:
        ValueError: if the PEM is unreadable or holds another kind of key.
    """
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"{what}: not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise ValueError(f"{what}: only ECDSA and Ed25519 keys are supported")
    return key


def key_details(key: PublicKey) -> str:
    """The Sigstore `PublicKeyDetails` name of a log key."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "PKIX_ED25519"
    details = _CURVE_DETAILS.get(key.curve.name)
    if details is None:
        raise ValueError(f"unsupported curve {key.curve.name}")
    return details


def log_ids(key: PrivateKey, key_v2: PrivateKey | None, origin: str) -> dict[str, Any]:
    """What a trusted root needs about both logs: log IDs, public keys, key details, names.

    Example:
        log_ids(ec_key, ed_key, "rekor.cihub.lab")["v2"]["logId"]  # base64 C2SP key ID
    """
    v2 = key_v2 or key
    out: dict[str, Any] = {}
    for api, private, key_id in (
        ("v1", key, spki_key_id(key.public_key())),
        ("v2", v2, note_key_id(origin, v2.public_key())),
    ):
        public = private.public_key()
        out[api] = {
            "logId": base64.b64encode(key_id).decode(),
            "logIdHex": key_id.hex(),
            "keyName": origin,
            "publicKey": {
                "rawBytes": base64.b64encode(spki_der(public)).decode(),
                "keyDetails": key_details(public),
            },
        }
    out["v2"]["origin"] = origin
    return out


def _sign(key: PrivateKey, data: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    return key.sign(data, ec.ECDSA(ecdsa_hash(key.curve)))


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


def _details_of(key: ArtifactKey) -> str:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "PKIX_ED25519"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return _CURVE_DETAILS.get(key.curve.name, f"unsupported curve {key.curve.name}")
    return f"PKIX_RSA_PKCS1V15_{key.key_size}_SHA256"


def _v2_verifier(value: Any, where: str) -> tuple[ArtifactKey, dict[str, Any], str]:
    """A v2 `Verifier` -> (key, canonical Verifier JSON, keyDetails)."""
    obj = _obj(value, where)
    details = _str(obj.get("keyDetails"), f"{where}.keyDetails")
    if details not in _KEY_DETAILS:
        raise EntryError(f"{where}.keyDetails {details} is not supported")
    cert_obj, key_obj = obj.get("x509Certificate"), obj.get("publicKey")
    if (cert_obj is None) == (key_obj is None):
        raise EntryError(f"{where} needs exactly one of x509Certificate and publicKey")
    try:
        if cert_obj is not None:
            der = _b64(_obj(cert_obj, f"{where}.x509Certificate").get("rawBytes"), where)
            cert = x509.load_der_x509_certificate(der)
            key = _artifact_key(cert.public_key(), where)
            material = {"x509Certificate": {"rawBytes": _b64s(der)}}
        else:
            der = _b64(_obj(key_obj, f"{where}.publicKey").get("rawBytes"), where)
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
    return _finish(body, 1, [f"{algorithm}:{digest.hex()}"])


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
    return _finish(body, 1, digests + _intoto_digests(payload_type, payload))


def canonicalize_v2(request: Any) -> NewEntry:
    """Validate a v2 CreateEntryRequest and build its hashedrekord or dsse 0.0.2 log entry.

    Raises:
        EntryError: with the reason, if it is malformed or a signature does not verify.
    """
    req = _obj(request, "request")
    hashed, dsse = req.get("hashedRekordRequestV002"), req.get("dsseRequestV002")
    if (hashed is None) == (dsse is None):
        raise EntryError("exactly one of hashedRekordRequestV002 and dsseRequestV002 is needed")
    if hashed is not None:
        return _v2_hashedrekord(_obj(hashed, "hashedRekordRequestV002"))
    return _v2_dsse(_obj(dsse, "dsseRequestV002"))


def _v2_hashedrekord(req: dict[str, Any]) -> NewEntry:
    digest = _b64(req.get("digest"), "digest")
    sig = _obj(req.get("signature"), "signature")
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


def _v2_dsse(req: dict[str, Any]) -> NewEntry:
    payload_type, payload, signatures = _envelope(req.get("envelope"), "envelope")
    verifiers = req.get("verifiers")
    if not isinstance(verifiers, list) or not verifiers:
        raise EntryError("verifiers must be a non-empty list")
    parsed = [_v2_verifier(v, "verifiers[]") for v in verifiers]
    pae = _pae(payload_type, payload)
    signed = []
    for signature in signatures:
        match = None
        for key, verifier, details in parsed:
            algorithm = _KEY_DETAILS[details]
            name = _V2_HASH_NAMES[algorithm] if algorithm else None
            if _verify(key, signature, pae, name, prehashed=False):
                match = verifier
                break
        if match is None:
            raise EntryError("all signatures must have a key that verifies it")
        signed.append({"content": _b64s(signature), "verifier": match})
    payload_hash = hashlib.sha256(payload).digest()
    body = {
        "apiVersion": "0.0.2",
        "kind": "dsse",
        "spec": {
            "dsseV002": {
                "payloadHash": {"algorithm": "SHA2_256", "digest": _b64s(payload_hash)},
                "signatures": signed,
            }
        },
    }
    digests = [f"sha256:{payload_hash.hex()}", *_intoto_digests(payload_type, payload)]
    return _finish(body, 2, digests)


# -- the log --------------------------------------------------------------------------------


class DuplicateEntry(Exception):
    """An identical entry is already in the log."""

    def __init__(self, entry: StoredEntry) -> None:
        super().__init__(f"an equivalent entry already exists at index {entry.index}")
        self.entry = entry


@dataclass
class _Slot:
    entry: NewEntry
    done: bool = False
    stored: StoredEntry | None = None
    duplicate: bool = False
    error: BaseException | None = None


_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass
class _Metrics:
    lock: threading.Lock = field(default_factory=threading.Lock)
    entries: dict[int, int] = field(default_factory=lambda: {1: 0, 2: 0})
    duplicates: int = 0
    rejected: int = 0
    batches: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * len(_LATENCY_BUCKETS))
    latency_sum: float = 0.0
    latency_count: int = 0
    requests: dict[tuple[str, str, int], int] = field(default_factory=dict)

    def observe_append(self, seconds: float) -> None:
        with self.lock:
            i = bisect.bisect_left(_LATENCY_BUCKETS, seconds)
            if i < len(self.buckets):
                self.buckets[i] += 1
            self.latency_sum += seconds
            self.latency_count += 1

    def count_request(self, method: str, route: str, status: int) -> None:
        with self.lock:
            key = (method, route, status)
            self.requests[key] = self.requests.get(key, 0) + 1


class RekorLog:
    """One Merkle log in a `Store`, signed for both APIs. Thread-safe.

    Example:
        log = RekorLog(Store(path), key=ec_key, key_v2=ed_key, origin="rekor.cihub.lab")
        stored = log.append(canonicalize_v2(request))
        response = log.v2_entry(stored)
    """

    def __init__(
        self,
        store: Store,
        key: PrivateKey,
        origin: str = DEFAULT_ORIGIN,
        key_v2: PrivateKey | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_key_name(origin)
        self.store = store
        self.tree = store.load_tree()
        self.origin = origin
        self.origin_v1 = f"{origin} - {store.tree_id}"
        self.key = key
        self.key_v2 = key_v2 or key
        self.log_id_v1 = spki_key_id(key.public_key())
        self.log_id_v2 = note_key_id(origin, self.key_v2.public_key())
        self._signer_v1 = KeySigner(origin, key, key_id=self.log_id_v1)
        self._signer_v2 = KeySigner(origin, self.key_v2, key_id=self.log_id_v2)
        self._clock = clock
        self._cond = threading.Condition()
        self._pending: list[_Slot] = []
        self._writing = False
        self._checkpoints: OrderedDict[tuple[int, int], str] = OrderedDict()
        self._checkpoint_lock = threading.Lock()
        self.metrics = _Metrics()

    @property
    def size(self) -> int:
        """The number of committed entries."""
        return self.tree.size

    # -- appending --------------------------------------------------------------------------

    def append(self, entry: NewEntry) -> StoredEntry:
        """Add an entry; returns it once committed to disk and to the tree.

        Concurrent callers are grouped: one of them writes everyone's pending entries in one
        transaction, and each gets its own consecutive index.

        Raises:
            DuplicateEntry: if an identical body is already logged.
            StoreError: if the database write failed (nothing was logged).
        """
        slot = _Slot(entry)
        with self._cond:
            self._pending.append(slot)
        while True:
            with self._cond:
                while not slot.done and self._writing:
                    self._cond.wait()
                if not slot.done:
                    batch = self._pending[:MAX_BATCH]
                    del self._pending[:MAX_BATCH]
                    self._writing = True
            if slot.done:
                break
            try:
                self._commit(batch)
            except BaseException as exc:
                for s in batch:
                    if s.stored is None or not s.duplicate:
                        s.error = exc
            finally:
                with self._cond:
                    for s in batch:
                        s.done = True
                    self._writing = False
                    self._cond.notify_all()
        if slot.error is not None:
            raise slot.error
        assert slot.stored is not None
        if slot.duplicate:
            raise DuplicateEntry(slot.stored)
        return slot.stored

    def _commit(self, batch: list[_Slot]) -> None:
        start = self.tree.size
        seen: dict[bytes, StoredEntry] = {}
        fresh: list[_Slot] = []
        now = int(self._clock())
        for slot in batch:
            leaf = slot.entry.leaf_hash
            existing = seen.get(leaf)
            if existing is None:
                index = self.store.index_of_leaf(leaf)
                existing = self.store.entry(index) if index is not None else None
            if existing is not None:
                slot.stored, slot.duplicate = existing, True
                continue
            e = slot.entry
            stored = StoredEntry(
                start + len(fresh), leaf, e.body, e.kind, e.api_version, e.api, now
            )
            seen[leaf] = stored
            slot.stored = stored
            fresh.append(slot)
        if not fresh:
            return
        entries = [s.entry for s in fresh]
        root = self.tree.root_after([e.leaf_hash for e in entries])
        self.store.append(entries, start, now, root)
        for e in entries:
            self.tree.append(e.leaf_hash)
        with self.metrics.lock:
            self.metrics.batches += 1
            for e in entries:
                self.metrics.entries[e.api] += 1

    # -- reading ----------------------------------------------------------------------------

    def entry(self, index: int) -> StoredEntry | None:
        """A committed entry by log index."""
        if not 0 <= index < self.tree.size:
            return None
        return self.store.entry(index)

    def entry_by_uuid(self, uuid: str) -> StoredEntry | None:
        """A committed entry by v1 UUID (64 hex) or entry ID (16 hex tree ID + UUID)."""
        uuid = uuid.lower()
        if len(uuid) == 80:
            if uuid[:16] != f"{self.store.tree_id:016x}":
                return None
            uuid = uuid[16:]
        if len(uuid) != 64:
            return None
        try:
            leaf = bytes.fromhex(uuid)
        except ValueError:
            return None
        index = self.store.index_of_leaf(leaf, below=self.tree.size)
        return self.store.entry(index) if index is not None else None

    def entry_id(self, entry: StoredEntry) -> str:
        """The v1 entry ID: tree ID (16 hex) followed by the UUID (the leaf hash, hex)."""
        return f"{self.store.tree_id:016x}{entry.leaf_hash.hex()}"

    def search_digest(self, digest: str) -> list[StoredEntry]:
        """Committed entries indexed under `digest` ("sha256:<hex>")."""
        indexes = self.store.indexes_by_digest(digest.lower(), below=self.tree.size)
        return [e for i in indexes if (e := self.store.entry(i)) is not None]

    def checkpoint(self, api: int, size: int | None = None) -> str:
        """The signed checkpoint of the tree at `size` (default: now) for API 1 or 2."""
        size = self.tree.size if size is None else size
        cache_key = (api, size)
        with self._checkpoint_lock:
            cached = self._checkpoints.get(cache_key)
        if cached is not None:
            return cached
        root = self.tree.root(size)
        if api == 1:
            text = Checkpoint(self.origin_v1, size, root).sign([self._signer_v1])
        else:
            text = Checkpoint(self.origin, size, root).sign([self._signer_v2])
        with self._checkpoint_lock:
            self._checkpoints[cache_key] = text
            while len(self._checkpoints) > _CHECKPOINT_CACHE:
                self._checkpoints.popitem(last=False)
        return text

    def signed_entry_timestamp(self, entry: StoredEntry) -> bytes:
        """The v1 SET: the v1 key's signature over RFC 8785 {body, integratedTime, logID,
        logIndex}."""
        payload = {
            "body": _b64s(entry.body),
            "integratedTime": entry.integrated_time,
            "logID": self.log_id_v1.hex(),
            "logIndex": entry.index,
        }
        return _sign(self.key, canonical.dumps(payload))

    def v1_entry(self, entry: StoredEntry, size: int | None = None) -> dict[str, Any]:
        """`{entryID: LogEntry}` as Rekor v1 answers, with a proof at `size` (default: now)."""
        size = self.tree.size if size is None else size
        proof = self.tree.inclusion_proof(entry.index, size)
        body = {
            "body": _b64s(entry.body),
            "integratedTime": entry.integrated_time,
            "logID": self.log_id_v1.hex(),
            "logIndex": entry.index,
            "verification": {
                "inclusionProof": {
                    "checkpoint": self.checkpoint(1, size),
                    "hashes": [h.hex() for h in proof],
                    "logIndex": entry.index,
                    "rootHash": self.tree.root(size).hex(),
                    "treeSize": size,
                },
                "signedEntryTimestamp": _b64s(self.signed_entry_timestamp(entry)),
            },
        }
        return {self.entry_id(entry): body}

    def v2_entry(self, entry: StoredEntry, size: int | None = None) -> dict[str, Any]:
        """The protobuf-JSON `TransparencyLogEntry` Rekor v2 answers (integratedTime "0")."""
        size = self.tree.size if size is None else size
        proof = self.tree.inclusion_proof(entry.index, size)
        return {
            "logIndex": str(entry.index),
            "logId": {"keyId": _b64s(self.log_id_v2)},
            "kindVersion": {"kind": entry.kind, "version": entry.api_version},
            "integratedTime": "0",
            "inclusionProof": {
                "logIndex": str(entry.index),
                "rootHash": _b64s(self.tree.root(size)),
                "treeSize": str(size),
                "hashes": [_b64s(h) for h in proof],
                "checkpoint": {"envelope": self.checkpoint(2, size)},
            },
            "canonicalizedBody": _b64s(entry.body),
        }

    def log_info(self) -> dict[str, Any]:
        """Rekor v1 LogInfo."""
        size = self.tree.size
        return {
            "rootHash": self.tree.root(size).hex(),
            "treeSize": size,
            "signedTreeHead": self.checkpoint(1, size),
            "treeID": str(self.store.tree_id),
            "inactiveShards": [],
        }

    def consistency(self, first: int, last: int) -> dict[str, Any]:
        """Rekor v1 ConsistencyProof between two sizes."""
        return {
            "rootHash": self.tree.root(last).hex(),
            "hashes": [h.hex() for h in self.tree.consistency_proof(first, last)],
        }

    def metrics_text(self) -> str:
        """Prometheus text exposition."""
        m = self.metrics
        with m.lock:
            lines = [
                "# HELP rekor_tree_size Number of leaves in the Merkle tree.",
                "# TYPE rekor_tree_size gauge",
                f"rekor_tree_size {self.tree.size}",
                "# HELP rekor_entries_total Entries appended by this process, by API version.",
                "# TYPE rekor_entries_total counter",
                *(f'rekor_entries_total{{api="v{api}"}} {n}' for api, n in m.entries.items()),
                "# HELP rekor_duplicate_entries_total Submissions of an already logged body.",
                "# TYPE rekor_duplicate_entries_total counter",
                f"rekor_duplicate_entries_total {m.duplicates}",
                "# HELP rekor_rejected_entries_total Proposed entries refused as invalid.",
                "# TYPE rekor_rejected_entries_total counter",
                f"rekor_rejected_entries_total {m.rejected}",
                "# HELP rekor_append_batches_total Transactions that appended entries.",
                "# TYPE rekor_append_batches_total counter",
                f"rekor_append_batches_total {m.batches}",
                "# HELP rekor_append_latency_seconds Time to validate, commit and prove an entry.",
                "# TYPE rekor_append_latency_seconds histogram",
            ]
            cumulative = 0
            for bound, count in zip(_LATENCY_BUCKETS, m.buckets, strict=True):
                cumulative += count
                lines.append(f'rekor_append_latency_seconds_bucket{{le="{bound}"}} {cumulative}')
            lines += [
                f'rekor_append_latency_seconds_bucket{{le="+Inf"}} {m.latency_count}',
                f"rekor_append_latency_seconds_sum {m.latency_sum:.6f}",
                f"rekor_append_latency_seconds_count {m.latency_count}",
                "# HELP rekor_http_requests_total HTTP requests by method, route and status.",
                "# TYPE rekor_http_requests_total counter",
            ]
            lines += [
                f'rekor_http_requests_total{{method="{meth}",route="{route}",code="{code}"}} {n}'
                for (meth, route, code), n in sorted(m.requests.items())
            ]
        return "\n".join(lines) + "\n"


# -- HTTP -----------------------------------------------------------------------------------


def _v1_error(status: int, message: str) -> HttpError:
    return HttpError(status, message)


def _v2_error(status: int, grpc_code: int, message: str) -> Response:
    body = {"code": grpc_code, "message": message, "details": []}
    return json_response(body, status)


def _int_param(request: Request, name: str, default: int | None) -> int:
    text = request.param(name)
    if text is None or text == "":
        if default is None:
            raise _v1_error(400, f"{name} is required")
        return default
    if not text.isdigit():
        raise _v1_error(400, f"{name} must be a non-negative integer")
    return int(text)


class RekorApp:
    """The HTTP routes of the `rekor` role over a `RekorLog`."""

    def __init__(self, log: RekorLog) -> None:
        self.log = log
        self._get: dict[str, Callable[[Request], Response]] = {
            "/healthz": self._healthz,
            "/metrics": self._metrics,
            "/api/v1/log": self._log_info,
            "/api/v1/log/publicKey": self._public_key,
            "/api/v1/log/proof": self._proof,
            "/api/v1/log/entries": self._entry_by_index,
            "/api/v2/checkpoint": self._checkpoint_v2,
        }
        self._post: dict[str, Callable[[Request], Response]] = {
            "/api/v1/log/entries": self._create_v1,
            "/api/v1/log/entries/retrieve": self._retrieve,
            "/api/v1/index/retrieve": self._index,
            "/api/v2/log/entries": self._create_v2,
        }

    def __call__(self, request: Request) -> Response:
        route, response = self._route(request)
        self.log.metrics.count_request(request.method, route, response.status)
        return response

    def _route(self, request: Request) -> tuple[str, Response]:
        """(route label for metrics, response)."""
        path = request.path.rstrip("/") or "/"
        reading = request.method in ("GET", "HEAD")
        handler = (self._get if reading else self._post).get(path)
        route = path if path in self._get or path in self._post else "other"
        try:
            if handler is not None:
                return route, handler(request)
            if reading and path.startswith("/api/v1/log/entries/"):
                route = "/api/v1/log/entries/{uuid}"
                return route, self._entry_by_uuid(path.rsplit("/", 1)[1])
            if route != "other":
                raise _v1_error(405, f"method {request.method} is not allowed on {path}")
            raise _v1_error(404, f"path {path} was not found")
        except HttpError as exc:
            return route, json_response({"code": exc.code, "message": exc.message}, exc.status)

    # -- v2 ---------------------------------------------------------------------------------

    def _create_v2(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            entry = canonicalize_v2(request.json())
        except HttpError as exc:
            return _v2_error(400, _GRPC_INVALID_ARGUMENT, exc.message)
        except EntryError as exc:
            self._rejected()
            return _v2_error(400, _GRPC_INVALID_ARGUMENT, f"invalid entry: {exc}")
        try:
            stored = self.log.append(entry)
        except DuplicateEntry as dup:
            self._duplicate()
            response = _v2_error(409, _GRPC_ALREADY_EXISTS, str(dup))
            response.headers.append(("x-log-index", str(dup.entry.index)))
            return response
        except StoreError as exc:
            return _v2_error(500, _GRPC_INTERNAL, f"failed to integrate entry: {exc}")
        body = self.log.v2_entry(stored)
        self.log.metrics.observe_append(time.perf_counter() - started)
        return json_response(body, 201)

    def _checkpoint_v2(self, request: Request) -> Response:
        return _text(self.log.checkpoint(2))

    # -- v1 ---------------------------------------------------------------------------------

    def _create_v1(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            entry = canonicalize_v1(request.json())
        except EntryError as exc:
            self._rejected()
            raise _v1_error(400, f"invalid entry: {exc}") from exc
        try:
            stored = self.log.append(entry)
        except DuplicateEntry as dup:
            self._duplicate()
            uuid = self.log.entry_id(dup.entry)
            message = f"an equivalent entry already exists in the transparency log with UUID {uuid}"
            response = json_response({"code": 409, "message": message}, 409)
            response.headers.append(("Location", f"/api/v1/log/entries/{uuid}"))
            return response
        except StoreError as exc:
            raise _v1_error(500, f"failed to append the entry: {exc}") from exc
        body = self.log.v1_entry(stored)
        uuid = next(iter(body))
        self.log.metrics.observe_append(time.perf_counter() - started)
        headers = [("ETag", uuid), ("Location", f"/api/v1/log/entries/{uuid}")]
        return json_response(body, 201, headers)

    def _log_info(self, request: Request) -> Response:
        return json_response(self.log.log_info())

    def _public_key(self, request: Request) -> Response:
        pem = self.log.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return _text(pem, content_type="application/x-pem-file")

    def _proof(self, request: Request) -> Response:
        size = self.log.size
        first = _int_param(request, "firstSize", 1)
        last = _int_param(request, "lastSize", size)
        if first < 1:
            raise _v1_error(400, "firstSize must be at least 1")
        if first > last:
            raise _v1_error(400, f"firstSize({first}) must not be more than lastSize({last})")
        if last > size:
            raise _v1_error(400, f"lastSize({last}) is beyond the tree size ({size})")
        try:
            return json_response(self.log.consistency(first, last))
        except ProofError as exc:
            raise _v1_error(400, str(exc)) from exc

    def _entry_by_index(self, request: Request) -> Response:
        index = _int_param(request, "logIndex", None)
        entry = self.log.entry(index)
        if entry is None:
            raise _v1_error(404, f"no entry at logIndex {index}")
        return json_response(self.log.v1_entry(entry))

    def _entry_by_uuid(self, uuid: str) -> Response:
        entry = self.log.entry_by_uuid(uuid)
        if entry is None:
            raise _v1_error(404, f"no entry with UUID {uuid}")
        return json_response(self.log.v1_entry(entry))

    def _retrieve(self, request: Request) -> Response:
        query = request.json()
        if not isinstance(query, dict):
            raise _v1_error(400, "search query must be an object")
        found: dict[int, StoredEntry] = {}
        for uuid in _list(query.get("entryUUIDs"), "entryUUIDs"):
            if isinstance(uuid, str) and (entry := self.log.entry_by_uuid(uuid)) is not None:
                found[entry.index] = entry
        for index in _list(query.get("logIndexes"), "logIndexes"):
            if isinstance(index, int) and (entry := self.log.entry(index)) is not None:
                found[entry.index] = entry
        for proposed in _list(query.get("entries"), "entries"):
            try:
                leaf = canonicalize_v1(proposed).leaf_hash
            except EntryError as exc:
                raise _v1_error(400, f"invalid entry in search: {exc}") from exc
            if (entry := self.log.entry_by_uuid(leaf.hex())) is not None:
                found[entry.index] = entry
        size = self.log.size
        return json_response([self.log.v1_entry(found[i], size) for i in sorted(found)])

    def _index(self, request: Request) -> Response:
        query = request.json()
        if not isinstance(query, dict):
            raise _v1_error(400, "search query must be an object")
        wanted = query.get("hash")
        if not isinstance(wanted, str) or not wanted:
            raise _v1_error(400, 'this log searches by digest only: {"hash": "sha256:<hex>"}')
        digest = wanted.lower() if ":" in wanted else f"sha256:{wanted.lower()}"
        return json_response([self.log.entry_id(e) for e in self.log.search_digest(digest)])

    # -- operations -------------------------------------------------------------------------

    def _healthz(self, request: Request) -> Response:
        if not self.log.store.ping():
            return json_response({"status": "unavailable"}, 503)
        return json_response({"status": "ok", "treeSize": self.log.size})

    def _metrics(self, request: Request) -> Response:
        return _text(self.log.metrics_text(), content_type="text/plain; version=0.0.4")

    def _rejected(self) -> None:
        with self.log.metrics.lock:
            self.log.metrics.rejected += 1

    def _duplicate(self) -> None:
        with self.log.metrics.lock:
            self.log.metrics.duplicates += 1


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _v1_error(400, f"{where} must be a list")
    return value


# -- process --------------------------------------------------------------------------------


class RekorService:
    """A `RekorLog` with its HTTP server, for in-process use (tests, benchmarks).

    Example:
        with RekorService(Path("log.db"), key, origin="rekor.test", key_v2=ed) as svc:
            requests.post(svc.url + "/api/v2/log/entries", json=...)
    """

    def __init__(
        self,
        db: Path,
        key: PrivateKey,
        origin: str = DEFAULT_ORIGIN,
        key_v2: PrivateKey | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        log_requests: bool = False,
    ) -> None:
        self.store = Store(db)
        try:
            self.log = RekorLog(self.store, key, origin, key_v2)
            self.server = Server(RekorApp(self.log), host, port, "rekor", log_requests)
        except BaseException:
            self.store.close()
            raise

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:41234."""
        return self.server.url

    def start(self) -> RekorService:
        """Serve on a background thread."""
        self.server.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the database."""
        self.server.stop()
        self.store.close()

    def __enter__(self) -> RekorService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sigstack rekor",
        description="A Rekor-compatible transparency log (v1 and v2 APIs) for the lab.",
    )
    parser.add_argument("--host", default="0.0.0.0", help="listen address (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=3000, help="listen port (default 3000)")
    parser.add_argument(
        "--db", type=Path, default=Path("/var/lib/rekor/log.db"), help="SQLite database file"
    )
    parser.add_argument(
        "--key", type=Path, required=True, help="v1 signer: PEM ECDSA (P-256) or Ed25519 key"
    )
    parser.add_argument(
        "--key-v2", type=Path, help="v2 checkpoint signer: PEM Ed25519 key (default: --key)"
    )
    parser.add_argument(
        "--origin", default=DEFAULT_ORIGIN, help=f"log origin / key name (default {DEFAULT_ORIGIN})"
    )
    parser.add_argument(
        "--print-log-ids", action="store_true", help="print log IDs and public keys as JSON, exit"
    )
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the rekor role until SIGTERM/SIGINT; returns the exit status."""
    args = _parser().parse_args(list(argv) if argv is not None else None)
    try:
        key = load_private_key(args.key.read_bytes(), f"--key {args.key}")
        key_v2 = None
        if args.key_v2 is not None:
            key_v2 = load_private_key(args.key_v2.read_bytes(), f"--key-v2 {args.key_v2}")
        check_key_name(args.origin)
    except (OSError, ValueError, NoteError) as exc:
        print(f"rekor: {exc}", file=sys.stderr)
        return 2
    if args.print_log_ids:
        print(json.dumps(log_ids(key, key_v2, args.origin), indent=2))
        return 0
    try:
        service = RekorService(
            args.db, key, args.origin, key_v2, args.host, args.port, not args.quiet
        )
    except (StoreError, OSError) as exc:
        print(f"rekor: {exc}", file=sys.stderr)
        return 1
    log = service.log
    service.server.log(
        f"origin={log.origin} treeID={service.store.tree_id} size={log.size} "
        f"v1.logID={log.log_id_v1.hex()} v2.logId={_b64s(log.log_id_v2)} db={args.db}"
    )
    return serve_until_signal(service.server, on_stop=service.store.close)
