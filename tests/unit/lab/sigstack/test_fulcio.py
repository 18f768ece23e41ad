"""The `fulcio` role, judged by sigstore-python's own Fulcio client, SCT and chain checks."""

from __future__ import annotations

import base64
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from sigstore._internal.fulcio.client import FulcioClient, FulcioClientError
from sigstore._internal.sct import verify_sct
from sigstore._internal.timestamp import TimestampSource, TimestampVerificationResult
from sigstore._internal.trust import KeyringPurpose
from sigstore._utils import cert_is_leaf
from sigstore.models import ClientTrustConfig
from sigstore.oidc import IdentityToken
from sigstore.sign import SigningContext
from sigstore.verify.policy import Identity, OIDCIssuerV2
from sigstore.verify.verifier import Verifier

from lab.services.sigstack import fulcio, jwt
from lab.services.sigstack.http import Server
from lab.services.sigstack.x509util import OID_FULCIO_ISSUER_V1, utc_now
from lab.sigstore_trust import LabTrustMaterial

SERVICES_DIR = Path(fulcio.__file__).resolve().parents[1]
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="module")
def material() -> LabTrustMaterial:
    return LabTrustMaterial.generate()


@pytest.fixture(scope="module")
def service_dirs(material: LabTrustMaterial, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return material.write_service_files(tmp_path_factory.mktemp("services"))


@pytest.fixture(scope="module")
def ca(service_dirs: dict[str, Path]) -> fulcio.FulcioCA:
    return fulcio.FulcioCA.from_config(
        fulcio.FulcioConfig.from_file(service_dirs["fulcio"] / "fulcio.json")
    )


@pytest.fixture(scope="module")
def server(ca: fulcio.FulcioCA) -> Iterator[Server]:
    srv = fulcio.make_server(ca, "127.0.0.1", 0, log=False).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def trust(material: LabTrustMaterial, server: Server) -> ClientTrustConfig:
    config = material.client_trust_config(
        {"rekor_url": "http://127.0.0.1:9", "fulcio_url": server.url}
    )
    return ClientTrustConfig.from_json(json.dumps(config))


def _csr(key: Any = None) -> x509.CertificateSigningRequest:
    key = key or ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )


def _csr_body(pem: bytes) -> dict[str, Any]:
    return {"certificateSigningRequest": base64.b64encode(pem).decode()}


def _post(base_url: str, token: str | None, body: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(base_url + "/api/v2/signingCert", data=data, headers=headers, timeout=10)


def _verified_time() -> TimestampVerificationResult:
    return TimestampVerificationResult(
        source=TimestampSource.TIMESTAMP_AUTHORITY, time=datetime.now(UTC)
    )


def test_sigstore_signer_gets_a_certificate(
    material: LabTrustMaterial, trust: ClientTrustConfig
) -> None:
    """sigstore's Signer requests the certificate and checks its SCT itself."""
    context = SigningContext.from_trust_config(trust)
    with context.signer(IdentityToken(material.mint_identity_token())) as signer:
        cert = signer._signing_cert()
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == [material.identity]


def test_leaf_follows_the_fulcio_profile(
    material: LabTrustMaterial, trust: ClientTrustConfig, server: Server
) -> None:
    token = IdentityToken(material.mint_identity_token())
    response = FulcioClient(server.url).signing_cert.post(_csr(), token)
    cert, chain = response.cert, response.chain
    assert chain == [material.fulcio_intermediate, material.fulcio_root]

    assert len(cert.subject) == 0
    exts = cert.extensions
    san = exts.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    usage = exts.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    eku = exts.get_extension_for_class(x509.ExtendedKeyUsage)
    assert list(eku.value) == [ExtendedKeyUsageOID.CODE_SIGNING]
    assert exts.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    aki = exts.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    intermediate_ski = material.fulcio_intermediate.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    )
    assert aki.key_identifier == intermediate_ski.value.digest
    raw_issuer = exts.get_extension_for_oid(OID_FULCIO_ISSUER_V1).value
    assert isinstance(raw_issuer, x509.UnrecognizedExtension)
    assert raw_issuer.value == material.issuer.encode()
    OIDCIssuerV2(material.issuer).verify(cert)
    Identity(identity=material.identity, issuer=material.issuer).verify(cert)
    scts = exts.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value
    assert len(scts) == 1
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(minutes=10)
    assert cert_is_leaf(cert)

    verifier = Verifier(trusted_root=trust.trusted_root)
    verified_chain = verifier._verify_chain_at_time(cert, _verified_time())
    verify_sct(cert, verified_chain, trust.trusted_root.ct_keyring(KeyringPurpose.VERIFY))


