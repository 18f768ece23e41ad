"""Embedded precertificate SCTs, judged by sigstore-python's own SCT verifier."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.certificate_transparency import LogEntryType
from sigstore._internal.sct import _pack_digitally_signed, verify_sct
from sigstore._internal.trust import CTKeyring, Keyring
from sigstore.errors import VerificationError
from sigstore_models.common import v1 as common_v1

from lab.services.sigstack import sct as sctmod
from lab.services.sigstack.x509util import OID_SCT_LIST, spki_der, spki_sha256, utc_now


def _keyring(key: ec.EllipticCurvePublicKey) -> CTKeyring:
    public = common_v1.PublicKey(
        raw_bytes=base64.b64encode(spki_der(key)),
        key_details=common_v1.PublicKeyDetails.PKIX_ECDSA_P256_SHA_256,
    )
    return CTKeyring(Keyring([public]))


@pytest.fixture(scope="module")
def ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "test ca")])
    now = utc_now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    signer: sctmod.SctSigner,
    *,
    sct_first: bool = False,
    reorder: bool = False,
) -> x509.Certificate:
    ca_key, ca_cert = ca
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    now = utc_now()
    base = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca_cert.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(minutes=10))
    )
    rest = [
        (x509.SubjectAlternativeName([x509.RFC822Name("a@lab.test")]), True),
        (x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), False),
    ]
    builder = base
    for ext, critical in rest:
        builder = builder.add_extension(ext, critical)
    tbs = builder.sign(ca_key, hashes.SHA256()).tbs_certificate_bytes
    sct = signer.sign_precert(tbs, spki_sha256(ca_cert.public_key()))
    sct_ext = x509.UnrecognizedExtension(OID_SCT_LIST, sctmod.sct_list_extension_value([sct]))
    if sct_first or reorder:
        builder = base.add_extension(sct_ext, False) if sct_first else base
        for ext, critical in reversed(rest) if reorder else rest:
            builder = builder.add_extension(ext, critical)
        if not sct_first:
            builder = builder.add_extension(sct_ext, False)
    else:
        builder = builder.add_extension(sct_ext, False)
    return builder.sign(ca_key, hashes.SHA256())


def test_sigstore_verifies_our_sct(ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate]) -> None:
    ct_key = ec.generate_private_key(ec.SECP256R1())
    signer = sctmod.SctSigner(ct_key)
    leaf = _leaf(ca, signer)
    verify_sct(leaf, [ca[1]], _keyring(ct_key.public_key()))

    (parsed,) = leaf.extensions.get_extension_for_class(
        x509.PrecertificateSignedCertificateTimestamps
    ).value
    assert parsed.entry_type == LogEntryType.PRE_CERTIFICATE
    assert parsed.log_id == signer.log_id == spki_sha256(ct_key.public_key())
    assert isinstance(parsed.signature_hash_algorithm, hashes.SHA256)


def test_wrong_ct_key_fails(ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate]) -> None:
    leaf = _leaf(ca, sctmod.SctSigner(ec.generate_private_key(ec.SECP256R1())))
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(VerificationError, match="SCT verify failed"):
        verify_sct(leaf, [ca[1]], _keyring(other))


def test_other_extensions_must_keep_their_order(
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
) -> None:
    """The SCT covers the TBS minus the SCT extension: where the SCT list sits doesn't
    matter, but the other extensions must be byte-identical and in the same order."""
    ct_key = ec.generate_private_key(ec.SECP256R1())
    keyring = _keyring(ct_key.public_key())
    verify_sct(_leaf(ca, sctmod.SctSigner(ct_key), sct_first=True), [ca[1]], keyring)
    with pytest.raises(VerificationError):
        verify_sct(_leaf(ca, sctmod.SctSigner(ct_key), reorder=True), [ca[1]], keyring)


def test_signed_data_matches_sigstore_packing(
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
) -> None:
    ct_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _leaf(ca, sctmod.SctSigner(ct_key))
    (parsed,) = leaf.extensions.get_extension_for_class(
        x509.PrecertificateSignedCertificateTimestamps
    ).value
    issuer_hash = spki_sha256(ca[1].public_key())
    ours = sctmod.precert_signed_data(
        int(parsed.timestamp.timestamp() * 1000), issuer_hash, leaf.tbs_precertificate_bytes
    )
    assert ours == _pack_digitally_signed(parsed, leaf, issuer_hash)  # type: ignore[arg-type]


def test_serialize_parse_round_trip() -> None:
    signer = sctmod.SctSigner(ec.generate_private_key(ec.SECP256R1()))
    raw = signer.sign_precert(b"\x30\x00", b"\x11" * 32, timestamp_ms=1_700_000_000_123)
    (parsed,) = sctmod.parse_sct_list_extension_value(sctmod.sct_list_extension_value([raw]))
    assert parsed.serialize() == raw
    assert parsed.timestamp_ms == 1_700_000_000_123
    assert (parsed.hash_algorithm, parsed.signature_algorithm) == (4, 3)
    two = sctmod.parse_sct_list_extension_value(sctmod.sct_list_extension_value([raw, raw]))
    assert len(two) == 2


@pytest.mark.parametrize(
    "value",
    [b"", b"\x04\x00", b"\x04\x02\x00\x05", b"\x04\x04\x00\x02\x00\x01", b"\x05\x00"],
)
def test_bad_lists_are_refused(value: bytes) -> None:
    with pytest.raises(sctmod.SctError):
        sctmod.parse_sct_list_extension_value(value)


def test_bad_inputs() -> None:
    with pytest.raises(sctmod.SctError):
        sctmod.sct_list([])
    with pytest.raises(sctmod.SctError, match="32 bytes"):
        sctmod.precert_signed_data(0, b"short", b"")
    with pytest.raises(ValueError, match="P-256"):
        sctmod.SctSigner(ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(sctmod.SctError):
        sctmod.Sct.parse(b"\x00" * 10)
