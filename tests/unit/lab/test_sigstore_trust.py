"""The lab's Sigstore trust material, loaded and used by unmodified sigstore-python."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sigstore import dsse
from sigstore._internal.rekor.client import RekorClient
from sigstore._internal.rekor.client_v2 import RekorV2Client
from sigstore._internal.trust import KeyringPurpose
from sigstore.errors import Error, VerificationError
from sigstore.models import ClientTrustConfig, InvalidBundle
from sigstore.oidc import IdentityError, IdentityToken
from sigstore.sign import SigningContext
from sigstore.verify.policy import Identity
from sigstore.verify.verifier import Verifier

from lab.services.sigstack import fulcio, jwt, tsa
from lab.services.sigstack.x509util import LAB_ONLY, spki_der, spki_sha256
from lab.sigstore_trust import (
    BACKDATE,
    DEFAULT_REKOR_ORIGIN,
    LabTrustMaterial,
    TrustMaterialError,
    c2sp_ed25519_key_id,
    write_trust_config,
)
from tests.support.sigstack import SigStack

URLS = {
    "rekor_url": "http://127.0.0.1:3000/",
    "fulcio_url": "http://127.0.0.1:5555",
    "tsa_url": "http://127.0.0.1:3004",
}


pytest_plugins = ("tests.support.sigstack_plugin",)


@pytest.fixture(scope="module")
def material(sigstack: SigStack) -> LabTrustMaterial:
    """Lab material with default identity and issuer: the session's shared stack's, whose
    Fulcio, Rekor and TSA the end-to-end tests sign through."""
    return sigstack.material


def _trust(material: LabTrustMaterial, urls: dict[str, str] = URLS, **kw: Any) -> ClientTrustConfig:
    return ClientTrustConfig.from_json(json.dumps(material.client_trust_config(urls, **kw)))


def test_material_is_lab_only_and_chains(material: LabTrustMaterial) -> None:
    certs = [
        material.fulcio_root,
        material.fulcio_intermediate,
        material.tsa_root,
        material.tsa_cert,
    ]
    for cert in certs:
        (org,) = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        assert org.value == LAB_ONLY
        assert cert.not_valid_before_utc == material.valid_from - BACKDATE
    material.fulcio_intermediate.verify_directly_issued_by(material.fulcio_root)
    material.tsa_cert.verify_directly_issued_by(material.tsa_root)
    eku = material.tsa_cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    intermediate_bc = material.fulcio_intermediate.extensions.get_extension_for_class(
        x509.BasicConstraints
    )
    assert intermediate_bc.critical and intermediate_bc.value.ca
    assert isinstance(material.ct_key.curve, ec.SECP256R1)
    assert isinstance(material.oidc_key.curve, ec.SECP256R1)
    assert isinstance(material.rekor_key.curve, ec.SECP256R1)
    assert isinstance(material.rekor_key_v2, ed25519.Ed25519PrivateKey)


def test_trust_config_loads_in_sigstore(material: LabTrustMaterial) -> None:
    raw = material.client_trust_config(URLS)
    trust = ClientTrustConfig.from_json(json.dumps(raw))
    signing = trust.signing_config
    assert signing.get_fulcio().url == URLS["fulcio_url"]
    assert signing.get_oidc_url() == material.issuer
    (tsa_client,) = signing.get_tsas()
    assert tsa_client.url == "http://127.0.0.1:3004/api/v1/timestamp"
    (default_log,) = signing.get_tlogs()
    assert isinstance(default_log, RekorV2Client)
    assert default_log.url == "http://127.0.0.1:3000/api/v2"
    trust.force_tlog_version = 1
    (v1_log,) = trust.signing_config.get_tlogs()
    assert isinstance(v1_log, RekorClient)

    root = trust.trusted_root
    assert root.get_fulcio_certs() == [material.fulcio_intermediate, material.fulcio_root]
    (authority,) = root.get_timestamp_authorities()
    assert authority.certificates(allow_expired=False) == [material.tsa_cert, material.tsa_root]
    ct_keyring = root.ct_keyring(KeyringPurpose.SIGN)
    assert set(ct_keyring._keyring) == {material.ct_log_id}
    rekor_keyring = root.rekor_keyring(KeyringPurpose.SIGN)
    assert set(rekor_keyring._keyring) == {
        spki_sha256(material.rekor_key.public_key()),
        spki_sha256(material.rekor_key_v2.public_key()),
    }


def test_log_ids(material: LabTrustMaterial) -> None:
    tlogs = material.client_trust_config(URLS)["trustedRoot"]["tlogs"]
    ids = {t["publicKey"]["keyDetails"]: t["logId"]["keyId"] for t in tlogs}
    v1 = spki_sha256(material.rekor_key.public_key())
    assert ids["PKIX_ECDSA_P256_SHA_256"] == base64.b64encode(v1).decode()
    v2 = c2sp_ed25519_key_id(DEFAULT_REKOR_ORIGIN, material.rekor_key_v2.public_key())
    assert v2 == material.rekor_v2_log_id
    assert ids["PKIX_ED25519"] == base64.b64encode(v2).decode()
    ctlog = material.client_trust_config(URLS)["trustedRoot"]["ctlogs"][0]
    assert ctlog["logId"]["keyId"] == base64.b64encode(material.ct_log_id).decode()


def test_log_ids_match_the_rekor_role(material: LabTrustMaterial, tmp_path: Path) -> None:
    rekor = pytest.importorskip("lab.services.sigstack.rekor")
    dirs = material.write_service_files(tmp_path)
    conf = json.loads((dirs["rekor"] / "rekor.json").read_text())
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = rekor.main(
            [
                "--key",
                str(dirs["rekor"] / conf["key"]),
                "--key-v2",
                str(dirs["rekor"] / conf["key_v2"]),
                "--origin",
                conf["origin"],
                "--origin-v2",
                conf["origin_v2"],
                "--print-log-ids",
            ]
        )
    assert status == 0
    theirs = json.loads(out.getvalue())
    tlogs = material.client_trust_config(URLS)["trustedRoot"]["tlogs"]
    assert [t["logId"]["keyId"] for t in tlogs] == [theirs["v1"]["logId"], theirs["v2"]["logId"]]
    assert [t["publicKey"]["rawBytes"] for t in tlogs] == [
        theirs["v1"]["publicKey"]["rawBytes"],
        theirs["v2"]["publicKey"]["rawBytes"],
    ]


@pytest.mark.parametrize(("versions", "count"), [((1,), 1), ((2,), 1), ((2, 1), 2)])
def test_rekor_versions(material: LabTrustMaterial, versions: tuple[int, ...], count: int) -> None:
    raw = material.client_trust_config(URLS, rekor_versions=versions)
    assert len(raw["trustedRoot"]["tlogs"]) == count
    majors = [s["majorApiVersion"] for s in raw["signingConfig"]["rekorTlogUrls"]]
    assert majors == sorted(versions, reverse=True)
    assert _trust(material, rekor_versions=versions).signing_config.get_tlogs()


def test_negative_variants(material: LabTrustMaterial) -> None:
    no_tsa = _trust(material, include_tsa=False)
    assert no_tsa.trusted_root.get_timestamp_authorities() == []
    assert no_tsa.signing_config.get_tsas() == []
    wrong_ct = _trust(material, wrong_ct_key=True).trusted_root.ct_keyring(KeyringPurpose.SIGN)
    assert material.ct_log_id not in wrong_ct._keyring
    wrong_log = _trust(material, wrong_log_key=True).trusted_root
    keyring = wrong_log.rekor_keyring(KeyringPurpose.SIGN)._keyring
    assert spki_sha256(material.rekor_key.public_key()) not in keyring
    assert len(keyring) == 2
    wrong_root = _trust(material, wrong_fulcio_root=True).trusted_root.get_fulcio_certs()
    assert material.fulcio_root not in wrong_root
    no_tsa_url = {k: v for k, v in URLS.items() if k != "tsa_url"}
    assert _trust(material, no_tsa_url).signing_config.get_tsas() == []


@pytest.mark.parametrize(
    ("urls", "options", "message"),
    [
        ({"fulcio_url": "http://f"}, {}, "rekor_url"),
        ({"rekor_url": "http://r"}, {}, "fulcio_url"),
        (URLS, {"rekor_versions": (3,)}, "rekor_versions"),
        (URLS, {"rekor_versions": ()}, "rekor_versions"),
    ],
)
def test_bad_arguments(
    material: LabTrustMaterial, urls: dict[str, str], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(TrustMaterialError, match=message):
        material.client_trust_config(urls, **options)


def test_valid_for_windows_start_in_the_past(material: LabTrustMaterial) -> None:
    raw = material.client_trust_config(URLS)
    start = raw["signingConfig"]["caUrls"][0]["validFor"]["start"]
    assert datetime.fromisoformat(start.replace("Z", "+00:00")) < datetime.now(UTC)
    future = LabTrustMaterial.generate(valid_from=datetime.now(UTC) + timedelta(days=1))
    with pytest.raises(Error, match="No valid"):
        _ = _trust(future).signing_config


def test_save_and_load(material: LabTrustMaterial, tmp_path: Path) -> None:
    folder = material.save(tmp_path / "material")
    for name in ("oidc-issuer-key.pem", "fulcio-root-key.pem", "rekor-key-v2.pem"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    loaded = LabTrustMaterial.load(folder)
    assert loaded.client_trust_config(URLS) == material.client_trust_config(URLS)
    token = loaded.mint_identity_token()
    assert jwt.verify(
        token, material.oidc_key.public_key(), issuer=material.issuer, audience="sigstore"
    )
    (folder / "ct-key.pem").write_bytes(b"garbage")
    with pytest.raises(TrustMaterialError, match="unreadable"):
        LabTrustMaterial.load(folder)
    with pytest.raises(TrustMaterialError):
        LabTrustMaterial.load(tmp_path / "missing")


def test_service_files(material: LabTrustMaterial, tmp_path: Path) -> None:
    dirs = material.write_service_files(tmp_path)
    assert set(dirs) == {"fulcio", "tsa", "rekor"}
    for role, key in (
        ("fulcio", "ca-key.pem"),
        ("fulcio", "ct-key.pem"),
        ("tsa", "tsa-key.pem"),
        ("rekor", "rekor-key.pem"),
        ("rekor", "rekor-key-v2.pem"),
    ):
        assert stat.S_IMODE((dirs[role] / key).stat().st_mode) == 0o600
    ca = fulcio.FulcioCA.from_config(fulcio.FulcioConfig.from_file(dirs["fulcio"] / "fulcio.json"))
    assert ca.chain == [material.fulcio_intermediate, material.fulcio_root]
    assert ca.sct_signer.log_id == material.ct_log_id
    assert set(ca.issuer_keys) == {material.issuer}
    authority = tsa.TimestampAuthority(tsa.TsaConfig.from_file(dirs["tsa"] / "tsa.json"))
    assert authority.chain == [material.tsa_cert, material.tsa_root]
    rekor = json.loads((dirs["rekor"] / "rekor.json").read_text())
    assert rekor["origin"] == material.rekor_v1_name == "rekor.cihub.lab"
    assert rekor["origin_v2"] == material.rekor_origin == "rekor-v2.cihub.lab"
    assert rekor["log_id_v2"] == material.rekor_v2_log_id.hex()
    assert (dirs["rekor"] / "rekor-key.pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY")


def test_identity_tokens(material: LabTrustMaterial) -> None:
    token = IdentityToken(material.mint_identity_token())
    assert (token.identity, token.issuer) == (material.identity, material.issuer)
    claims = jwt.verify(
        str(token), material.oidc_key.public_key(), issuer=material.issuer, audience="sigstore"
    )
    assert claims["email"] == material.identity and claims["email_verified"] is True
    assert claims["exp"] - claims["iat"] == 300
    uri = "https://ci.cihub.test/release"
    _, uri_claims = jwt.decode_unverified(material.mint_identity_token(uri, lifetime=60))
    assert uri_claims["sub"] == uri and "email" not in uri_claims
    with pytest.raises(IdentityError):
        IdentityToken(material.mint_identity_token(issued_at=time.time() - 3600))
    with pytest.raises(TrustMaterialError):
        material.mint_identity_token(lifetime=0)


def test_write_trust_config(material: LabTrustMaterial, tmp_path: Path) -> None:
    path = write_trust_config(tmp_path / "trust_config.json", material, URLS, include_tsa=False)
    trust = ClientTrustConfig.from_json(path.read_text())
    assert trust.trusted_root.get_timestamp_authorities() == []
    assert material.write_trust_config(tmp_path / "again.json", URLS).exists()


# -- end to end: sigstore-python signs and verifies against the in-process lab stack ---------


@pytest.fixture(scope="module")
def stack(sigstack: SigStack) -> dict[str, str]:
    """The shared stack's URLs (`tests.support.sigstack`)."""
    return dict(sigstack.urls)


