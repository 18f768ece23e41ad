"""C2SP signed notes and transparency-log checkpoints, without I/O.

A checkpoint (c2sp.org/tlog-checkpoint) is a note whose text is

    <origin>\\n<tree size>\\n<base64 root hash>\\n[extension lines\\n]

followed by one blank line and one or more signature lines (c2sp.org/signed-note)

    \\u2014 <key name> <base64(4-byte key hint || signature)>\\n

The signature covers the note text, final newline included. Key hints and log IDs:

- Ed25519 (C2SP signature type 0x01, what Rekor v2 / rekor-tiles uses): key ID =
  SHA256(name || 0x0A || 0x01 || 32-byte public key); the hint is its first 4 bytes, and
  Rekor v2 reports the whole 32 bytes as `logId.keyId`.
- ECDSA (what Rekor v1 uses; not a C2SP-registered type): key ID = SHA256(DER
  SubjectPublicKeyInfo), the RFC 6962 log ID; the hint is its first 4 bytes. The signature is
  ASN.1 DER ECDSA over SHA-256 of the note text.

sigstore-python (`_internal/rekor/checkpoint.py`) checks that a signature line's hint equals
`logId.keyId[:4]`, verifies that line with the trusted log key, and compares the root.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

SIGNATURE_PREFIX = "\u2014 "
ED25519_TYPE = 0x01
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


class NoteError(ValueError):
    """A note or checkpoint is malformed, or none of its signatures verifies."""


# -- key identities -------------------------------------------------------------------------


def spki_der(key: PublicKey) -> bytes:
    """DER SubjectPublicKeyInfo of a public key."""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def spki_key_id(key: PublicKey) -> bytes:
    """SHA256 of the DER SubjectPublicKeyInfo: the RFC 6962 / Rekor v1 log ID."""
    return hashlib.sha256(spki_der(key)).digest()


def ed25519_raw(key: ed25519.Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of an Ed25519 public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def c2sp_ed25519_key_id(name: str, key: ed25519.Ed25519PublicKey) -> bytes:
    """SHA256(name || 0x0A || 0x01 || public key): the C2SP key ID, Rekor v2's log ID."""
    check_key_name(name)
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519_TYPE]) + ed25519_raw(key)).digest()


def note_key_id(name: str, key: PublicKey) -> bytes:
    """The full key ID a signer of this kind and name uses (its first 4 bytes are the hint)."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        return c2sp_ed25519_key_id(name, key)
    return spki_key_id(key)


def ed25519_vkey(name: str, key: ed25519.Ed25519PublicKey) -> str:
    """The C2SP verifier key string `<name>+<hex hint>+<base64(0x01 || key)>`."""
    hint = c2sp_ed25519_key_id(name, key)[:4].hex()
    return f"{name}+{hint}+{base64.b64encode(bytes([ED25519_TYPE]) + ed25519_raw(key)).decode()}"


def check_key_name(name: str) -> None:
    """C2SP key names are non-empty and have no Unicode spaces and no plus sign."""
    if not name or "+" in name or any(ch.isspace() for ch in name):
        raise NoteError(f"invalid key name {name!r}: must be non-empty, no spaces, no '+'")


# -- signers and verifiers ------------------------------------------------------------------


class NoteSigner(Protocol):
    """Signs note texts under a key name."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


@dataclass(frozen=True)
class KeySigner:
    """A note signer over an ECDSA or Ed25519 private key.

    Example:
        signer = KeySigner("rekor.example", ed25519.Ed25519PrivateKey.generate())
        text = sign_note(checkpoint.text(), [signer])
    """

    name: str
    private_key: PrivateKey
    key_id: bytes = b""  # default: `note_key_id(name, public key)`

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if not self.key_id:
            key_id = note_key_id(self.name, self.private_key.public_key())
            object.__setattr__(self, "key_id", key_id)

    def sign(self, message: bytes) -> bytes:
        """Ed25519 over the message, or DER ECDSA with the curve's SHA-2 hash."""
        key = self.private_key
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(message)
        return key.sign(message, ec.ECDSA(ecdsa_hash(key.curve)))


@dataclass(frozen=True)
class KeyVerifier:
    """Verifies note signatures made under `name` by the private half of `public_key`."""

    name: str
    public_key: PublicKey
    key_id: bytes = b""  # default: `note_key_id(name, public key)`

    def __post_init__(self) -> None:
        if not self.key_id:
            object.__setattr__(self, "key_id", note_key_id(self.name, self.public_key))

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True if `signature` is valid over `message`."""
        key = self.public_key
        try:
            if isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, message)
            else:
                key.verify(signature, message, ec.ECDSA(ecdsa_hash(key.curve)))
        except InvalidSignature:
            return False
        return True


def ecdsa_hash(curve: ec.EllipticCurve) -> hashes.HashAlgorithm:
    """The SHA-2 hash that goes with an ECDSA curve (P-256: SHA-256, and so on)."""
    if isinstance(curve, ec.SECP384R1):
        return hashes.SHA384()
    if isinstance(curve, ec.SECP521R1):
        return hashes.SHA512()
    return hashes.SHA256()


# -- signed notes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, 4-byte hint and signature bytes."""

    name: str
    hint: bytes
    signature: bytes

    def line(self) -> str:
        """The line as it appears in a note, with its newline."""
        blob = base64.b64encode(self.hint + self.signature).decode()
        return f"{SIGNATURE_PREFIX}{self.name} {blob}\n"