def test_uri_identity(material: LabTrustMaterial, server: Server) -> None:
    uri = "https://ci.cihub.test/workflows/release@refs/heads/main"
    token = IdentityToken(material.mint_identity_token(uri))
    assert token.identity == uri
    cert = FulcioClient(server.url).signing_cert.post(_csr(), token).cert
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [uri]
    assert san.get_values_for_type(x509.RFC822Name) == []


def test_public_key_request(material: LabTrustMaterial, server: Server) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def body(signed: bytes) -> dict[str, Any]:
        proof = key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return {
            "credentials": {"oidcIdentityToken": material.mint_identity_token()},
            "publicKeyRequest": {
                "publicKey": {"algorithm": "ECDSA", "content": pem.decode()},
                "proofOfPossession": base64.b64encode(proof).decode(),
            },
        }

    good = _post(server.url, None, body(material.identity.encode()))
    assert good.status_code == 200, good.text
    chain = good.json()["signedCertificateEmbeddedSct"]["chain"]["certificates"]
    leaf = x509.load_pem_x509_certificate(chain[0].encode())
    assert (
        leaf.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == pem
    )
    bad = _post(server.url, None, body(b"someone-else@lab.test"))
    assert bad.status_code == 400
    assert bad.json()["message"].startswith(fulcio.INVALID_SIGNATURE)


