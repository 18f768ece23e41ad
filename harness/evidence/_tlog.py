"""Offline checks of a transparency-log entry: RFC 6962 inclusion proof and signed checkpoint.

Also the producer side (tree hash, audit path, checkpoint signing) for test data and goldens.
The Merkle math is `lab.services.sigstack.merkle` and the C2SP signed notes are
`lab.services.sigstack.checkpoint`; this module reads entry documents (a Sigstore
TransparencyLogEntry in protobuf JSON or a Rekor v1 response, keys as PEM or `rawBytes`) and
turns their `ProofError`/`NoteError` into `LogEntryInvalid`. A checkpoint signature may carry
either key hint: Rekor v1's SHA-256(DER SubjectPublicKeyInfo) or, for Ed25519 keys, the C2SP
key ID SHA-256(name ‖ 0x0A ‖ 0x01 ‖ raw key).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from harness.errors import VerificationFailed
from lab.services.sigstack import checkpoint as notes
from lab.services.sigstack import merkle

PublicKey = notes.PublicKey
PrivateKey = notes.PrivateKey

_NOT_A_NOTE = "checkpoint is not a signed note (origin, size, root, signatures)"
_PROOF_WORDING = {  # merkle.ProofError messages, in this module's words
    "inclusion proof is too long": "inclusion proof is longer than the tree is deep",
    "inclusion proof is too short": "inclusion proof is shorter than the tree is deep",
}


class LogEntryInvalid(VerificationFailed):
    """The log entry, its inclusion proof or its checkpoint does not verify."""


def leaf_hash(body: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 ‖ body)."""
    return merkle.hash_leaf(body)


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: SHA-256(0x01 ‖ left ‖ right)."""
    return merkle.hash_children(left, right)


def tree_root(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962 Merkle tree hash of leaf hashes `leaves` (at least one)."""
    return merkle.mth(leaves)


