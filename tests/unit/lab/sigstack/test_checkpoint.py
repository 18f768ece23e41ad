"""C2SP signed notes and checkpoints (lab/services/sigstack/checkpoint.py).

Checked against the Go sumdb/note reference vector (Ed25519 is deterministic, so the signed
note must come out byte for byte) and against sigstore-python's own checkpoint parser and
signature check.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from sigstore._internal.rekor.checkpoint import SignedCheckpoint
from sigstore._internal.trust import Keyring, RekorKeyring
from sigstore._utils import KeyID
from sigstore.errors import VerificationError
from sigstore_models.common import v1 as common_v1

from lab.services.sigstack import checkpoint as cp

# golang.org/x/mod/sumdb/note, package documentation and note_test.go
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZ"
    "SNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ROOT = hashlib.sha256(b"root").digest()


def _go_keys() -> tuple[ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey]:
    seed = base64.b64decode(GO_SKEY.split("+", 4)[4])
    public = base64.b64decode(GO_VKEY.split("+", 2)[2])
    assert seed[0] == public[0] == 1
    return (
        ed25519.Ed25519PrivateKey.from_private_bytes(seed[1:]),
        ed25519.Ed25519PublicKey.from_public_bytes(public[1:]),
    )


def _keyring(key: cp.PublicKey, details: common_v1.PublicKeyDetails) -> RekorKeyring:
    public = common_v1.PublicKey(raw_bytes=base64.b64encode(cp.spki_der(key)), key_details=details)
    return RekorKeyring(Keyring([public]))


def test_go_reference_note_is_reproduced_and_verified() -> None:
    private, public = _go_keys()
    assert cp.ed25519_vkey("PeterNeumann", public) == GO_VKEY
    assert cp.c2sp_ed25519_key_id("PeterNeumann", public)[:4].hex() == "c74f20a3"
    signer = cp.KeySigner("PeterNeumann", private)
    assert cp.sign_note(GO_TEXT, [signer]) == GO_NOTE
    note = cp.parse_signed_note(GO_NOTE)
    assert note.text == GO_TEXT
    assert note.verify([cp.KeyVerifier("PeterNeumann", public)]).name == "PeterNeumann"
    with pytest.raises(cp.NoteError):
        cp.parse_signed_note(GO_NOTE.replace("cryptography", "cryptographY")).verify(
            [cp.KeyVerifier("PeterNeumann", public)]
        )


def test_checkpoint_text_round_trips() -> None:
    body = cp.Checkpoint("rekor.example", 42, ROOT, ("Timestamp: 1",))
    text = body.text()
    assert text == f"rekor.example\n42\n{base64.b64encode(ROOT).decode()}\nTimestamp: 1\n"
    assert cp.Checkpoint.from_text(text) == body


def test_ed25519_checkpoint_verifies_in_sigstore() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    name = "rekor.cihub.lab"
    signed = cp.Checkpoint(name, 7, ROOT).sign([cp.KeySigner(name, key)])
    key_id = cp.c2sp_ed25519_key_id(name, key.public_key())
    raw = cp.ed25519_raw(key.public_key())
    assert key_id == hashlib.sha256(name.encode() + b"\n\x01" + raw).digest()
    parsed = SignedCheckpoint.from_text(signed)
    assert parsed.checkpoint.origin == name
    assert parsed.checkpoint.log_size == 7
    assert parsed.checkpoint.log_hash == ROOT.hex()
    keyring = _keyring(key.public_key(), common_v1.PublicKeyDetails.PKIX_ED25519)
    parsed.signed_note.verify(keyring, KeyID(key_id))
    assert cp.open_checkpoint(signed, [cp.KeyVerifier(name, key.public_key())], name).size == 7


def test_ecdsa_checkpoint_verifies_in_sigstore_with_the_rfc6962_log_id() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    log_id = cp.spki_key_id(key.public_key())
    name, origin = "rekor.cihub.lab", "rekor.cihub.lab - 123456789"
    signed = cp.Checkpoint(origin, 3, ROOT).sign([cp.KeySigner(name, key)])
    assert signed.split("\n\n")[1].startswith(f"\u2014 {name} ")
    parsed = SignedCheckpoint.from_text(signed)
    keyring = _keyring(key.public_key(), common_v1.PublicKeyDetails.PKIX_ECDSA_P256_SHA_256)
    parsed.signed_note.verify(keyring, KeyID(log_id))
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(VerificationError):
        parsed.signed_note.verify(
            _keyring(other.public_key(), common_v1.PublicKeyDetails.PKIX_ECDSA_P256_SHA_256),
            KeyID(log_id),
        )
    with pytest.raises(VerificationError):  # no signature line with that hint
        parsed.signed_note.verify(keyring, KeyID(b"\xff" * 32))


def test_a_note_with_two_signers_verifies_for_each() -> None:
    ed = ed25519.Ed25519PrivateKey.generate()
    ecdsa = ec.generate_private_key(ec.SECP256R1())
    signed = cp.sign_note(
        "origin\n1\n" + base64.b64encode(ROOT).decode() + "\n",
        [
            cp.KeySigner("a", ed),
            cp.KeySigner("b", ecdsa),
        ],
    )
    note = cp.parse_signed_note(signed)
    assert len(note.signatures) == 2
    assert note.verify([cp.KeyVerifier("b", ecdsa.public_key())]).name == "b"
    assert note.verify([cp.KeyVerifier("a", ed.public_key())]).name == "a"
    with pytest.raises(cp.NoteError):
        note.verify([cp.KeyVerifier("a", ed25519.Ed25519PrivateKey.generate().public_key())])


@pytest.mark.parametrize(
    "bad",
    [
        "origin\n1\nAAAA\n",  # no signature block
        "origin\n1\n\nx\n\n\u2014 a AAAAAAAA\n",  # two blank lines
        "origin\n1\nroot\n\n\u2014 a !!!!\n",  # signature not base64
        "origin\n1\nroot\n\n\u2014 a AAAA\n",  # signature too short
        "origin\n1\nroot\n\n- a AAAAAAAA\n",  # hyphen, not em dash
        "origin\n1\nroot\n\n\u2014 a AAAAAAAA",  # no final newline
    ],
)
def test_malformed_notes_are_rejected(bad: str) -> None:
    with pytest.raises(cp.NoteError):
        cp.parse_signed_note(bad)


@pytest.mark.parametrize(
    "bad",
    ["origin\n01\nAAAA\n", "origin\nx\nAAAA\n", "origin\n1\n", "origin\n1\nAAAA\n"],
)
def test_malformed_checkpoints_are_rejected(bad: str) -> None:
    with pytest.raises(cp.NoteError):
        cp.Checkpoint.from_text(bad)


def test_key_names_follow_c2sp() -> None:
    for bad in ("", "a b", "a+b", "tab\tname"):
        with pytest.raises(cp.NoteError):
            cp.check_key_name(bad)
    cp.check_key_name("rekor.cihub.lab")
    with pytest.raises(cp.NoteError):
        cp.Checkpoint("two\nlines", 1, ROOT)