def _bad_csr_signature() -> bytes:
    der = bytearray(_csr().public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # last byte of the ECDSA signature's s
    b64 = base64.encodebytes(bytes(der)).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{b64}-----END CERTIFICATE REQUEST-----\n".encode()


def _weak_csr() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return _csr(key).public_bytes(serialization.Encoding.PEM)


def _token_claims(material: LabTrustMaterial, **claims: Any) -> str:
    now = int(time.time())
    base: dict[str, Any] = {"iss": material.issuer, "aud": "sigstore", "iat": now}
    base["exp"] = now + 300
    base.update(claims)
    return jwt.mint(base, material.oidc_key)


NegativeCase = tuple[Callable[[LabTrustMaterial], "str | None"], Callable[[], bytes] | None, str]

NEGATIVE_CASES: dict[str, NegativeCase] = {
    "expired": (lambda m: m.mint_identity_token(issued_at=time.time() - 3600), None, "expired"),
    "wrong audience": (lambda m: m.mint_identity_token(audience="other"), None, "audience"),
    "wrong issuer key": (
        lambda m: m.mint_identity_token(signing_key=ec.generate_private_key(ec.SECP256R1())),
        None,
        "signature",
    ),
    "unknown issuer": (
        lambda m: m.mint_identity_token(issuer="https://evil.test"),
        None,
        "not configured",
    ),
    "no token": (lambda m: None, None, "no identity token"),
    "garbage token": (lambda m: "not.a.jwt", None, "identity token"),
    "email not verified": (
        lambda m: _token_claims(m, sub="x@lab.test", email="x@lab.test", email_verified=False),
        None,
        "email_verified",
    ),
    "sub neither email nor URI": (lambda m: _token_claims(m, sub="12345"), None, "neither"),
    # upstream takes an email SAN only from a verified `email` claim, never from `sub`
    "email-like sub, no email claim": (
        lambda m: _token_claims(m, sub="x@lab.test"),
        None,
        "no verified email claim",
    ),
    "bad CSR signature": (lambda m: m.mint_identity_token(), _bad_csr_signature, "signature"),
    "weak key": (lambda m: m.mint_identity_token(), _weak_csr, "insecure"),
    "garbage CSR": (lambda m: m.mint_identity_token(), lambda: b"not a csr", "could not be parsed"),
}


@pytest.mark.parametrize("case", sorted(NEGATIVE_CASES))
def test_refusals_are_400_without_certificate(
    material: LabTrustMaterial, server: Server, ca: fulcio.FulcioCA, case: str
) -> None:
    make_token, make_csr, reason = NEGATIVE_CASES[case]
    csr = make_csr() if make_csr else _csr().public_bytes(serialization.Encoding.PEM)
    issued = ca.issued
    response = _post(server.url, make_token(material), _csr_body(csr))
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == fulcio.CODE_INVALID_ARGUMENT
    assert reason in body["message"]
    assert "signedCertificateEmbeddedSct" not in body
    assert ca.issued == issued


@pytest.mark.parametrize("body", [b"{not json", b"[]", json.dumps({"unrelated": 1}).encode(), b""])
def test_malformed_bodies(material: LabTrustMaterial, server: Server, body: bytes) -> None:
    response = _post(server.url, material.mint_identity_token(), body)
    assert response.status_code == 400
    assert response.json()["code"] == fulcio.CODE_INVALID_ARGUMENT


def test_sigstore_client_reports_a_refusal(material: LabTrustMaterial, server: Server) -> None:
    forged = material.mint_identity_token(signing_key=ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(FulcioClientError):
        FulcioClient(server.url).signing_cert.post(_csr(), IdentityToken(forged))


def test_other_routes(ca: fulcio.FulcioCA, server: Server, material: LabTrustMaterial) -> None:
    health = requests.get(server.url + "/healthz", timeout=5)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    bundle = requests.get(server.url + "/api/v2/trustBundle", timeout=5).json()
    pems = bundle["chains"][0]["certificates"]
    assert [x509.load_pem_x509_certificate(p.encode()) for p in pems] == ca.chain
    config = requests.get(server.url + "/api/v2/configuration", timeout=5).json()
    assert config["issuers"][0]["issuerUrl"] == material.issuer
    missing = requests.get(server.url + "/api/v1/nope", timeout=5)
    assert (missing.status_code, missing.json()["code"]) == (404, fulcio.CODE_NOT_FOUND)
    wrong = requests.get(server.url + "/api/v2/signingCert", timeout=5)
    assert (wrong.status_code, wrong.json()["code"]) == (405, fulcio.CODE_UNIMPLEMENTED)


def test_concurrent_requests(material: LabTrustMaterial, server: Server) -> None:
    token = IdentityToken(material.mint_identity_token())

    def one(_: int) -> int:
        return FulcioClient(server.url).signing_cert.post(_csr(), token).cert.serial_number

    with ThreadPoolExecutor(max_workers=8) as pool:
        serials = list(pool.map(one, range(20)))
    assert len(set(serials)) == 20


def test_clock_is_checked_in_the_ca(ca: fulcio.FulcioCA, material: LabTrustMaterial) -> None:
    token = material.mint_identity_token()
    assert ca.authenticate(token).value == material.identity
    with pytest.raises(fulcio.FulcioError, match="expired"):
        ca.authenticate(token, now=time.time() + 301)
    start = utc_now() - timedelta(hours=1)
    cert = ca.issue(
        ca.authenticate(token), ec.generate_private_key(ec.SECP256R1()).public_key(), now=start
    )[0]
    assert cert.not_valid_before_utc == start


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda raw: raw.pop("ca_key"), "ca_key"),
        (lambda raw: raw.update(oidc_issuers=[]), "oidc_issuers"),
        (lambda raw: raw.update(oidc_issuers=[{"issuer": 1}]), "issuer"),
        (lambda raw: raw.update(cert_lifetime_seconds=0), "cert_lifetime_seconds"),
        (lambda raw: raw.update(audience=""), "audience"),
    ],
)
def test_config_errors_name_the_field(
    service_dirs: dict[str, Path], change: Any, message: str
) -> None:
    raw = json.loads((service_dirs["fulcio"] / "fulcio.json").read_text())
    change(raw)
    with pytest.raises(ValueError, match=message):
        fulcio.FulcioConfig.from_json(raw, base=service_dirs["fulcio"])


def test_ca_key_must_match_chain(ca: fulcio.FulcioCA) -> None:
    with pytest.raises(ValueError, match="does not match"):
        fulcio.FulcioCA(
            ca_key=ec.generate_private_key(ec.SECP384R1()),
            chain=ca.chain,
            sct_signer=ca.sct_signer,
            issuer_keys=ca.issuer_keys,
        )


# -- the role as a process, under this interpreter and under Debian's python3 --------------


