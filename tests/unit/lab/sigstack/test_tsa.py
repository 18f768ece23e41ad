"""The `tsa` role, judged by rfc3161-client and sigstore-python's timestamp client/verifier."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from rfc3161_client import (
    TimestampRequestBuilder,
    TimeStampResponse,
    VerifierBuilder,
    decode_timestamp_response,
)
from rfc3161_client.base import HashAlgorithm
from rfc3161_client.errors import VerificationError as Rfc3161VerificationError
from sigstore._internal.timestamp import TimestampSource
from sigstore.models import ClientTrustConfig
from sigstore.verify.verifier import Verifier

from lab.services.sigstack import tsa
from lab.services.sigstack.http import Server
from lab.services.sigstack.x509util import (
    TAG_SEQUENCE,
    certificate_der,
    der_tlv,
    parse_certificates_pem,
    parse_der,
)
from lab.sigstore_trust import LabTrustMaterial

SERVICES_DIR = Path(tsa.__file__).resolve().parents[1]
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="module")
def material() -> LabTrustMaterial:
    return LabTrustMaterial.generate()


@pytest.fixture(scope="module")
def service_dirs(material: LabTrustMaterial, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return material.write_service_files(tmp_path_factory.mktemp("services"))


@pytest.fixture(scope="module")
def authority(service_dirs: dict[str, Path]) -> tsa.TimestampAuthority:
    return tsa.TimestampAuthority(tsa.TsaConfig.from_file(service_dirs["tsa"] / "tsa.json"))


@pytest.fixture(scope="module")
def server(authority: tsa.TimestampAuthority) -> Iterator[Server]:
    srv = tsa.make_server(authority, "127.0.0.1", 0, log=False).start()
    yield srv
    srv.stop()


def _query(message: bytes = b"artifact signature", *, cert_req: bool = True) -> Any:
    return (
        TimestampRequestBuilder()
        .data(message)
        .hash_algorithm(HashAlgorithm.SHA256)
        .nonce(nonce=True)
        .cert_request(cert_request=cert_req)
        .build()
    )


def _post(base_url: str, body: bytes, **headers: str) -> requests.Response:
    headers.setdefault("Content-Type", tsa.QUERY_TYPE)
    return requests.post(f"{base_url}/api/v1/timestamp", data=body, headers=headers, timeout=15)


def _openssl_query(*args: str) -> bytes:
    done = subprocess.run(
        ["openssl", "ts", "-query", *args], capture_output=True, check=True, timeout=30
    )
    return done.stdout


def _verifier(material: LabTrustMaterial, request: Any = None) -> Any:
    builder = VerifierBuilder.from_request(request) if request is not None else VerifierBuilder()
    return builder.tsa_certificate(material.tsa_cert).add_root_certificate(material.tsa_root)


def test_sigstore_client_and_verifier_accept_the_timestamp(
    material: LabTrustMaterial, server: Server
) -> None:
    config = material.client_trust_config(
        {"rekor_url": "http://x", "fulcio_url": "http://y", "tsa_url": server.url}
    )
    trust = ClientTrustConfig.from_json(json.dumps(config))
    (client,) = trust.signing_config.get_tsas()
    assert client.url == server.url + "/api/v1/timestamp"
    signature = b"\x30\x45signature bytes"
    response = client.request_timestamp(signature)
    result = Verifier(trusted_root=trust.trusted_root)._verify_signed_timestamp(response, signature)
    assert result is not None and result.source is TimestampSource.TIMESTAMP_AUTHORITY
    assert response.tst_info.policy.dotted_string == tsa.DEFAULT_POLICY


def test_nonce_is_echoed_and_signer_certificate_included(
    material: LabTrustMaterial, server: Server
) -> None:
    request = _query()
    reply = _post(server.url, request.as_bytes())
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == tsa.REPLY_TYPE
    response = decode_timestamp_response(reply.content)
    assert response.tst_info.nonce == request.nonce
    assert response.signed_data.certificates == {certificate_der(material.tsa_cert)}
    assert _verifier(material, request).build().verify_message(response, b"artifact signature")


def test_without_cert_req_no_certificate_is_included(
    material: LabTrustMaterial, server: Server
) -> None:
    request = _query(cert_req=False)
    response = decode_timestamp_response(_post(server.url, request.as_bytes()).content)
    assert response.signed_data.certificates == set()
    assert _verifier(material, request).build().verify_message(response, b"artifact signature")


def test_tampered_message_fails_verification(material: LabTrustMaterial, server: Server) -> None:
    request = _query()
    response = decode_timestamp_response(_post(server.url, request.as_bytes()).content)
    with pytest.raises(Rfc3161VerificationError):
        _verifier(material, request).build().verify_message(response, b"another signature")


@pytest.mark.parametrize("digest", ["sha256", "sha384", "sha512"])
def test_digests(material: LabTrustMaterial, server: Server, digest: str) -> None:
    data = b"payload"
    hexdigest = hashlib.new(digest, data).hexdigest()
    reply = _post(server.url, _openssl_query("-digest", hexdigest, f"-{digest}", "-cert"))
    assert reply.status_code == 200, reply.text
    response: TimeStampResponse = decode_timestamp_response(reply.content)
    assert _verifier(material).build().verify_message(response, data)


SHA256_OID = bytes.fromhex("0609608648016503040201")


def _request(digest: bytes, extra: bytes = b"") -> bytes:
    algorithm = der_tlv(TAG_SEQUENCE, SHA256_OID + b"\x05\x00")
    imprint = der_tlv(TAG_SEQUENCE, algorithm + der_tlv(0x04, digest))
    return der_tlv(TAG_SEQUENCE, b"\x02\x01\x01" + imprint + extra)


def _version_2(request: bytes) -> bytes:
    changed = bytearray(request)
    assert changed[2:5] == b"\x02\x01\x01"  # short-form length, then INTEGER 1
    changed[4] = 2
    return bytes(changed)


def _with_extensions(request: bytes) -> bytes:
    top = parse_der(request)
    extension = der_tlv(0xA0, der_tlv(TAG_SEQUENCE, b""))
    return der_tlv(TAG_SEQUENCE, top.content + extension)


MALFORMED: dict[str, Any] = {
    "empty": (lambda: b"", "empty body"),
    "garbage": (lambda: b"hello, timestamp", "error parsing"),
    "truncated": (lambda: _query().as_bytes()[:-3], "error parsing"),
    "trailing bytes": (lambda: _query().as_bytes() + b"\x00", "trailing"),
    "wrong version": (lambda: _version_2(_query().as_bytes()), "version must be 1"),
    "sha1": (lambda: _openssl_query("-digest", "00" * 20, "-sha1"), "unsupported hash"),
    "short digest": (lambda: _request(b"\x00" * 20), "sha256 digest must be 32 bytes"),
    "not a sequence": (lambda: der_tlv(0x31, b""), "not a SEQUENCE"),
    "no imprint": (lambda: der_tlv(TAG_SEQUENCE, b"\x02\x01\x01"), "missing"),
    "negative nonce": (lambda: _request(b"\x00" * 32, b"\x02\x01\xff"), "negative"),
    "extensions": (lambda: _with_extensions(_query().as_bytes()), "extensions"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_requests_get_400(
    server: Server, authority: tsa.TimestampAuthority, case: str
) -> None:
    make, reason = MALFORMED[case]
    try:
        body = make()
    except subprocess.CalledProcessError:
        pytest.skip("openssl refuses to build this request")
    issued = authority.issued
    reply = _post(server.url, body)
    assert reply.status_code == 400, reply.content
    message = reply.json()["message"]
    assert message.startswith("error parsing timestamp request")
    if reason:
        assert reason in message
    assert authority.issued == issued


def test_parse_request_fields() -> None:
    request = _query(cert_req=True)
    parsed = tsa.parse_request(request.as_bytes())
    assert parsed.hash_name == "sha256"
    assert parsed.digest == hashlib.sha256(b"artifact signature").digest()
    assert parsed.nonce == request.nonce
    assert parsed.cert_req is True
    assert parsed.policy is None
    assert tsa.parse_request(_request(b"\x07" * 32)).digest == b"\x07" * 32
    with_policy = tsa.parse_request(
        _openssl_query("-digest", "00" * 32, "-sha256", "-tspolicy", "1.2.3.4.5", "-no_nonce")
    )
    assert (with_policy.policy, with_policy.nonce, with_policy.cert_req) == (
        "1.2.3.4.5",
        None,
        False,
    )


def test_unknown_policy_is_rejected_with_a_reply(server: Server) -> None:
    body = _openssl_query("-digest", "00" * 32, "-sha256", "-tspolicy", "1.2.3.4.5")
    reply = _post(server.url, body)
    assert reply.status_code == 400
    assert reply.headers["Content-Type"] == tsa.REPLY_TYPE
    status, text = tsa.response_status(reply.content)
    assert status == 2 and "policy" in text.lower()


def test_json_requests_like_upstream(material: LabTrustMaterial, server: Server) -> None:
    data = b"artifact signature"
    request = {
        "artifactHash": base64.b64encode(hashlib.sha256(data).digest()).decode(),
        "hashAlgorithm": "sha256",
        "nonce": 1234567890123456789,
        "certificates": True,
    }
    body = json.dumps(request).encode()
    reply = _post(server.url, body, **{"Content-Type": "application/json"})
    assert reply.status_code == 200, reply.text
    assert reply.headers["Content-Type"] == tsa.REPLY_TYPE
    response = decode_timestamp_response(reply.content)
    assert response.tst_info.nonce == request["nonce"]
    assert response.signed_data.certificates == {certificate_der(material.tsa_cert)}
    assert _verifier(material).build().verify_message(response, data)
    for bad in ({}, {"artifactHash": "!!"}, {**request, "hashAlgorithm": "md5"}, []):
        refused = _post(
            server.url, json.dumps(bad).encode(), **{"Content-Type": "application/json"}
        )
        assert refused.status_code == 400


def test_other_routes(material: LabTrustMaterial, server: Server) -> None:
    chain = requests.get(server.url + "/api/v1/timestamp/certchain", timeout=5)
    assert chain.status_code == 200
    assert parse_certificates_pem(chain.content) == [material.tsa_cert, material.tsa_root]
    assert requests.get(server.url + "/healthz", timeout=5).json()["status"] == "ok"
    assert requests.get(server.url + "/api/v1/timestamp", timeout=5).status_code == 405
    assert requests.get(server.url + "/api/v2/nope", timeout=5).status_code == 404


def test_concurrent_requests(material: LabTrustMaterial, server: Server) -> None:
    def one(index: int) -> int:
        message = f"signature {index}".encode()
        request = _query(message)
        response = decode_timestamp_response(_post(server.url, request.as_bytes()).content)
        assert _verifier(material, request).build().verify_message(response, message)
        return response.tst_info.serial_number

    with ThreadPoolExecutor(max_workers=8) as pool:
        serials = list(pool.map(one, range(16)))
    assert len(set(serials)) == 16


def test_signer_needs_critical_timestamping_eku(
    material: LabTrustMaterial, tmp_path: Path, service_dirs: dict[str, Path]
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = material.valid_from
    cert = (
        x509.CertificateBuilder()
        .subject_name(material.tsa_cert.subject)
        .issuer_name(material.tsa_root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + (material.tsa_cert.not_valid_after_utc - now))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=False)
        .sign(material.tsa_root_key, hashes.SHA384())
    )
    (tmp_path / "chain.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    config = tsa.TsaConfig(
        signer_key=service_dirs["tsa"] / "tsa-key.pem", chain=tmp_path / "chain.pem"
    )
    with pytest.raises(ValueError, match="critical EKU"):
        tsa.TimestampAuthority(config)


def test_key_must_match_signer(service_dirs: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other.pem"
    other.write_bytes((service_dirs["fulcio"] / "ct-key.pem").read_bytes())
    config = tsa.TsaConfig(signer_key=other, chain=service_dirs["tsa"] / "tsa-chain.pem")
    with pytest.raises(ValueError, match="does not match"):
        tsa.TimestampAuthority(config)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"chain": "c.pem"}, "signer_key"),
        ({"signer_key": "k.pem"}, "chain"),
        ({"signer_key": "k.pem", "chain": "c.pem", "policy": "not-an-oid"}, "policy"),
        ({"signer_key": "k.pem", "chain": "c.pem", "openssl": ""}, "openssl"),
        ([], "object"),
    ],
)
def test_config_errors_name_the_field(raw: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tsa.TsaConfig.from_json(raw, base=Path("/etc"))


def test_openssl_config_escapes_odd_paths(service_dirs: dict[str, Path], tmp_path: Path) -> None:
    odd = tmp_path / "a dir $with #odd"
    odd.mkdir()
    key = odd / "key.pem"
    key.write_bytes((service_dirs["tsa"] / "tsa-key.pem").read_bytes())
    config = tsa.TsaConfig(
        signer_key=key, chain=service_dirs["tsa"] / "tsa-chain.pem", work_dir=odd / "work"
    )
    status, answer = tsa.TimestampAuthority(config).timestamp(_query().as_bytes())
    assert status == 0 and decode_timestamp_response(answer).tst_info.nonce


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
    ok = probe is not None and probe.returncode == 0
    marks = [] if ok else [pytest.mark.skip(reason=f"{SYSTEM_PYTHON} lacks python3-cryptography")]
    version = probe.stdout.strip() if probe is not None and ok else "none"
    found.append(pytest.param(SYSTEM_PYTHON, id=f"system-cryptography-{version}", marks=marks))
    return found


def _pump(stream: Iterable[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


@pytest.mark.parametrize("python", _interpreters())
def test_role_process(
    python: str, service_dirs: dict[str, Path], material: LabTrustMaterial
) -> None:
    env = {**os.environ, "PYTHONPATH": str(SERVICES_DIR), "PYTHONDONTWRITEBYTECODE": "1"}
    config = service_dirs["tsa"] / "tsa.json"
    proc = subprocess.Popen(
        [
            python,
            "-m",
            "sigstack",
            "tsa",
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
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout
    reader = threading.Thread(target=_pump, args=(stdout, lines), daemon=True)
    reader.start()
    url = ""
    try:
        while not url:
            line = lines.get(timeout=20)
            if "listening on" in line:
                url = "http://" + line.rsplit("listening on ", 1)[1].strip()
        request = _query()
        reply = _post(url, request.as_bytes())
        assert reply.status_code == 200
        response = decode_timestamp_response(reply.content)
        assert _verifier(material, request).build().verify_message(response, b"artifact signature")
        assert _post(url, b"junk").status_code == 400
    finally:
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert proc.wait(timeout=10) == 0
    assert time.monotonic() - started < 3
    reader.join(timeout=5)
    logged = [lines.get_nowait() for _ in range(lines.qsize())]
    assert sum('"POST /api/v1/timestamp"' in line for line in logged) == 2
