"""Small X.509, PEM and DER helpers shared by the `fulcio` and `tsa` roles and the host.

Only the standard library and the APIs of `cryptography` 38 (Debian bookworm's
`python3-cryptography`) are used, so the same code runs in the lab image and on the host.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

LAB_ONLY = "CIHUB LAB ONLY - NOT FOR PRODUCTION"
"""The organization of every certificate the lab makes, so none is mistaken for a real one."""

OID_FULCIO_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
"""Fulcio's OIDC issuer extension, the raw issuer URL bytes (deprecated form, still checked)."""
OID_FULCIO_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
"""Fulcio's OIDC issuer extension, a DER UTF8String."""
OID_SCT_LIST = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
"""RFC 6962's embedded SignedCertificateTimestampList extension."""

_PEM_CERT = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL
)

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey


class HasPublicBytes(Protocol):
    """Any public key (cryptography's key classes all have this method)."""

    def public_bytes(
        self, encoding: serialization.Encoding, format: serialization.PublicFormat
    ) -> bytes: ...


class DerError(ValueError):
    """Bytes that are not the DER this module expects."""


# -- time --------------------------------------------------------------------------------------


def utc_now() -> datetime:
    """The current time, timezone-aware UTC, whole seconds (X.509 validity has no fraction)."""
    return datetime.now(UTC).replace(microsecond=0)


def rfc3339(moment: datetime) -> str:
    """`2024-01-02T03:04:05Z`: the protobuf-JSON form of a timestamp."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- keys and PEM ------------------------------------------------------------------------------


def spki_der(key: HasPublicBytes) -> bytes:
    """The DER SubjectPublicKeyInfo of a public key."""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def spki_sha256(key: HasPublicBytes) -> bytes:
    """SHA-256 of the DER SubjectPublicKeyInfo: RFC 6962's log id and issuer key hash."""
    return hashlib.sha256(spki_der(key)).digest()


def private_key_pem(key: PrivateKey) -> bytes:
    """An unencrypted PKCS#8 PEM of a private key."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_pem(key: HasPublicBytes) -> bytes:
    """The SubjectPublicKeyInfo PEM of a public key."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key(path: Path) -> PrivateKey:
    """An unencrypted PEM private key from a file (EC, Ed25519 or RSA).

    Raises:
        OSError: the file can't be read.
        ValueError: it isn't such a key.
    """
    key: Any = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey):
        return key
    raise ValueError(f"{path}: unsupported private key type {type(key).__name__}")


def load_public_key(path: Path) -> PublicKey:
    """A PEM public key (SubjectPublicKeyInfo) from a file.

    Raises:
        OSError: the file can't be read.
        ValueError: it isn't such a key.
    """
    key: Any = serialization.load_pem_public_key(path.read_bytes())
    if isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey):
        return key
    raise ValueError(f"{path}: unsupported public key type {type(key).__name__}")