def _sign(material: LabTrustMaterial, trust: ClientTrustConfig, version: int) -> Any:
    trust.force_tlog_version = version
    context = SigningContext.from_trust_config(trust)
    statement = (
        dsse.StatementBuilder()
        .subjects([dsse.Subject(name="artifact", digest={"sha256": "ab" * 32})])  # type: ignore[arg-type]
        .predicate_type("https://cihub.test/predicate")
        .predicate({"lab": True})
        .build()
    )
    with context.signer(IdentityToken(material.mint_identity_token())) as signer:
        return signer.sign_artifact(b"lab artifact"), signer.sign_dsse(statement)


@pytest.mark.parametrize("version", [1, 2])
def test_sign_and_verify_end_to_end(
    material: LabTrustMaterial, stack: dict[str, str], version: int
) -> None:
    trust = _trust(material, stack)
    bundle, dsse_bundle = _sign(material, trust, version)
    policy = Identity(identity=material.identity, issuer=material.issuer)
    verifier = Verifier(trusted_root=trust.trusted_root)
    verifier.verify_artifact(b"lab artifact", bundle, policy)
    verifier.verify_dsse(dsse_bundle, policy)
    assert bundle.log_entry._inner.kind_version.version == ("0.0.1" if version == 1 else "0.0.2")
    assert bundle.verification_material.timestamp_verification_data is not None

    failures = {
        "wrong CT key": (_trust(material, stack, wrong_ct_key=True), policy, b"lab artifact"),
        "wrong log key": (_trust(material, stack, wrong_log_key=True), policy, b"lab artifact"),
        "wrong identity": (
            trust,
            Identity(identity="x@cihub.test", issuer=material.issuer),
            b"lab artifact",
        ),
        "tampered artifact": (trust, policy, b"lab artifacT"),
    }
    for name, (bad_trust, bad_policy, artifact) in failures.items():
        with pytest.raises(VerificationError):
            Verifier(trusted_root=bad_trust.trusted_root).verify_artifact(
                artifact, bundle, bad_policy
            )
            pytest.fail(f"{name} verified")


