"""RFC 6962 signed certificate timestamps for precertificates, made by the lab's "CT key".

No CT log runs in the lab: the `fulcio` role signs each leaf's SCT itself with a P-256 key that
the trusted root lists under `ctlogs`, which is what a verifier checks (sigstore-python's
`_internal/sct.py`). The wire formats (RFC 6962 sections 3.2 and 3.3):

    digitally-signed data = sct_version(1) || signature_type(1)=certificate_timestamp(0)
        || timestamp(8, ms) || entry_type(2)=precert_entry(1) || issuer_key_hash(32)
        || TBSCertificate<1..2^24-1> || CtExtensions<0..2^16-1>
    SignedCertificateTimestamp = sct_version(1) || log_id(32) || timestamp(8)
        || CtExtensions<0..2^16-1> || hash_alg(1) || sig_alg(1) || signature<0..2^16-1>
    SignedCertificateTimestampList = SerializedSCT<1..2^16-1> list, itself <1..2^16-1>

The X.509 extension's value is a DER OCTET STRING holding the TLS-encoded list.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from .x509util import TAG_OCTET_STRING, DerError, der_octet_string, parse_der, spki_sha256

SCT_VERSION_V1 = 0
SIGNATURE_TYPE_CERTIFICATE_TIMESTAMP = 0
ENTRY_TYPE_X509 = 0
ENTRY_TYPE_PRECERT = 1
HASH_SHA256 = 4
SIGNATURE_ECDSA = 3


class SctError(ValueError):
    """Bytes that are not a well-formed SCT or SCT list."""


def _opaque(data: bytes, length_bytes: int) -> bytes:
    limit = 1 << (8 * length_bytes)
    if len(data) >= limit:
        raise SctError(f"{len(data)} bytes do not fit a {length_bytes}-byte length prefix")
    return len(data).to_bytes(length_bytes, "big") + data


def precert_signed_data(
    timestamp_ms: int, issuer_key_hash: bytes, tbs_certificate: bytes, extensions: bytes = b""
) -> bytes:
    """The bytes an SCT's signature covers for a precertificate entry.

    Args:
        timestamp_ms: the SCT time, milliseconds since the UNIX epoch.
        issuer_key_hash: SHA-256 of the issuing CA's SubjectPublicKeyInfo.
        tbs_certificate: the DER TBSCertificate without the SCT list extension.
        extensions: the SCT's CtExtensions (empty in practice).

    Raises:
        SctError: a wrong hash length or an oversized field.
    """
    if len(issuer_key_hash) != 32:
        raise SctError("issuer key hash must be 32 bytes")
    return (
        struct.pack(
            "!BBQH",
            SCT_VERSION_V1,
            SIGNATURE_TYPE_CERTIFICATE_TIMESTAMP,
            timestamp_ms,
            ENTRY_TYPE_PRECERT,
        )
        + issuer_key_hash
        + _opaque(tbs_certificate, 3)
        + _opaque(extensions, 2)
    )


@dataclass(frozen=True)
class Sct:
    """One v1 SCT's fields."""

    log_id: bytes
    timestamp_ms: int
    extensions: bytes
    hash_algorithm: int
    signature_algorithm: int
    signature: bytes

    def serialize(self) -> bytes:
        """The TLS encoding of the SCT."""
        if len(self.log_id) != 32:
            raise SctError("log id must be 32 bytes")
        return (
            bytes((SCT_VERSION_V1,))
            + self.log_id
            + struct.pack("!Q", self.timestamp_ms)
            + _opaque(self.extensions, 2)
            + bytes((self.hash_algorithm, self.signature_algorithm))
            + _opaque(self.signature, 2)
        )

    @classmethod
    def parse(cls, data: bytes) -> Sct:
        """Parse one TLS-encoded v1 SCT.

        Raises:
            SctError: not a whole v1 SCT.
        """
        try:
            if data[0] != SCT_VERSION_V1:
                raise SctError(f"unsupported SCT version {data[0]}")
            log_id = data[1:33]
            (timestamp_ms, ext_len) = struct.unpack("!QH", data[33:43])
            offset = 43 + ext_len
            extensions = data[43:offset]
            hash_alg, sig_alg, sig_len = struct.unpack("!BBH", data[offset : offset + 4])
            signature = data[offset + 4 : offset + 4 + sig_len]
        except (IndexError, struct.error) as exc:
            raise SctError("truncated SCT") from exc
        if len(extensions) != ext_len or len(signature) != sig_len:
            raise SctError("truncated SCT")
        if offset + 4 + sig_len != len(data):
            raise SctError("trailing bytes after the SCT")
        return cls(log_id, timestamp_ms, extensions, hash_alg, sig_alg, signature)