def _interpreters() -> list[Any]:
    found: list[Any] = [pytest.param(sys.executable, id="venv")]
    probe = (
        subprocess.run(
            [SYSTEM_PYTHON, "-c", "import cryptography; print(cryptography.__version__)"],
            capture_output=True,
            text=True,
            check=False,
        )
        if os.path.exists(SYSTEM_PYTHON)
        else None
    )
    marks = (
        []
        if probe and probe.returncode == 0
        else [
            pytest.mark.skip(reason=f"{SYSTEM_PYTHON} with python3-cryptography is not installed")
        ]
    )
    version = probe.stdout.strip() if probe and probe.returncode == 0 else "none"
    found.append(pytest.param(SYSTEM_PYTHON, id=f"system-cryptography-{version}", marks=marks))
    return found


class RoleProcess:
    """`python -m sigstack <role>` as the container runs it, on a free port."""

    __test__ = False

    def __init__(self, python: str, role: str, config: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(SERVICES_DIR), "PYTHONDONTWRITEBYTECODE": "1"}
        self.proc = subprocess.Popen(
            [
                python,
                "-m",
                "sigstack",
                role,
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--config",
                str(config),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=config.parent,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None
        stdout = self.proc.stdout
        self.reader = threading.Thread(target=self._pump, args=(stdout,), daemon=True)
        self.reader.start()
        self.url = ""
        deadline = time.monotonic() + 20
        while not self.url:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.proc.kill()
                raise AssertionError(f"{role} did not start: {self.proc.stderr}") from None
            if "listening on" in line:
                self.url = "http://" + line.rsplit("listening on ", 1)[1].strip()

    def _pump(self, stream: Iterable[str]) -> None:
        for line in stream:
            self.lines.put(line)

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        status = self.proc.wait(timeout=10)
        self.reader.join(timeout=5)
        return status


@pytest.mark.parametrize("python", _interpreters())
def test_role_process(
    python: str, service_dirs: dict[str, Path], material: LabTrustMaterial
) -> None:
    role = RoleProcess(python, "fulcio", service_dirs["fulcio"] / "fulcio.json")
    try:
        trust = ClientTrustConfig.from_json(
            json.dumps(
                material.client_trust_config({"rekor_url": "http://x", "fulcio_url": role.url})
            )
        )
        token = IdentityToken(material.mint_identity_token())
        response = FulcioClient(role.url).signing_cert.post(_csr(), token)
        chain = Verifier(trusted_root=trust.trusted_root)._verify_chain_at_time(
            response.cert, _verified_time()
        )
        verify_sct(response.cert, chain, trust.trusted_root.ct_keyring(KeyringPurpose.VERIFY))
        refused = _post(role.url, material.mint_identity_token(audience="x"), {})
        assert refused.status_code == 400
    finally:
        started = time.monotonic()
        assert role.terminate() == 0
    assert time.monotonic() - started < 3
    logged = [role.lines.get_nowait() for _ in range(role.lines.qsize())]
    assert sum('"POST /api/v2/signingCert"' in line for line in logged) == 2


def test_role_process_bad_config(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(SERVICES_DIR)}
    done = subprocess.run(
        [sys.executable, "-m", "sigstack", "fulcio", "--config", str(tmp_path / "none.json")],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "none.json" in done.stderr


def test_legacy_v1_api(material: LabTrustMaterial, server: Server, ca: fulcio.FulcioCA) -> None:
    root = requests.get(server.url + "/api/v1/rootCert", timeout=10)
    assert root.status_code == 200
    assert root.headers["Content-Type"] == "application/pem-certificate-chain"
    assert x509.load_pem_x509_certificates(root.content) == ca.chain
    headers = {"Authorization": f"Bearer {material.mint_identity_token()}"}
    csr = _csr_body(_csr().public_bytes(serialization.Encoding.PEM))
    issued = requests.post(server.url + "/api/v1/signingCert", json=csr, headers=headers)
    assert issued.status_code == 201, issued.text
    leaf, *rest = x509.load_pem_x509_certificates(issued.content)
    assert rest == ca.chain
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == [material.identity]
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    proof = key.sign(material.identity.encode(), ec.ECDSA(hashes.SHA256()))
    legacy = {
        "publicKey": {"content": base64.b64encode(der).decode(), "algorithm": "ecdsa"},
        "signedEmailAddress": base64.b64encode(proof).decode(),
    }
    by_key = requests.post(server.url + "/api/v1/signingCert", json=legacy, headers=headers)
    assert by_key.status_code == 201, by_key.text
    unauthenticated = requests.post(server.url + "/api/v1/signingCert", json=csr)
    assert unauthenticated.status_code in (400, 401)
