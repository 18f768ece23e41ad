"""The lab's Rekor (lab/services/sigstack, role `rekor`) over HTTP on loopback, judged by the
unmodified sigstore-python client: its Rekor v1 and v2 clients submit entries and parse our
answers, and its own inclusion, checkpoint, SET and entry-body checks verify them against a
trusted root built from the log's keys.

No Fulcio here: the signing certificates come from a throwaway test CA, so the full
`Verifier` (which checks the chain and the SCT) is left to the contract tests.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests
import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import NameOID
from sigstore import dsse
from sigstore._internal.rekor import RekorClientError, _hashedrekord_from_parts
from sigstore._internal.rekor.checkpoint import SignedCheckpoint
from sigstore._internal.rekor.client import RekorClient
from sigstore._internal.rekor.client_v2 import RekorV2Client
from sigstore._internal.trust import KeyringPurpose, RekorKeyring
from sigstore._utils import KeyID
from sigstore.hashes import Hashed
from sigstore.models import Bundle, TransparencyLogEntry, TrustedRoot
from sigstore.verify.verifier import (
    _validate_dsse_v001_entry_body,
    _validate_hashedrekord_v001_entry_body,
    _validate_hashedrekord_v002_dsse_entry_body,
    _validate_hashedrekord_v002_entry_body,
)
from sigstore_models.common.v1 import HashAlgorithm
from sigstore_models.rekor import v2 as rekor_v2
from sigstore_models.trustroot import v1 as trustroot_v1

from lab.services.sigstack import canonical, merkle
from lab.services.sigstack.checkpoint import KeyVerifier, open_checkpoint
from lab.services.sigstack.rekor import RekorService, log_ids
from lab.services.sigstack.store import StoreError

SERVICES = Path(__file__).resolve().parents[4] / "lab" / "services"
ORIGIN = "rekor.test.lab"
EPOCH = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)


# -- keys, certificates and a trusted root ----------------------------------------------------


@dataclass
class LabKeys:
    v1: ec.EllipticCurvePrivateKey
    v2: ed25519.Ed25519PrivateKey
    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate


@dataclass
class Signer:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def sign_artifact(self, artifact: bytes) -> tuple[Hashed, bytes]:
        digest = hashlib.sha256(artifact).digest()
        signature = self.key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        return Hashed(algorithm=HashAlgorithm.SHA2_256, digest=digest), signature


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@pytest.fixture(scope="module")
def keys() -> LabKeys:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("lab test CA"))
        .issuer_name(_name("lab test CA"))
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(EPOCH)
        .not_valid_after(EPOCH + datetime.timedelta(days=36500))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    return LabKeys(
        ec.generate_private_key(ec.SECP256R1()),
        ed25519.Ed25519PrivateKey.generate(),
        ca_key,
        ca_cert,
    )


def _signer(keys: LabKeys) -> Signer:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(keys.ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(minutes=10))
        .add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name("dev@example.com")]), critical=True
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(keys.ca_key, hashes.SHA256())
    )
    return Signer(key, cert)


@pytest.fixture(scope="module")
def signer(keys: LabKeys) -> Signer:
    return _signer(keys)


def _trusted_root(keys: LabKeys, url: str) -> TrustedRoot:
    """A trusted root as the lab writes one: both log keys from `log_ids`."""
    ids = log_ids(keys.v1, keys.v2, ORIGIN)
    valid = {"start": "2020-01-01T00:00:00Z"}

    def tlog(info: dict[str, Any]) -> dict[str, Any]:
        return {
            "baseUrl": url,
            "hashAlgorithm": "SHA2_256",
            "publicKey": {**info["publicKey"], "validFor": valid},
            "logId": {"keyId": info["logId"]},
            "checkpointKeyId": {"keyId": info["logId"]},
        }

    ca_der = keys.ca_cert.public_bytes(serialization.Encoding.DER)
    document = {
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": [tlog(ids["v1"]), tlog(ids["v2"])],
        "certificateAuthorities": [
            {
                "subject": {"organization": "lab", "commonName": "lab test CA"},
                "certChain": {"certificates": [{"rawBytes": base64.b64encode(ca_der).decode()}]},
                "validFor": valid,
            }
        ],
        "ctlogs": [],
    }
    return TrustedRoot(trustroot_v1.TrustedRoot.from_json(json.dumps(document)))


@pytest.fixture()
def service(tmp_path: Path, keys: LabKeys) -> Iterator[RekorService]:
    svc = RekorService(tmp_path / "log.db", keys.v1, ORIGIN, keys.v2).start()
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture()
def keyring(keys: LabKeys, service: RekorService) -> RekorKeyring:
    return _trusted_root(keys, service.url).rekor_keyring(KeyringPurpose.VERIFY)


def _duck_bundle(entry: TransparencyLogEntry, cert: x509.Certificate, **extra: Any) -> Any:
    """Just what sigstore's entry-body checks read from a Bundle (v2 bundles need a TSA
    timestamp to be constructed, and there is no TSA here)."""
    return SimpleNamespace(log_entry=entry, signing_certificate=cert, **extra)


# -- Rekor v1 -------------------------------------------------------------------------------


def test_v1_hashedrekord_is_accepted_by_sigstore(
    service: RekorService, signer: Signer, keyring: RekorKeyring, keys: LabKeys
) -> None:
    client = RekorClient(service.url)
    hashed, signature = signer.sign_artifact(b"artifact one")
    entry = client.create_entry(client._build_hashed_rekord_request(hashed, signature, signer.cert))
    assert entry._inner.log_index == 0
    assert entry._inner.kind_version.kind == "hashedrekord"
    assert entry._inner.kind_version.version == "0.0.1"
    assert (
        entry._inner.log_id.key_id
        == hashlib.sha256(
            keys.v1.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ).digest()
    )
    entry._verify(keyring)  # inclusion proof, checkpoint signature and root, SET
    bundle = Bundle.from_parts(signer.cert, signature, entry)
    bundle = Bundle.from_json(bundle.to_json())
    _validate_hashedrekord_v001_entry_body(bundle, hashed)

    # the same entry read back, by index and by UUID, also verifies
    info = client.log.get()
    assert info.tree_size == 1
    by_index = requests.get(f"{service.url}/api/v1/log/entries", params={"logIndex": 0}).json()
    uuid = next(iter(by_index))
    assert len(uuid) == 80 and uuid.endswith(
        merkle.hash_leaf(entry._inner.canonicalized_body).hex()
    )
    TransparencyLogEntry._from_v1_response(by_index)._verify(keyring)
    fetched = client.log.entries.get(uuid=uuid[16:])
    fetched._verify(keyring)
    assert fetched._inner.canonicalized_body == entry._inner.canonicalized_body


def test_v1_dsse_is_accepted_by_sigstore(
    service: RekorService, signer: Signer, keyring: RekorKeyring
) -> None:
    digest = hashlib.sha256(b"the artifact").hexdigest()
    statement = (
        dsse.StatementBuilder()
        .subjects([dsse.Subject(name="artifact.tar", digest={"sha256": digest})])  # type: ignore[arg-type]
        .predicate_type("https://slsa.dev/provenance/v1")
        .predicate({"buildDefinition": {}})
        .build()
    )
    envelope = dsse._sign(signer.key, statement)
    client = RekorClient(service.url)
    entry = client.create_entry(client._build_dsse_request(envelope, signer.cert))
    assert entry._inner.kind_version.kind == "dsse"
    entry._verify(keyring)
    bundle = Bundle._from_parts(signer.cert, envelope, entry)
    _validate_dsse_v001_entry_body(Bundle.from_json(bundle.to_json()))
    # the in-toto subject is searchable, as upstream indexes it
    found = requests.post(f"{service.url}/api/v1/index/retrieve", json={"hash": f"sha256:{digest}"})
    assert found.json() == [
        next(iter(requests.get(f"{service.url}/api/v1/log/entries", params={"logIndex": 0}).json()))
    ]


# -- Rekor v2 -------------------------------------------------------------------------------


def test_v2_hashedrekord_is_accepted_by_sigstore(
    service: RekorService, signer: Signer, keyring: RekorKeyring, keys: LabKeys
) -> None:
    client = RekorV2Client(service.url)
    hashed, signature = signer.sign_artifact(b"artifact two")
    entry = client.create_entry(client._build_hashed_rekord_request(hashed, signature, signer.cert))
    inner = entry._inner
    assert (inner.kind_version.kind, inner.kind_version.version) == ("hashedrekord", "0.0.2")
    assert inner.integrated_time == 0 and inner.inclusion_promise is None
    assert inner.log_id.key_id == log_ids_bytes(keys)["v2"]
    entry._verify(keyring)  # inclusion proof and checkpoint (no SET in v2)
    message = SimpleNamespace(signature=signature)
    bundle = _duck_bundle(entry, signer.cert, _inner=SimpleNamespace(message_signature=message))
    _validate_hashedrekord_v002_entry_body(bundle, hashed)
    body = rekor_v2.entry.Entry.from_json(inner.canonicalized_body)
    assert body.spec.hashed_rekord_v002 is not None
    assert inner.canonicalized_body == canonical.dumps(json.loads(inner.canonicalized_body))


def log_ids_bytes(keys: LabKeys) -> dict[str, bytes]:
    ids = log_ids(keys.v1, keys.v2, ORIGIN)
    return {api: base64.b64decode(ids[api]["logId"]) for api in ("v1", "v2")}


def test_v2_log_id_is_the_c2sp_key_id(keys: LabKeys) -> None:
    raw = keys.v2.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    expected = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + raw).digest()
    assert log_ids_bytes(keys)["v2"] == expected


def test_v2_dsse_both_ways(service: RekorService, signer: Signer, keyring: RekorKeyring) -> None:
    statement = (
        dsse.StatementBuilder()
        .subjects([dsse.Subject(name="a", digest={"sha256": "ab" * 32})])  # type: ignore[arg-type]
        .predicate_type("https://example.com/p")
        .predicate({})
        .build()
    )
    envelope = dsse._sign(signer.key, statement)
    # sigstore-python >= 4.3 sends DSSE as a hashedrekord over the PAE
    client = RekorV2Client(service.url)
    entry = client.create_entry(client._build_dsse_request(envelope, signer.cert))
    entry._verify(keyring)
    _validate_hashedrekord_v002_dsse_entry_body(
        _duck_bundle(entry, signer.cert, _dsse_envelope=envelope)
    )
    # rekor-tiles v2.3.0 dropped dsseRequestV002: a 400 (gRPC InvalidArgument), as upstream
    verifier = {
        "x509Certificate": {
            "rawBytes": base64.b64encode(
                signer.cert.public_bytes(serialization.Encoding.DER)
            ).decode()
        },
        "keyDetails": "PKIX_ECDSA_P256_SHA_256",
    }
    request = {
        "dsseRequestV002": {"envelope": json.loads(envelope.to_json()), "verifiers": [verifier]}
    }
    response = requests.post(f"{service.url}/api/v2/log/entries", json=request)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == 3
    assert "invalid type, must be hashedrekord" in response.json()["message"]


def test_v2_checkpoint_endpoint(service: RekorService, signer: Signer, keys: LabKeys) -> None:
    client = RekorV2Client(service.url)
    for i in range(3):
        hashed, signature = signer.sign_artifact(f"cp {i}".encode())
        client.create_entry(client._build_hashed_rekord_request(hashed, signature, signer.cert))
    # rekor-tiles answers checkpoints only on the tlog-tiles read path
    unimplemented = requests.get(f"{service.url}/api/v2/checkpoint")
    assert unimplemented.status_code == 501 and unimplemented.json()["code"] == 12
    text = requests.get(f"{service.url}/checkpoint").text
    body = open_checkpoint(text, [KeyVerifier(ORIGIN, keys.v2.public_key())], ORIGIN)
    assert body.size == 3 and body.root_hash == service.v2.tree.root(3)
    signed = SignedCheckpoint.from_text(text)
    signed.signed_note.verify(
        _trusted_root(keys, service.url).rekor_keyring(KeyringPurpose.VERIFY),
        KeyID(log_ids_bytes(keys)["v2"]),
    )


# -- concurrency, consistency, search, restart ----------------------------------------------


def test_twenty_concurrent_appends_get_distinct_indexes_and_valid_proofs(
    service: RekorService, keys: LabKeys, keyring: RekorKeyring
) -> None:
    signers = [_signer(keys) for _ in range(20)]
    barrier = threading.Barrier(20)
    results: dict[int, TransparencyLogEntry] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        client: RekorClient | RekorV2Client = (
            RekorClient(service.url) if i % 2 else RekorV2Client(service.url)
        )
        hashed, signature = signers[i].sign_artifact(f"concurrent {i}".encode())
        request = client._build_hashed_rekord_request(hashed, signature, signers[i].cert)
        barrier.wait()
        try:
            results[i] = client.create_entry(request)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    # two logs, two index sequences
    v1 = sorted(e._inner.log_index for i, e in results.items() if i % 2)
    v2 = sorted(e._inner.log_index for i, e in results.items() if not i % 2)
    assert v1 == list(range(10)) and v2 == list(range(10))
    for entry in results.values():
        entry._verify(keyring)
    metrics = requests.get(f"{service.url}/metrics").text
    assert 'rekor_entries_total{api="v1"} 10' in metrics
    assert 'rekor_entries_total{api="v2"} 10' in metrics
    assert 'rekor_tree_size{api="v1"} 10' in metrics
    assert 'rekor_tree_size{api="v2"} 10' in metrics
    assert "rekor_append_latency_seconds_count 20" in metrics
    batches = _metric(metrics, "rekor_append_batches_total")
    assert 1 <= batches <= 20


def _metric(text: str, name: str) -> int:
    match = re.search(rf"^{name} (\d+)$", text, re.MULTILINE)
    assert match is not None, name
    return int(match.group(1))


def _append_v1(service: RekorService, signer: Signer, artifact: bytes) -> TransparencyLogEntry:
    client = RekorClient(service.url)
    hashed, signature = signer.sign_artifact(artifact)
    return client.create_entry(client._build_hashed_rekord_request(hashed, signature, signer.cert))


def test_consistency_proofs_between_signed_tree_heads(
    service: RekorService, signer: Signer, keys: LabKeys, keyring: RekorKeyring
) -> None:
    heads = []
    for i in range(13):
        _append_v1(service, signer, f"grow {i}".encode())
        if i in (0, 3, 7, 12):
            heads.append(requests.get(f"{service.url}/api/v1/log").json())
    log_id = log_ids_bytes(keys)["v1"]
    for head in heads:
        assert head["treeID"] == str(service.store.tree_id)
        signed = SignedCheckpoint.from_text(head["signedTreeHead"])
        signed.signed_note.verify(keyring, KeyID(log_id))
        assert signed.checkpoint.log_size == head["treeSize"]
        assert signed.checkpoint.log_hash == head["rootHash"]
        assert signed.checkpoint.origin == f"{ORIGIN} - {service.store.tree_id}"
    for old in heads:
        for new in heads:
            if old["treeSize"] > new["treeSize"]:
                continue
            proof = requests.get(
                f"{service.url}/api/v1/log/proof",
                params={"firstSize": old["treeSize"], "lastSize": new["treeSize"]},
            ).json()
            assert proof["rootHash"] == new["rootHash"]
            merkle.verify_consistency(
                old["treeSize"],
                new["treeSize"],
                bytes.fromhex(old["rootHash"]),
                bytes.fromhex(new["rootHash"]),
                [bytes.fromhex(h) for h in proof["hashes"]],
            )
    bad = requests.get(f"{service.url}/api/v1/log/proof", params={"firstSize": 5, "lastSize": 3})
    assert bad.status_code == 400 and bad.json()["code"] == 400
    beyond = requests.get(f"{service.url}/api/v1/log/proof", params={"lastSize": 14})
    assert beyond.status_code == 400 and "beyond" in beyond.json()["message"]


def test_search_by_artifact_digest_and_retrieve(
    service: RekorService, signer: Signer, keyring: RekorKeyring
) -> None:
    artifact = b"released artifact"
    digest = hashlib.sha256(artifact).hexdigest()
    _append_v1(service, signer, b"unrelated")
    hashed, signature = signer.sign_artifact(artifact)
    v1 = RekorClient(service.url)
    v1_entry = v1.create_entry(v1._build_hashed_rekord_request(hashed, signature, signer.cert))
    v2 = RekorV2Client(service.url)
    v2_entry = v2.create_entry(v2._build_hashed_rekord_request(hashed, signature, signer.cert))
    found = requests.post(f"{service.url}/api/v1/index/retrieve", json={"hash": f"sha256:{digest}"})
    assert found.status_code == 200
    uuids = found.json()
    # v1 and v2 are separate logs: the v1 index and API never see the v2 entry
    assert len(uuids) == 1
    got = requests.get(f"{service.url}/api/v1/log/entries/{uuids[0]}").json()
    assert base64.b64decode(got[uuids[0]]["body"]) == v1_entry._inner.canonicalized_body
    assert v2_entry._inner.log_index == 0 and v1_entry._inner.log_index == 1
    v2_leaf = merkle.hash_leaf(v2_entry._inner.canonicalized_body).hex()
    assert requests.get(f"{service.url}/api/v1/log/entries/{v2_leaf}").status_code == 404
    assert (
        requests.post(f"{service.url}/api/v1/index/retrieve", json={"hash": digest}).json() == uuids
    )
    assert (
        requests.post(
            f"{service.url}/api/v1/index/retrieve", json={"hash": "sha256:" + "0" * 64}
        ).json()
        == []
    )
    listed = requests.post(
        f"{service.url}/api/v1/log/entries/retrieve",
        json={"entryUUIDs": [uuids[0]], "logIndexes": [0, 99]},
    ).json()
    assert [e[k]["logIndex"] for e in listed for k in e] == [0, 1]
    # sigstore's own search by expected entry
    client = RekorClient(service.url)
    expected = _hashedrekord_from_parts(signer.cert, signature, hashed)
    match = client.log.entries.retrieve.post(expected)
    assert match is not None and match._inner.log_index == v1_entry._inner.log_index
    match._verify(keyring)
    missing = requests.get(f"{service.url}/api/v1/log/entries/{'ab' * 32}")
    assert missing.status_code == 404 and missing.json()["code"] == 404
    # search by the signing certificate and by its email, alone and with the digest
    pem = signer.cert.public_bytes(serialization.Encoding.PEM)
    by_key = {"publicKey": {"format": "x509", "content": base64.b64encode(pem).decode()}}
    assert len(_search(service, by_key)) == 2  # "unrelated" and the artifact
    assert len(_search(service, {"email": "dev@example.com"})) == 2
    assert _search(service, {"email": "dev@example.com", "hash": digest}) == uuids
    either = {"email": "nobody@example.com", "hash": digest, "operator": "or"}
    assert _search(service, either) == uuids
    assert _search(service, {"email": "nobody@example.com", "hash": digest}) == []


def _search(service: RekorService, query: dict[str, Any]) -> list[str]:
    found = requests.post(f"{service.url}/api/v1/index/retrieve", json=query)
    assert found.status_code == 200, found.text
    result: list[str] = found.json()
    return result


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        # go-swagger validation errors are 422, as Rekor v1 answers them
        ("POST", "/api/v1/index/retrieve", {"hash": "sha256:zz"}, 422),
        ("POST", "/api/v1/index/retrieve", {"hash": "sha256:" + "0" * 63}, 422),
        ("POST", "/api/v1/index/retrieve", {"email": "not-an-email"}, 422),
        ("POST", "/api/v1/index/retrieve", {"hash": "0" * 64, "operator": "xor"}, 422),
        ("POST", "/api/v1/log/entries/retrieve", {"logIndexes": list(range(11))}, 422),
        ("POST", "/api/v1/log/entries/retrieve", {"entryUUIDs": ["ab" * 32] * 11}, 422),
        ("GET", "/api/v1/log/proof?firstSize=1", None, 422),
        ("GET", "/api/v1/log/entries?logIndex=x", None, 422),
        # rekor-tiles' grpc-gateway refuses unknown fields (InvalidArgument, 400)
        ("POST", "/api/v2/log/entries", {"hashedRekordRequestV002": {}, "extra": 1}, 400),
    ],
)
def test_requests_upstream_rejects_get_upstreams_status(
    service: RekorService, method: str, path: str, body: Any, status: int
) -> None:
    response = requests.request(method, service.url + path, json=body, timeout=10)
    assert response.status_code == status, response.text


def test_v2_refuses_unknown_fields_inside_a_valid_request(
    service: RekorService, signer: Signer
) -> None:
    client = RekorV2Client(service.url)
    hashed, signature = signer.sign_artifact(b"strict fields")
    request = client._build_hashed_rekord_request(hashed, signature, signer.cert)
    request["hashedRekordRequestV002"]["signature"]["verifier"]["comment"] = "hi"
    refused = requests.post(f"{service.url}/api/v2/log/entries", json=request)
    assert refused.status_code == 400
    assert 'unknown field "comment"' in refused.json()["message"]
    del request["hashedRekordRequestV002"]["signature"]["verifier"]["comment"]
    accepted = requests.post(f"{service.url}/api/v2/log/entries", json=request)
    assert accepted.status_code == 201, accepted.text


def test_restart_on_the_same_database_keeps_the_tree(
    tmp_path: Path, keys: LabKeys, signer: Signer
) -> None:
    db = tmp_path / "log.db"
    with RekorService(db, keys.v1, ORIGIN, keys.v2) as first:
        for i in range(5):
            _append_v1(first, signer, f"before {i}".encode())
        before = requests.get(f"{first.url}/api/v1/log").json()
    with RekorService(db, keys.v1, ORIGIN, keys.v2) as second:
        after_restart = requests.get(f"{second.url}/api/v1/log").json()
        assert {k: after_restart[k] for k in ("rootHash", "treeSize", "treeID")} == {
            k: before[k] for k in ("rootHash", "treeSize", "treeID")
        }
        entry = _append_v1(second, signer, b"after")
        assert entry._inner.log_index == 5
        proof = requests.get(
            f"{second.url}/api/v1/log/proof", params={"firstSize": 5, "lastSize": 6}
        ).json()
        merkle.verify_consistency(
            5,
            6,
            bytes.fromhex(before["rootHash"]),
            bytes.fromhex(proof["rootHash"]),
            [bytes.fromhex(h) for h in proof["hashes"]],
        )
    # a tampered database is refused at start
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE entries SET leaf_hash = ? WHERE idx = 2", (b"\x00" * 32,))
    with pytest.raises(StoreError, match="differs"):
        RekorService(db, keys.v1, ORIGIN, keys.v2)


# -- refusals -------------------------------------------------------------------------------


def test_bad_signatures_get_400_with_a_reason(
    service: RekorService, signer: Signer, keys: LabKeys
) -> None:
    hashed, _ = signer.sign_artifact(b"real")
    _, other_signature = signer.sign_artifact(b"something else")
    v1 = RekorClient(service.url)
    with pytest.raises(RekorClientError, match="400: invalid entry: signature does not verify"):
        v1.create_entry(v1._build_hashed_rekord_request(hashed, other_signature, signer.cert))
    v2 = RekorV2Client(service.url)
    request = v2._build_hashed_rekord_request(hashed, other_signature, signer.cert)
    response = requests.post(f"{service.url}/api/v2/log/entries", json=request)
    assert response.status_code == 400
    assert response.json()["code"] == 3 and "does not verify" in response.json()["message"]
    with pytest.raises(RekorClientError, match="3: invalid entry"):
        v2.create_entry(request)
    # a verifier that does not match its keyDetails
    wrong = json.loads(json.dumps(request))
    wrong["hashedRekordRequestV002"]["signature"]["verifier"]["keyDetails"] = "PKIX_ED25519"
    response = requests.post(f"{service.url}/api/v2/log/entries", json=wrong)
    assert response.status_code == 400 and "keyDetails" in response.json()["message"]
    # other kinds, junk, and nothing was logged
    rekord = {"kind": "rekord", "apiVersion": "0.0.1", "spec": {}}
    assert requests.post(f"{service.url}/api/v1/log/entries", json=rekord).status_code == 400
    junk = requests.post(f"{service.url}/api/v1/log/entries", data=b"{not json")
    assert junk.status_code == 400 and junk.json()["code"] == 400
    assert requests.get(f"{service.url}/api/v1/log").json()["treeSize"] == 0
    # five refused entries (the junk body is not an entry)
    assert _metric(requests.get(f"{service.url}/metrics").text, "rekor_rejected_entries_total") == 5


def test_duplicates_get_409_like_upstream(service: RekorService, signer: Signer) -> None:
    hashed, signature = signer.sign_artifact(b"once")
    v1 = RekorClient(service.url)
    request = v1._build_hashed_rekord_request(hashed, signature, signer.cert)
    first = requests.post(f"{service.url}/api/v1/log/entries", json=request)
    assert first.status_code == 201
    uuid = next(iter(first.json()))
    second = requests.post(f"{service.url}/api/v1/log/entries", json=request)
    assert second.status_code == 409
    assert second.headers["Location"] == f"/api/v1/log/entries/{uuid}"
    v2 = RekorV2Client(service.url)
    v2_request = v2._build_hashed_rekord_request(hashed, signature, signer.cert)
    assert requests.post(f"{service.url}/api/v2/log/entries", json=v2_request).status_code == 201
    again = requests.post(f"{service.url}/api/v2/log/entries", json=v2_request)
    assert again.status_code == 409 and again.headers["x-log-index"] == "0"  # its own log
    assert again.json()["code"] == 6


def test_health_metrics_and_unknown_paths(service: RekorService) -> None:
    health = requests.get(f"{service.url}/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    metrics = requests.get(f"{service.url}/metrics")
    assert metrics.headers["Content-Type"].startswith("text/plain")
    assert "# TYPE rekor_append_latency_seconds histogram" in metrics.text
    assert 'rekor_append_latency_seconds_bucket{le="+Inf"} 0' in metrics.text
    missing = requests.get(f"{service.url}/api/v1/nothing")
    assert missing.status_code == 404 and missing.json() == {
        "code": 404,
        "message": "path /api/v1/nothing was not found",
    }
    assert requests.delete(f"{service.url}/api/v1/log").status_code == 405
    pem = requests.get(f"{service.url}/api/v1/log/publicKey").content
    assert serialization.load_pem_public_key(pem) == service.v1.key.public_key()
    assert (
        requests.get(f"{service.url}/api/v1/log/entries", params={"logIndex": 0}).status_code == 404
    )


# -- canonical JSON -------------------------------------------------------------------------


def test_canonical_json_matches_rfc8785() -> None:
    values: list[Any] = [
        {"b": 1, "a": [True, False, None], "c": {"z": "\u20ac", "y": '\n\t"\\\x01\x7f'}},
        {"\U0001f600": 1, "\ufb01": 2, "a": 3, "\u00e9": 4},  # UTF-16 order, not code points
        {"integratedTime": 1700000000, "logIndex": 2**53 - 1, "body": "eyJ9", "logID": "ab"},
        [
            0.0,
            -0.0,
            1.0,
            -1.5,
            0.1,
            1e21,
            1e-7,
            1.2345e-7,
            123456789.125,
            5e-324,
            1.7976931348623157e308,
        ],
        [1e20, 1e-6, 0.000001234, 100.0, 2.5e-5, -3.0e30, 4.35, 333333333.33333329],
    ]
    for value in values:
        assert canonical.dumps(value) == rfc8785.dumps(value), value
    for bad in (math.nan, math.inf, 2**53, {1: "x"}, b"bytes"):
        with pytest.raises(canonical.CanonicalError):
            canonical.dumps(bad)


# -- the process ----------------------------------------------------------------------------


def _pem(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def test_the_role_runs_as_a_process_and_stops_on_sigterm(
    tmp_path: Path, keys: LabKeys, signer: Signer
) -> None:
    """`python3 -m sigstack rekor ...` with only lab/services on the path, as in the image.

    SIGSTACK_PYTHON picks the interpreter (e.g. Debian's python3 with python3-cryptography
    38, as in the image); the default is the test interpreter.
    """
    python = os.environ.get("SIGSTACK_PYTHON", sys.executable)
    (tmp_path / "rekor.key").write_bytes(_pem(keys.v1))
    (tmp_path / "rekor-v2.key").write_bytes(_pem(keys.v2))
    env = {**os.environ, "PYTHONPATH": str(SERVICES), "PYTHONUNBUFFERED": "1"}
    args = [
        python,
        "-m",
        "sigstack",
        "rekor",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--db",
        str(tmp_path / "db" / "log.db"),
        "--key",
        str(tmp_path / "rekor.key"),
        "--key-v2",
        str(tmp_path / "rekor-v2.key"),
        "--origin",
        ORIGIN,
    ]
    printed = subprocess.run([*args, "--print-log-ids"], env=env, capture_output=True, timeout=30)
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == log_ids(keys.v1, keys.v2, ORIGIN)
    proc = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path
    )
    try:
        assert proc.stdout is not None
        port = None
        deadline = time.monotonic() + 20
        while port is None and time.monotonic() < deadline:
            line = proc.stdout.readline().decode()
            if "listening on" in line:
                port = int(line.rsplit(":", 1)[1])
        assert port is not None, proc.stderr.read() if proc.stderr else ""
        url = f"http://127.0.0.1:{port}"
        health = requests.get(f"{url}/healthz", timeout=5)
        assert health.status_code == 200
        line = proc.stdout.readline().decode()
        assert '"GET /healthz" 200' in line
        keyring = _trusted_root(keys, url).rekor_keyring(KeyringPurpose.VERIFY)
        hashed, signature = signer.sign_artifact(b"through the process")
        for client in (RekorClient(url), RekorV2Client(url)):
            request = client._build_hashed_rekord_request(hashed, signature, signer.cert)
            client.create_entry(request)._verify(keyring)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    bad = subprocess.run(
        [sys.executable, "-m", "sigstack", "nope"], env=env, capture_output=True, timeout=30
    )
    assert bad.returncode == 2 and b"usage" in bad.stderr
    no_key = subprocess.run(
        [*args[:-6], "--key", str(tmp_path / "missing.key")],
        env=env,
        capture_output=True,
        timeout=30,
    )
    assert no_key.returncode == 2 and b"rekor:" in no_key.stderr