class SctSigner:
    """Signs precertificate SCTs with one ECDSA P-256 key, as a CT log would.

    Example:
        signer = SctSigner(ct_key)
        sct = signer.sign_precert(precert.tbs_certificate_bytes, issuer_key_hash)
        value = sct_list_extension_value([sct])
    """

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"the CT key must be ECDSA P-256, not {key.curve.name}")
        self._key = key
        self.log_id = spki_sha256(key.public_key())
        """RFC 6962 log id: SHA-256 of the key's DER SubjectPublicKeyInfo."""

    def sign_precert(
        self,
        tbs_certificate: bytes,
        issuer_key_hash: bytes,
        *,
        timestamp_ms: int | None = None,
    ) -> bytes:
        """A serialized SCT over a precertificate TBS.

        Args:
            tbs_certificate: the DER TBSCertificate the final certificate will have, minus
                its SCT list extension.
            issuer_key_hash: SHA-256 of the issuing CA's SubjectPublicKeyInfo.
            timestamp_ms: the SCT time (default: now).

        Raises:
            SctError: a wrong hash length or an oversized TBS.
        """
        when = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        data = precert_signed_data(when, issuer_key_hash, tbs_certificate)
        signature = self._key.sign(data, ec.ECDSA(hashes.SHA256()))
        return Sct(self.log_id, when, b"", HASH_SHA256, SIGNATURE_ECDSA, signature).serialize()


def sct_list(scts: Sequence[bytes]) -> bytes:
    """The TLS-encoded SignedCertificateTimestampList of serialized SCTs.

    Raises:
        SctError: an empty list or an oversized SCT.
    """
    if not scts:
        raise SctError("an SCT list holds at least one SCT")
    return _opaque(b"".join(_opaque(sct, 2) for sct in scts), 2)


def sct_list_extension_value(scts: Sequence[bytes]) -> bytes:
    """The extnValue contents of the SCT list extension: DER OCTET STRING of the TLS list."""
    return der_octet_string(sct_list(scts))


def parse_sct_list_extension_value(value: bytes) -> list[Sct]:
    """The SCTs of an SCT list extension value (the inverse of `sct_list_extension_value`).

    Raises:
        SctError: not a DER OCTET STRING holding a well-formed list.
    """
    try:
        outer = parse_der(value)
    except DerError as exc:
        raise SctError(f"SCT list extension is not DER: {exc}") from exc
    if outer.tag != TAG_OCTET_STRING:
        raise SctError("SCT list extension is not an OCTET STRING")
    data = outer.content
    if len(data) < 2 or int.from_bytes(data[:2], "big") != len(data) - 2:
        raise SctError("bad SCT list length")
    scts: list[Sct] = []
    offset = 2
    while offset < len(data):
        if offset + 2 > len(data):
            raise SctError("truncated SCT list")
        size = int.from_bytes(data[offset : offset + 2], "big")
        end = offset + 2 + size
        if end > len(data):
            raise SctError("truncated SCT list")
        scts.append(Sct.parse(data[offset + 2 : end]))
        offset = end
    return scts
