from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from harness.evidence import _tlog
from lab.services.sigstack import checkpoint as notes


@pytest.mark.parametrize("size", range(1, 18))
def test_every_inclusion_proof_leads_to_the_root(size: int) -> None:
    leaves = [_tlog.leaf_hash(f"entry {i}".encode()) for i in range(size)]
    root = _tlog.tree_root(leaves)
    for index in range(size):
        path = _tlog.inclusion_path(leaves, index)
        assert _tlog.root_from_inclusion(leaves[index], index, size, path) == root
        if path:  # a wrong sibling or index leads elsewhere
            bad = [hashlib.sha256(b"x").digest(), *path[1:]]
            assert _tlog.root_from_inclusion(leaves[index], index, size, bad) != root


def test_bad_proof_shapes_are_rejected() -> None:
    leaves = [_tlog.leaf_hash(bytes([i])) for i in range(4)]
    path = _tlog.inclusion_path(leaves, 1)
    with pytest.raises(_tlog.LogEntryInvalid):
        _tlog.root_from_inclusion(leaves[1], 4, 4, path)
    with pytest.raises(_tlog.LogEntryInvalid):
        _tlog.root_from_inclusion(leaves[1], 1, 4, path[:1])
    with pytest.raises(_tlog.LogEntryInvalid):
        _tlog.root_from_inclusion(leaves[1], 1, 4, [*path, path[0]])


@pytest.mark.parametrize("kind", ["ecdsa", "ed25519"])
def test_checkpoints_verify_with_the_log_key_only(kind: str) -> None:
    key: _tlog.PrivateKey = (
        ec.generate_private_key(ec.SECP256R1())
        if kind == "ecdsa"
        else ed25519.Ed25519PrivateKey.generate()
    )
    root = hashlib.sha256(b"root").digest()
    note = _tlog.sign_checkpoint("log.example - 1", 7, root, "log.example", key)
    checkpoint = _tlog.verify_checkpoint(note, [key.public_key()])
    assert (checkpoint.size, checkpoint.root, checkpoint.origin) == (7, root, "log.example - 1")
    other = ed25519.Ed25519PrivateKey.generate().public_key()
    with pytest.raises(_tlog.LogEntryInvalid):
        _tlog.verify_checkpoint(note, [other])
    with pytest.raises(_tlog.LogEntryInvalid):
        _tlog.verify_checkpoint(note.replace("\n7\n", "\n8\n"), [key.public_key()])


def test_rekor_v1_response_shape_is_accepted() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    bodies = [f"body {i}".encode() for i in range(3)]
    leaves = [_tlog.leaf_hash(b) for b in bodies]
    root = _tlog.tree_root(leaves)
    entry = {
        "24296fb24b8ad77a": {
            "body": base64.b64encode(bodies[2]).decode(),
            "logIndex": 2,
            "verification": {
                "inclusionProof": {
                    "logIndex": 2,
                    "treeSize": 3,
                    "rootHash": root.hex(),
                    "hashes": [h.hex() for h in _tlog.inclusion_path(leaves, 2)],
                    "checkpoint": _tlog.sign_checkpoint("rekor - 2", 3, root, "rekor", key),
                }
            },
        }
    }
    assert "entry 2" in _tlog.verify_log_entry(entry, [key.public_key()])
    with pytest.raises(_tlog.LogEntryInvalid, match="no pinned log public key"):
        _tlog.verify_log_entry(entry, [])
    wrapped = {"tlogEntry": entry, "logPublicKey": _pem(key.public_key())}
    assert "entry 2" in _tlog.verify_log_entry(wrapped, [key.public_key()])
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(_tlog.LogEntryInvalid, match="not a log key of the pinned trust root"):
        _tlog.verify_log_entry(
            {"tlogEntry": entry, "logPublicKey": _pem(other)}, [key.public_key()]
        )


def _pem(key: _tlog.PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def test_proof_errors_keep_their_wording() -> None:
    leaves = [_tlog.leaf_hash(bytes([i])) for i in range(4)]
    path = _tlog.inclusion_path(leaves, 1)
    with pytest.raises(_tlog.LogEntryInvalid, match="^leaf index 4 is outside a tree of size 4$"):
        _tlog.root_from_inclusion(leaves[1], 4, 4, path)
    with pytest.raises(_tlog.LogEntryInvalid, match="^inclusion proof is shorter than the tree"):
        _tlog.root_from_inclusion(leaves[1], 1, 4, path[:1])
    with pytest.raises(_tlog.LogEntryInvalid, match="^inclusion proof is longer than the tree"):
        _tlog.root_from_inclusion(leaves[1], 1, 4, [*path, path[0]])
    with pytest.raises(_tlog.LogEntryInvalid, match="^leaf index 4 is outside a tree of size 4$"):
        _tlog.inclusion_path(leaves, 4)


def test_checkpoint_errors_keep_their_wording() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    root = hashlib.sha256(b"root").digest()
    note = _tlog.sign_checkpoint("log - 1", 7, root, "log", key)
    encoded_root = base64.b64encode(root).decode()
    for bad, message in [
        (note.replace("\n\n", "\n"), "is not a signed note"),
        (note.replace("\n7\n", "\n"), "is not a signed note"),
        (note.replace("\n7\n", "\nseven\n"), "size or root hash is malformed"),
        (note.replace(encoded_root, "AAAA"), "size or root hash is malformed"),
        (note.replace("\n7\n", "\n8\n"), "no checkpoint signature verifies"),
    ]:
        with pytest.raises(_tlog.LogEntryInvalid, match=message):
            _tlog.verify_checkpoint(bad, [key.public_key()])


def test_checkpoints_from_the_lab_log_verify() -> None:
    """Notes made by the lab's sigstack (extension lines, either Ed25519 key hint) verify."""
    key = ed25519.Ed25519PrivateKey.generate()
    root = hashlib.sha256(b"root").digest()
    body = notes.Checkpoint("log - 1", 3, root, ("Timestamp: 1",))
    c2sp = notes.KeySigner("log", key)
    rekor_v1 = notes.KeySigner("log", key, notes.spki_key_id(key.public_key()))
    for signer in (c2sp, rekor_v1):
        checkpoint = _tlog.verify_checkpoint(body.sign([signer]), [key.public_key()])
        assert (checkpoint.origin, checkpoint.size, checkpoint.root) == ("log - 1", 3, root)
        assert checkpoint.signer == "log"
    assert _tlog.sign_checkpoint("log - 1", 3, root, "log", key) == notes.Checkpoint(
        "log - 1", 3, root
    ).sign([c2sp])