def parse_certificates_pem(data: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle, in order (cryptography 38 has no plural loader).

    Raises:
        ValueError: no certificate, or one that does not parse.
    """
    blocks = _PEM_CERT.findall(data)
    if not blocks:
        raise ValueError("no PEM certificate found")
    return [x509.load_pem_x509_certificate(block) for block in blocks]


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate of a PEM file, in order.

    Raises:
        OSError: the file can't be read.
        ValueError: it holds no certificate, or a bad one.
    """
    try:
        return parse_certificates_pem(path.read_bytes())
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def certificate_pem(cert: x509.Certificate) -> str:
    """One certificate as PEM text."""
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def certificates_pem(certs: Iterable[x509.Certificate]) -> str:
    """Certificates as one PEM text, in order."""
    return "".join(certificate_pem(cert) for cert in certs)


def certificate_der(cert: x509.Certificate) -> bytes:
    """One certificate as DER."""
    return cert.public_bytes(serialization.Encoding.DER)


def signature_hash_for(
    key: PrivateKey | PublicKey,
) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None:
    """The hash a CA signs with for `key`: SHA-384 for P-384, SHA-512 for P-521, else SHA-256.

    Ed25519 signs without a separate hash, so it gets `None`.
    """
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if isinstance(key.curve, ec.SECP384R1):
            return hashes.SHA384()
        if isinstance(key.curve, ec.SECP521R1):
            return hashes.SHA512()
    return hashes.SHA256()


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file readable by its owner only (created 0600, then replaced whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


# -- DER ---------------------------------------------------------------------------------------

TAG_BOOLEAN = 0x01
TAG_INTEGER = 0x02
TAG_OCTET_STRING = 0x04
TAG_NULL = 0x05
TAG_OID = 0x06
TAG_UTF8_STRING = 0x0C
TAG_SEQUENCE = 0x30


def der_tlv(tag: int, content: bytes) -> bytes:
    """One DER element: a single-byte tag, the definite length, the content."""
    size = len(content)
    if size < 0x80:
        return bytes((tag, size)) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + content


def der_octet_string(content: bytes) -> bytes:
    """A DER OCTET STRING."""
    return der_tlv(TAG_OCTET_STRING, content)


def der_utf8_string(text: str) -> bytes:
    """A DER UTF8String."""
    return der_tlv(TAG_UTF8_STRING, text.encode("utf-8"))


@dataclass(frozen=True)
class Der:
    """One parsed DER element: its tag byte and content bytes."""

    tag: int
    content: bytes

    @property
    def constructed(self) -> bool:
        return bool(self.tag & 0x20)

    def children(self) -> list[Der]:
        """The elements inside a constructed element.

        Raises:
            DerError: it is primitive, or its content is not a run of DER elements.
        """
        if not self.constructed:
            raise DerError(f"tag 0x{self.tag:02x} is not constructed")
        return parse_der_sequence_content(self.content)

    def as_int(self) -> int:
        """The value of an INTEGER.

        Raises:
            DerError: not a minimal INTEGER.
        """
        if self.tag != TAG_INTEGER or not self.content:
            raise DerError("expected an INTEGER")
        if len(self.content) > 1 and (
            (self.content[0] == 0 and self.content[1] < 0x80)
            or (self.content[0] == 0xFF and self.content[1] >= 0x80)
        ):
            raise DerError("INTEGER is not minimally encoded")
        return int.from_bytes(self.content, "big", signed=True)

    def as_bool(self) -> bool:
        """The value of a BOOLEAN (DER: 0x00 or 0xFF).

        Raises:
            DerError: not a DER BOOLEAN.
        """
        if self.tag != TAG_BOOLEAN or self.content not in (b"\x00", b"\xff"):
            raise DerError("expected a DER BOOLEAN")
        return self.content == b"\xff"

    def as_oid(self) -> str:
        """The dotted form of an OBJECT IDENTIFIER.

        Raises:
            DerError: not a well-formed OBJECT IDENTIFIER.
        """
        if self.tag != TAG_OID or not self.content or self.content[-1] & 0x80:
            raise DerError("expected an OBJECT IDENTIFIER")
        arcs: list[int] = []
        value = 0
        start = True
        for byte in self.content:
            if start and byte == 0x80:
                raise DerError("OBJECT IDENTIFIER arc is not minimally encoded")
            value = (value << 7) | (byte & 0x7F)
            start = not byte & 0x80
            if start:
                arcs.append(value)
                value = 0
        first = min(arcs[0] // 40, 2)
        return ".".join(str(arc) for arc in (first, arcs[0] - 40 * first, *arcs[1:]))


def read_der(data: bytes, offset: int = 0) -> tuple[Der, int]:
    """The DER element starting at `offset`, and the offset just after it.

    Only single-byte tags and definite, minimal lengths are accepted (that is DER).

    Raises:
        DerError: truncated or not DER.
    """
    if offset + 2 > len(data):
        raise DerError("truncated DER element")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-byte DER tags are not supported")
    first = data[offset + 1]
    offset += 2
    if first < 0x80:
        size = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4:
            raise DerError("indefinite or oversized DER length")
        if offset + count > len(data):
            raise DerError("truncated DER length")
        size = int.from_bytes(data[offset : offset + count], "big")
        if size < 0x80 or data[offset] == 0:
            raise DerError("DER length is not minimally encoded")
        offset += count
    end = offset + size
    if end > len(data):
        raise DerError("DER element runs past the end of the data")
    return Der(tag, data[offset:end]), end


def parse_der(data: bytes) -> Der:
    """Exactly one DER element, with nothing after it.

    Raises:
        DerError: not one whole DER element.
    """
    element, end = read_der(data)
    if end != len(data):
        raise DerError(f"{len(data) - end} trailing bytes after the DER element")
    return element


def parse_der_sequence_content(content: bytes) -> list[Der]:
    """The run of DER elements that makes up a constructed element's content.

    Raises:
        DerError: the content is not a run of whole DER elements.
    """
    items: list[Der] = []
    offset = 0
    while offset < len(content):
        item, offset = read_der(content, offset)
        items.append(item)
    return items


def chain_subjects(certs: Sequence[x509.Certificate]) -> list[str]:
    """The subjects of a chain as RFC 4514 strings, for logs and messages."""
    return [cert.subject.rfc4514_string() for cert in certs]