@dataclass(frozen=True)
class SignedNote:
    """A note text (ending with a newline) and its signatures."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def serialize(self) -> str:
        """Text, blank line, signature lines."""
        return self.text + "\n" + "".join(sig.line() for sig in self.signatures)

    def verify(self, verifiers: Iterable[KeyVerifier]) -> KeyVerifier:
        """The first verifier with a matching name and hint whose signature verifies.

        Raises:
            NoteError: if no known key signed the note.
        """
        message = self.text.encode()
        for verifier in verifiers:
            hint = verifier.key_id[:4]
            for sig in self.signatures:
                if sig.name == verifier.name and sig.hint == hint:
                    if verifier.verify(message, sig.signature):
                        return verifier
                    raise NoteError(f"invalid signature by {verifier.name} ({hint.hex()})")
        raise NoteError("no signature from a known key")


def check_note_text(text: str) -> None:
    """C2SP note text: non-empty, ends with a newline, no blank line, no control characters."""
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")
    if "\n\n" in text or text.startswith("\n"):
        raise NoteError("note text must not contain a blank line")
    if any(ch < " " and ch != "\n" for ch in text):
        raise NoteError("note text must not contain control characters")


def sign_note(text: str, signers: Sequence[NoteSigner]) -> str:
    """Sign a note text with every signer; returns the serialized signed note."""
    check_note_text(text)
    if not signers:
        raise NoteError("a signed note needs at least one signer")
    message = text.encode()
    sigs = tuple(NoteSignature(s.name, s.key_id[:4], s.sign(message)) for s in signers)
    return SignedNote(text, sigs).serialize()


def parse_signed_note(serialized: str) -> SignedNote:
    """Split a serialized note into its text and signature lines.

    Raises:
        NoteError: on a missing blank line, a bad signature line or no signature.
    """
    if "\n\n" not in serialized:
        raise NoteError("note has no blank line before its signatures")
    text, _, block = serialized.partition("\n\n")
    text += "\n"
    check_note_text(text)
    if not block.endswith("\n"):
        raise NoteError("signature block must end with a newline")
    signatures = []
    for line in block[:-1].split("\n"):
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError(f"malformed signature line {line!r}")
        name, sep, blob = line[len(SIGNATURE_PREFIX) :].partition(" ")
        if not sep or " " in blob:
            raise NoteError(f"malformed signature line {line!r}")
        try:
            raw = base64.b64decode(blob, validate=True)
        except binascii.Error as exc:
            raise NoteError(f"signature of {name} is not base64") from exc
        if len(raw) < 5:
            raise NoteError(f"signature of {name} is too short")
        signatures.append(NoteSignature(name, raw[:4], raw[4:]))
    if not signatures:
        raise NoteError("note has no signature")
    return SignedNote(text, tuple(signatures))


# -- checkpoints ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """The body of a log checkpoint.

    Example:
        text = Checkpoint("rekor.example", 3, root).text()
    """

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise NoteError("checkpoint origin must be one non-empty line")
        if self.size < 0:
            raise NoteError("checkpoint size must not be negative")
        if any(not ext or "\n" in ext for ext in self.extensions):
            raise NoteError("checkpoint extension lines must be non-empty single lines")

    def text(self) -> str:
        """The note text, newline-terminated."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode()]
        return "\n".join([*lines, *self.extensions]) + "\n"

    def sign(self, signers: Sequence[NoteSigner]) -> str:
        """The serialized signed checkpoint."""
        return sign_note(self.text(), signers)

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        """Parse a checkpoint body (the note text).

        Raises:
            NoteError: on a missing line, a non-decimal size or a bad root hash.
        """
        check_note_text(text)
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError("checkpoint needs origin, size and root hash lines")
        origin, size_text, root_text, *extensions = lines
        if not size_text.isdigit() or (size_text.startswith("0") and size_text != "0"):
            raise NoteError(f"checkpoint size {size_text!r} is not a decimal number")
        try:
            root = base64.b64decode(root_text, validate=True)
        except binascii.Error as exc:
            raise NoteError("checkpoint root hash is not base64") from exc
        if len(root) != 32:
            raise NoteError("checkpoint root hash is not 32 bytes")
        return cls(origin, int(size_text), root, tuple(extensions))


def open_checkpoint(
    serialized: str, verifiers: Iterable[KeyVerifier], origin: str | None = None
) -> Checkpoint:
    """Verify a signed checkpoint and return its body.

    Raises:
        NoteError: if it is malformed, not signed by a given key, or for another origin.
    """
    note = parse_signed_note(serialized)
    note.verify(verifiers)
    checkpoint = Checkpoint.from_text(note.text)
    if origin is not None and checkpoint.origin != origin:
        raise NoteError(f"checkpoint origin {checkpoint.origin!r} is not {origin!r}")
    return checkpoint
