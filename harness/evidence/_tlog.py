"""Offline checks of a transparency-log entry: RFC 6962 inclusion proof and signed checkpoint.

Also the producer side (tree hash, audit path, checkpoint signing) for test data and goldens.
Checkpoints are C2SP signed notes: body lines (origin, tree size, base64 root hash, optional
extensions), a blank line, then signature lines ``— <name> <base64(key hint[4] ‖ signature)>``.
Key hints: Rekor v1 uses the first 4 bytes of SHA-256(DER SubjectPublicKeyInfo); C2SP Ed25519
keys use SHA-256(name ‖ 0x0A ‖ 0x01 ‖ raw key).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from harness.errors import VerificationFailed

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


class LogEntryInvalid(VerificationFailed):
    """The log entry, its inclusion proof or its checkpoint does not verify."""


def leaf_hash(body: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 ‖ body)."""
    return hashlib.sha256(b"\x00" + body).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: SHA-256(0x01 ‖ left ‖ right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def tree_root(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962 Merkle tree hash of leaf hashes `leaves` (at least one)."""
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(tree_root(leaves[:k]), tree_root(leaves[k:]))


def inclusion_path(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """RFC 6962 audit path of leaf `index` in the tree of leaf hashes `leaves`."""
    if len(leaves) <= 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*inclusion_path(leaves[:k], index), tree_root(leaves[k:])]
    return [*inclusion_path(leaves[k:], index - k), tree_root(leaves[:k])]


def root_from_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes:
    """The root implied by an inclusion proof (RFC 9162 section 2.1.3.2).

    Raises:
        LogEntryInvalid: the proof has the wrong length for `index` and `size`.
    """
    if index < 0 or index >= size:
        raise LogEntryInvalid(f"leaf index {index} is outside a tree of size {size}")
    fn, sn, result = index, size - 1, leaf
    for sibling in path:
        if sn == 0:
            raise LogEntryInvalid("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            result = node_hash(result, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise LogEntryInvalid("inclusion proof is shorter than the tree is deep")
    return result


def _spki(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_hints(key: PublicKey, name: str) -> set[bytes]:
    """The 4-byte key hints a checkpoint signature by `key` under `name` may carry."""
    hints = {hashlib.sha256(_spki(key)).digest()[:4]}
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        hints.add(hashlib.sha256(name.encode() + b"\n\x01" + raw).digest()[:4])
    return hints


def sign_checkpoint(origin: str, size: int, root: bytes, name: str, key: PrivateKey) -> str:
    """A C2SP signed note for a tree head (test data and the lab's own tools)."""
    body = f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"
    public = key.public_key()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        hint = hashlib.sha256(name.encode() + b"\n\x01" + raw).digest()[:4]
        signature = key.sign(body.encode())
    else:
        hint = hashlib.sha256(_spki(public)).digest()[:4]
        signature = key.sign(body.encode(), ec.ECDSA(hashes.SHA256()))
    return f"{body}\n\u2014 {name} {base64.b64encode(hint + signature).decode()}\n"


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
    body, sep, signatures = note.partition("\n\n")
    lines = body.split("\n")
    if not sep or len(lines) < 3:
        raise LogEntryInvalid("checkpoint is not a signed note (origin, size, root, signatures)")
    try:
        size = int(lines[1])
        root = base64.b64decode(lines[2], validate=True)
    except (ValueError, binascii.Error) as exc:
        raise LogEntryInvalid("checkpoint size or root hash is malformed") from exc
    message = (body + "\n").encode()
    for line in signatures.splitlines():
        if not line.startswith("\u2014 "):
            continue
        try:
            name, encoded = line[2:].rsplit(" ", 1)
            blob = base64.b64decode(encoded, validate=True)
        except (ValueError, binascii.Error):
            continue
        hint, signature = blob[:4], blob[4:]
        for key in keys:
            if hint not in key_hints(key, name):
                continue
            try:
                if isinstance(key, ed25519.Ed25519PublicKey):
                    key.verify(signature, message)
                else:
                    key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
            except InvalidSignature:
                continue
            return Checkpoint(lines[0], size, root, name)
    raise LogEntryInvalid("no checkpoint signature verifies with the log's public key")


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
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise LogEntryInvalid(f"the log entry is malformed ({type(exc).__name__}: {exc})") from exc
    raise LogEntryInvalid("no inclusion proof in the log entry")


def verify_log_entry(document: Any, trusted_keys: Sequence[PublicKey] | None = None) -> str:
    """Check a log entry offline: the inclusion proof and the checkpoint that signs its root.

    Args:
        document: the parsed `rekor/entry.json`. Either a Rekor entry itself (a Sigstore
            TransparencyLogEntry in protobuf JSON, or Rekor v1's `{uuid: {...}}` response)
            or ``{"tlogEntry": <entry>, "logPublicKey": <PEM or {"rawBytes": ...}>}``.
        trusted_keys: log keys to check the checkpoint with; default the `logPublicKey` in
            the document.

    Returns:
        a one-line description of what was verified.

    Raises:
        LogEntryInvalid: the proof, the checkpoint or its signature does not verify.
    """
    entry = document
    keys: list[PublicKey] = list(trusted_keys or ())
    if isinstance(document, dict) and "tlogEntry" in document:
        entry = document["tlogEntry"]
        if not keys and document.get("logPublicKey") is not None:
            keys.append(load_public_key(document["logPublicKey"]))
    proof = _parse_entry(entry)
    root = root_from_inclusion(leaf_hash(proof.body), proof.index, proof.size, proof.hashes)
    if root != proof.root:
        raise LogEntryInvalid("the inclusion proof does not lead to the stated root hash")
    if not keys:
        raise LogEntryInvalid("no log public key to check the checkpoint signature with")
    checkpoint = verify_checkpoint(proof.checkpoint, keys)
    if checkpoint.size != proof.size or checkpoint.root != proof.root:
        raise LogEntryInvalid("the signed checkpoint is for another tree head than the proof")
    return (
        f"entry {proof.index} included in tree of {proof.size} "
        f"({checkpoint.origin}, signed by {checkpoint.signer})"
    )