def inclusion_path(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """RFC 6962 audit path of leaf `index` in the tree of leaf hashes `leaves`.

    Raises:
        LogEntryInvalid: `index` is not a leaf of the tree.
    """
    try:
        return merkle.path(index, leaves)
    except merkle.ProofError as exc:
        raise LogEntryInvalid(
            f"leaf index {index} is outside a tree of size {len(leaves)}"
        ) from exc


def root_from_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes:
    """The root implied by an inclusion proof (RFC 9162 section 2.1.3.2).

    Raises:
        LogEntryInvalid: the proof has the wrong length for `index` and `size`.
    """
    if index < 0 or index >= size:
        raise LogEntryInvalid(f"leaf index {index} is outside a tree of size {size}")
    try:
        return merkle.root_from_inclusion_proof(leaf, index, size, path)
    except merkle.ProofError as exc:
        raise LogEntryInvalid(_PROOF_WORDING.get(str(exc), str(exc))) from exc


def _key_ids(key: PublicKey, name: str) -> list[bytes]:
    """The key IDs whose first 4 bytes a signature by `key` under `name` may carry as hint."""
    ids = [notes.spki_key_id(key)]  # Rekor v1, any key type
    try:
        native = notes.note_key_id(name, key)  # C2SP for Ed25519 keys
    except notes.NoteError:  # not a C2SP key name, so no C2SP key ID
        return ids
    return ids if native in ids else [*ids, native]


def key_hints(key: PublicKey, name: str) -> set[bytes]:
    """The 4-byte key hints a checkpoint signature by `key` under `name` may carry."""
    return {key_id[:4] for key_id in _key_ids(key, name)}


def sign_checkpoint(origin: str, size: int, root: bytes, name: str, key: PrivateKey) -> str:
    """A C2SP signed note for a tree head (test data and the lab's own tools).

    Raises:
        LogEntryInvalid: `origin`, `size` or `name` cannot go into a C2SP checkpoint.
    """
    try:
        return notes.Checkpoint(origin, size, root).sign([notes.KeySigner(name, key)])
    except notes.NoteError as exc:
        raise LogEntryInvalid(f"cannot sign the checkpoint: {exc}") from exc


@dataclass(frozen=True)
class Checkpoint:
    """A parsed, signature-checked checkpoint."""

    origin: str
    size: int
    root: bytes
    signer: str


def verify_checkpoint(note: str, keys: Sequence[PublicKey]) -> Checkpoint:
    """Parse the signed note `note` and check that one of `keys` signed it.

    Raises:
        LogEntryInvalid: malformed, or no signature line verifies with any of `keys`.
    """
    try:
        signed = notes.parse_signed_note(note)
    except notes.NoteError as exc:
        raise LogEntryInvalid(_NOT_A_NOTE) from exc
    try:
        body = notes.Checkpoint.from_text(signed.text)
    except notes.NoteError as exc:
        if signed.text.count("\n") < 3:
            raise LogEntryInvalid(_NOT_A_NOTE) from exc
        raise LogEntryInvalid("checkpoint size or root hash is malformed") from exc
    verifiers = [
        notes.KeyVerifier(name, key, key_id)
        for name in dict.fromkeys(sig.name for sig in signed.signatures)
        for key in keys
        for key_id in _key_ids(key, name)
    ]
    try:
        signer = signed.verify(verifiers)
    except notes.NoteError as exc:
        raise LogEntryInvalid(
            "no checkpoint signature verifies with a log key of the pinned trust root"
        ) from exc
    return Checkpoint(body.origin, body.size, body.root_hash, signer.name)


def load_public_key(value: Any) -> PublicKey:
    """A log public key from PEM text or `{"rawBytes": base64 DER SPKI}` (trusted-root style).

    Raises:
        LogEntryInvalid: not a P-256/Ed25519 public key.
    """
    try:
        if isinstance(value, dict):
            key = serialization.load_der_public_key(base64.b64decode(value["rawBytes"]))
        elif isinstance(value, str | bytes):
            data = value.encode() if isinstance(value, str) else value
            key = serialization.load_pem_public_key(data)
        else:
            raise ValueError("unknown key form")
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise LogEntryInvalid("the log public key is malformed") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise LogEntryInvalid("the log public key is neither ECDSA nor Ed25519")
    return key


@dataclass(frozen=True)
class _Proof:
    body: bytes
    index: int
    size: int
    root: bytes
    hashes: tuple[bytes, ...]
    checkpoint: str


def _decode_hash(text: Any, hex_form: bool) -> bytes:
    if not isinstance(text, str):
        raise LogEntryInvalid("a proof hash is not a string")
    try:
        return bytes.fromhex(text) if hex_form else base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise LogEntryInvalid(f"proof hash {text[:20]!r} is malformed") from exc


def _parse_entry(entry: Any) -> _Proof:
    if not isinstance(entry, dict):
        raise LogEntryInvalid("the log entry is not a JSON object")
    try:
        if "inclusionProof" in entry:  # TransparencyLogEntry (protobuf JSON, base64 hashes)
            proof = entry["inclusionProof"]
            checkpoint = proof["checkpoint"]
            return _Proof(
                body=base64.b64decode(entry["canonicalizedBody"], validate=True),
                index=int(proof["logIndex"]),
                size=int(proof["treeSize"]),
                root=_decode_hash(proof["rootHash"], hex_form=False),
                hashes=tuple(_decode_hash(h, hex_form=False) for h in proof.get("hashes", [])),
                checkpoint=checkpoint["envelope"] if isinstance(checkpoint, dict) else checkpoint,
            )
        if len(entry) == 1:  # Rekor v1 REST response: {uuid: {body, verification, ...}}
            (value,) = entry.values()
            proof = value["verification"]["inclusionProof"]
            return _Proof(
                body=base64.b64decode(value["body"], validate=True),
                index=int(proof["logIndex"]),
                size=int(proof["treeSize"]),
                root=_decode_hash(proof["rootHash"], hex_form=True),
                hashes=tuple(_decode_hash(h, hex_form=True) for h in proof.get("hashes", [])),
                checkpoint=str(proof["checkpoint"]),
            )
    except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as exc:
        raise LogEntryInvalid(f"the log entry is malformed ({type(exc).__name__}: {exc})") from exc
    raise LogEntryInvalid("no inclusion proof in the log entry")


def _public_der(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class EntryIdentity:
    """What names a log entry: its index, its log's id and its canonicalized body."""

    index: int
    log_id: bytes
    body: bytes


def entry_identity(document: Any) -> EntryIdentity:
    """The index, log id and body of a log entry document (any form `verify_log_entry` reads).

    Raises:
        LogEntryInvalid: the entry is malformed.
    """
    entry = document.get("tlogEntry", document) if isinstance(document, dict) else document
    if not isinstance(entry, dict):
        raise LogEntryInvalid("the log entry is not a JSON object")
    try:
        if "canonicalizedBody" in entry:
            log_id = entry["logId"]["keyId"]
            return EntryIdentity(
                int(entry["logIndex"]),
                base64.b64decode(log_id, validate=True),
                base64.b64decode(entry["canonicalizedBody"], validate=True),
            )
        if len(entry) == 1:
            (value,) = entry.values()
            return EntryIdentity(
                int(value["logIndex"]),
                bytes.fromhex(value["logID"]),
                base64.b64decode(value["body"], validate=True),
            )
    except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as exc:
        raise LogEntryInvalid(f"the log entry is malformed ({type(exc).__name__}: {exc})") from exc
    raise LogEntryInvalid("the log entry has no canonicalized body")


def verify_log_entry(document: Any, trusted_keys: Sequence[PublicKey]) -> str:
    """Check a log entry offline: the inclusion proof and the checkpoint that signs its root.

    Args:
        document: the parsed `rekor/entry.json`. Either a Rekor entry itself (a Sigstore
            TransparencyLogEntry in protobuf JSON, or Rekor v1's `{uuid: {...}}` response)
            or ``{"tlogEntry": <entry>, "logPublicKey": <PEM or {"rawBytes": ...}>}``.
        trusted_keys: the pinned log keys the checkpoint must be signed with. A key stored
            in the document never vouches for it: a `logPublicKey` that is not one of
            `trusted_keys` fails the entry.

    Returns:
        a one-line description of what was verified.

    Raises:
        LogEntryInvalid: the proof, the checkpoint or its signature does not verify.
    """
    entry = document
    keys: list[PublicKey] = list(trusted_keys)
    if isinstance(document, dict) and "tlogEntry" in document:
        entry = document["tlogEntry"]
        if document.get("logPublicKey") is not None:
            embedded = _public_der(load_public_key(document["logPublicKey"]))
            if embedded not in {_public_der(k) for k in keys}:
                raise LogEntryInvalid("its logPublicKey is not a log key of the pinned trust root")
    proof = _parse_entry(entry)
    root = root_from_inclusion(leaf_hash(proof.body), proof.index, proof.size, proof.hashes)
    if root != proof.root:
        raise LogEntryInvalid("the inclusion proof does not lead to the stated root hash")
    if not keys:
        raise LogEntryInvalid("no pinned log public key to check the checkpoint signature with")
    checkpoint = verify_checkpoint(proof.checkpoint, keys)
    if checkpoint.size != proof.size or checkpoint.root != proof.root:
        raise LogEntryInvalid("the signed checkpoint is for another tree head than the proof")
    return (
        f"entry {proof.index} included in tree of {proof.size} "
        f"({checkpoint.origin}, signed by {checkpoint.signer})"
    )