def test_rekor_v2_needs_a_tsa(material: LabTrustMaterial, stack: dict[str, str]) -> None:
    """No TSA for v2: the client won't build the bundle, nor verify a stamped one."""
    policy = Identity(identity=material.identity, issuer=material.issuer)
    no_tsa = _trust(material, stack, include_tsa=False)
    with pytest.raises(InvalidBundle, match="inclusion promise or signed timestamp"):
        _sign(material, no_tsa, 2)
    stamped, _ = _sign(material, _trust(material, stack), 2)
    with pytest.raises(VerificationError, match="no Timestamp Authorities"):
        Verifier(trusted_root=no_tsa.trusted_root).verify_artifact(b"lab artifact", stamped, policy)
    v1_bundle, _ = _sign(material, _trust(material, stack, include_tsa=False), 1)
    Verifier(trusted_root=no_tsa.trusted_root).verify_artifact(b"lab artifact", v1_bundle, policy)


def test_spki_helpers_agree(material: LabTrustMaterial) -> None:
    key = material.rekor_key.public_key()
    assert spki_sha256(key) == hashlib.sha256(spki_der(key)).digest()


def test_the_trusted_root_is_stable_and_names_each_log_by_its_origin(
    material: LabTrustMaterial,
) -> None:
    lab_a = material.client_trust_config(URLS)
    lab_b = material.client_trust_config(
        {"rekor_url": "http://127.0.0.1:41000", "fulcio_url": "http://127.0.0.1:41001"}
    )
    assert lab_a["trustedRoot"] == lab_b["trustedRoot"] == material.trusted_root()
    assert lab_a["signingConfig"] != lab_b["signingConfig"]
    tlogs = material.trusted_root()["tlogs"]
    assert [t["baseUrl"] for t in tlogs] == [
        "https://rekor.cihub.lab",
        "https://rekor-v2.cihub.lab",
    ]
    # Rekor v2's log id is the C2SP key id under the base URL's host name
    v2 = tlogs[1]
    host = v2["baseUrl"].split("://", 1)[1].split("/", 1)[0]
    assert base64.b64decode(v2["logId"]["keyId"]) == c2sp_ed25519_key_id(
        host, material.rekor_key_v2.public_key()
    )
    urls = [s["url"] for s in lab_a["signingConfig"]["rekorTlogUrls"]]
    assert urls == ["http://127.0.0.1:3000", "http://127.0.0.1:3000"]
    own = material.client_trust_config()["signingConfig"]
    assert [s["url"] for s in own["rekorTlogUrls"]] == [
        "https://rekor-v2.cihub.lab",
        "https://rekor.cihub.lab",
    ]
    ClientTrustConfig.from_json(json.dumps(material.client_trust_config()))


