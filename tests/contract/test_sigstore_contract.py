"""The lab's Sigstore stack judged by the unmodified sigstore-python client (CLI and API).

The same positive cases run against a real Sigstore deployment when REKOR_URL and a trust
config are given (SIGSTORE_TRUST_CONFIG, SIGSTORE_IDENTITY_TOKEN, SIGSTORE_IDENTITY,
SIGSTORE_ISSUER), e.g. one written by sigstore/scaffolding's setup-sigstore-env.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from sigstore._internal.fulcio.client import FulcioClient, FulcioClientError
from sigstore.models import ClientTrustConfig
from sigstore.oidc import IdentityToken

from harness.sign import SigningSetup, sign_artifact
from lab import Lab

pytestmark = pytest.mark.integration

SIGSTORE = [sys.executable, "-m", "sigstore"]


@dataclass(frozen=True)
class Stack:
    trust_config: Path
    token: str
    identity: str
    issuer: str


def _upstream() -> Stack | None:
    needed = ("REKOR_URL", "SIGSTORE_TRUST_CONFIG", "SIGSTORE_IDENTITY_TOKEN")
    if not all(os.environ.get(name) for name in needed):
        return None
    return Stack(
        Path(os.environ["SIGSTORE_TRUST_CONFIG"]),
        os.environ["SIGSTORE_IDENTITY_TOKEN"],
        os.environ.get("SIGSTORE_IDENTITY", ""),
        os.environ.get("SIGSTORE_ISSUER", ""),
    )


@pytest.fixture(params=["lab", "upstream"])
def stack(request: pytest.FixtureRequest) -> Stack:
    if request.param == "upstream":
        upstream = _upstream()
        if upstream is None:
            pytest.skip("REKOR_URL, SIGSTORE_TRUST_CONFIG and SIGSTORE_IDENTITY_TOKEN are not set")
        return upstream
    lab: Lab = request.getfixturevalue("lab")
    assert lab.endpoints.trust_config is not None
    return Stack(
        lab.endpoints.trust_config, lab.mint_token(), lab.config.identity, lab.config.issuer
    )


def _sigstore(*args: str) -> subprocess.CompletedProcess[str]:
    # A wide terminal keeps the client's error messages on one line.
    env = {**os.environ, "COLUMNS": "400"}
    return subprocess.run([*SIGSTORE, *args], capture_output=True, text=True, timeout=120, env=env)


def _sign(
    stack: Stack, artifact: Path, bundle: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    return _sigstore(
        "--trust-config",
        str(stack.trust_config),
        "sign",
        *extra,
        "--identity-token",
        stack.token,
        "--overwrite",
        "--bundle",
        str(bundle),
        str(artifact),
    )


def _verify(
    stack: Stack,
    artifact: Path,
    bundle: Path,
    *,
    trust_config: Path | None = None,
    identity: str | None = None,
) -> subprocess.CompletedProcess[str]:
    return _sigstore(
        "--trust-config",
        str(trust_config or stack.trust_config),
        "verify",
        "identity",
        "--offline",
        "--bundle",
        str(bundle),
        "--cert-identity",
        identity or stack.identity,
        "--cert-oidc-issuer",
        stack.issuer,
        str(artifact),
    )


def _one_line(proc: subprocess.CompletedProcess[str]) -> str:
    return " ".join(proc.stderr.split())


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    path = tmp_path / "artifact.txt"
    path.write_text("built by the lab\n")
    return path


@pytest.mark.parametrize("rekor_version", ["1", "2"])
def test_cli_sign_then_verify_offline(
    stack: Stack, artifact: Path, tmp_path: Path, rekor_version: str
) -> None:
    bundle = tmp_path / "artifact.sigstore.json"
    signed = _sign(stack, artifact, bundle, "--rekor-version", rekor_version)
    assert signed.returncode == 0, _one_line(signed)
    entry = json.loads(bundle.read_text())["verificationMaterial"]["tlogEntries"][0]
    assert entry["inclusionProof"]["checkpoint"]["envelope"]
    verified = _verify(stack, artifact, bundle)
    assert verified.returncode == 0, _one_line(verified)
    assert f"OK: {artifact}" in verified.stdout + verified.stderr


def test_cli_attest_dsse_then_verify_offline(stack: Stack, artifact: Path, tmp_path: Path) -> None:
    predicate = tmp_path / "predicate.json"
    predicate.write_text(
        json.dumps(
            {
                "buildDefinition": {
                    "buildType": "https://cihub.dev/build/v1",
                    "externalParameters": {"command": "make"},
                },
                "runDetails": {"builder": {"id": "https://cihub.dev/lab"}},
            }
        )
    )
    bundle = tmp_path / "artifact.intoto.sigstore.json"
    attested = _sigstore(
        "--trust-config",
        str(stack.trust_config),
        "attest",
        "--predicate",
        str(predicate),
        "--predicate-type",
        "https://slsa.dev/provenance/v1",
        "--identity-token",
        stack.token,
        "--overwrite",
        "--bundle",
        str(bundle),
        str(artifact),
    )
    assert attested.returncode == 0, _one_line(attested)
    assert "dsseEnvelope" in json.loads(bundle.read_text())
    verified = _verify(stack, artifact, bundle)
    assert verified.returncode == 0, _one_line(verified)


def test_twenty_concurrent_signings_all_verify(stack: Stack) -> None:
    setup = SigningSetup(stack.trust_config, stack.token, stack.identity, stack.issuer)
    payloads = [f"artifact {n}\n".encode() for n in range(20)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        signed = list(pool.map(lambda data: sign_artifact(data, setup), payloads))
    # sign_artifact returns only what sigstore's Verifier accepted for the expected identity.
    indexes = {int(s.log_entry["logIndex"]) for s in signed}
    assert len(indexes) == 20


# -- negative cases: the lab's own trust material makes the wrong roots ----------------------


@pytest.fixture
def lab_stack(lab: Lab) -> Stack:
    assert lab.endpoints.trust_config is not None
    return Stack(
        lab.endpoints.trust_config, lab.mint_token(), lab.config.identity, lab.config.issuer
    )


def _variant(lab: Lab, path: Path, **options: object) -> Path:
    proxies = lab.endpoints.proxies
    urls = {name + "_url": proxies[name].url for name in ("rekor", "fulcio", "tsa")}
    assert lab.trust_material is not None
    return lab.trust_material.write_trust_config(path, urls, **options)


@pytest.fixture
def signed_v2(lab_stack: Stack, artifact: Path, tmp_path: Path) -> Path:
    bundle = tmp_path / "good.sigstore.json"
    signed = _sign(lab_stack, artifact, bundle, "--rekor-version", "2")
    assert signed.returncode == 0, _one_line(signed)
    return bundle


def test_a_wrong_ct_key_fails_the_sct_check(
    lab: Lab, lab_stack: Stack, artifact: Path, signed_v2: Path, tmp_path: Path
) -> None:
    wrong = _variant(lab, tmp_path / "wrong-ct.json", wrong_ct_key=True)
    signed = _sign(
        Stack(wrong, lab_stack.token, lab_stack.identity, lab_stack.issuer),
        artifact,
        tmp_path / "x.json",
    )
    assert signed.returncode != 0 and "SCT verify failed" in _one_line(signed)
    verified = _verify(lab_stack, artifact, signed_v2, trust_config=wrong)
    assert verified.returncode != 0 and "SCT verify failed" in _one_line(verified)


def test_rekor_v2_without_a_tsa_in_the_root_fails(
    lab: Lab, lab_stack: Stack, artifact: Path, signed_v2: Path, tmp_path: Path
) -> None:
    no_tsa = _variant(lab, tmp_path / "no-tsa.json", include_tsa=False)
    signed = _sign(
        Stack(no_tsa, lab_stack.token, lab_stack.identity, lab_stack.issuer),
        artifact,
        tmp_path / "x.json",
        "--rekor-version",
        "2",
    )
    assert signed.returncode != 0
    assert "must contain an inclusion promise or signed timestamp" in _one_line(signed)
    verified = _verify(lab_stack, artifact, signed_v2, trust_config=no_tsa)
    assert verified.returncode != 0
    assert "no Timestamp Authorities have been provided" in _one_line(verified)


def test_a_wrong_log_key_fails_verification(
    lab: Lab, lab_stack: Stack, artifact: Path, signed_v2: Path, tmp_path: Path
) -> None:
    wrong = _variant(lab, tmp_path / "wrong-log.json", wrong_log_key=True)
    verified = _verify(lab_stack, artifact, signed_v2, trust_config=wrong)
    assert verified.returncode != 0
    assert "invalid signature" in _one_line(verified)


def test_a_wrong_identity_fails_verification(
    lab_stack: Stack, artifact: Path, signed_v2: Path
) -> None:
    verified = _verify(lab_stack, artifact, signed_v2, identity="someone-else@cihub.test")
    assert verified.returncode != 0
    assert "SANs do not match someone-else@cihub.test" in _one_line(verified)


def test_a_tampered_artifact_fails_verification(
    lab_stack: Stack, artifact: Path, signed_v2: Path
) -> None:
    artifact.write_text("built by the lab, then changed\n")
    verified = _verify(lab_stack, artifact, signed_v2)
    assert verified.returncode != 0
    assert "digest mismatch" in _one_line(verified)


def test_fulcio_refuses_an_expired_token(lab: Lab) -> None:
    assert lab.trust_material is not None
    raw = lab.trust_material.mint_identity_token(lifetime=1)
    token = IdentityToken(raw)  # the client accepts it while it is still valid
    expires = json.loads(_jwt_claims(raw))["exp"]
    deadline = time.monotonic() + 10
    while time.time() <= expires + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    trust = ClientTrustConfig.from_json(Path(str(lab.endpoints.trust_config)).read_text())
    fulcio: FulcioClient = trust.signing_config.get_fulcio()
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509 import CertificateSigningRequestBuilder, Name

    key = ec.generate_private_key(ec.SECP256R1())
    csr = CertificateSigningRequestBuilder().subject_name(Name([])).sign(key, hashes.SHA256())
    with pytest.raises(FulcioClientError) as refused:
        fulcio.signing_cert.post(csr, token)
    # The client drops fulcio's message (a falsy 4xx `Response`), so read it from the cause.
    response = refused.value.__cause__.response  # type: ignore[union-attr]
    assert response.status_code in (400, 401)
    assert "token expired" in response.json()["message"]


def _jwt_claims(token: str) -> str:
    import base64

    payload = token.split(".")[1]
    return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()


def test_lab_bundles_of_both_logs_verify_against_the_exported_trust_domain(
    lab: Lab, lab_stack: Stack, artifact: Path, tmp_path: Path
) -> None:
    """What an auditor does: pin `cihub trust export`, never the lab's own trust config."""
    assert lab.trust_domain is not None
    pinned = tmp_path / "pinned.json"
    exported = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "trust",
            "export",
            "-o",
            str(pinned),
            "--trust-domain",
            str(lab.trust_domain.path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert exported.returncode == 0, exported.stderr
    log_ids = set()
    for version in ("1", "2"):
        bundle = tmp_path / f"v{version}.sigstore.json"
        signed = _sign(lab_stack, artifact, bundle, "--rekor-version", version)
        assert signed.returncode == 0, _one_line(signed)
        entry = json.loads(bundle.read_text())["verificationMaterial"]["tlogEntries"][0]
        log_ids.add(entry["logId"]["keyId"])
        verified = _verify(lab_stack, artifact, bundle, trust_config=pinned)
        assert verified.returncode == 0, _one_line(verified)
    assert len(log_ids) == 2, "v1 and v2 are separate logs"