def test_an_origin_that_is_no_host_name_is_refused() -> None:
    with pytest.raises(TrustMaterialError, match="host name"):
        LabTrustMaterial.generate(rekor_origin="rekor v2")


# -- the durable trust domain ---------------------------------------------------------------


def test_trust_domain_is_made_once_and_reused(tmp_path: Path) -> None:
    from lab.trust_domain import TrustDomain, TrustDomainError, local_trust_config

    folder = tmp_path / "td"
    with pytest.raises(TrustDomainError, match="no trust domain"):
        TrustDomain.open(folder, create=False)
    first = TrustDomain.open(folder)
    again = TrustDomain.open(folder, create=False)
    assert again.material.rekor_log_id == first.material.rekor_log_id
    assert again.material.rekor_v2_log_id == first.material.rekor_v2_log_id
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert first.trust_config.read_bytes() == again.trust_config.read_bytes()
    assert local_trust_config({"CIHUB_TRUST_DOMAIN": str(folder)}) == first.trust_config
    trust = ClientTrustConfig.from_json(first.trust_config.read_text())
    assert trust.trusted_root is not None
    lab = first.write_lab_trust_config(tmp_path / "lab.json", URLS)
    lab_doc, domain_doc = json.loads(lab.read_text()), json.loads(first.trust_config.read_text())
    assert lab_doc["trustedRoot"] == domain_doc["trustedRoot"], "the root never has lab ports"
    assert lab_doc["signingConfig"]["caUrls"][0]["url"] == "http://127.0.0.1:5555"
    for role, folder_ in first.service_dirs().items():
        assert (folder_ / f"{role}.json").is_file()
    assert first.logs_dir.is_dir()
    info = first.describe()
    assert [t["api"] for t in info["tlogs"]] == ["v1", "v2"]
    assert info["tlogs"][1]["checkpoint_origin"] == "rekor-v2.cihub.lab"
    assert info["tlogs"][0]["log_id"] == first.material.rekor_log_id.hex()
    with pytest.raises(TrustDomainError, match="issuer"):
        TrustDomain.open(folder, issuer="https://other.issuer")
    assert TrustDomain.delete(folder) == folder.absolute()
    assert not folder.exists()
    with pytest.raises(TrustDomainError, match="no trust domain to delete"):
        TrustDomain.delete(folder)


def test_a_trust_domain_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    from lab.trust_domain import TrustDomain, TrustDomainError

    (tmp_path / "file").write_text("x")
    with pytest.raises(TrustDomainError, match="not a folder"):
        TrustDomain.open(tmp_path / "file")


def test_concurrent_opens_make_one_trust_domain(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from lab.trust_domain import TrustDomain

    with ThreadPoolExecutor(max_workers=4) as pool:
        domains = list(pool.map(lambda _: TrustDomain.open(tmp_path / "td"), range(4)))
    assert len({d.material.rekor_log_id for d in domains}) == 1
