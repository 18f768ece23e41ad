"""lab.oci against the lab's real registry (distribution 2.8) through the fault proxy."""

from __future__ import annotations

import json
import os
import statistics
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from lab.errors import RegistryError
from lab.oci import (
    EMPTY_DESCRIPTOR,
    OCI_INDEX,
    OCI_MANIFEST,
    Blob,
    ImageManifest,
    OciClient,
    digest_of,
    referrers_tag,
)

pytestmark = pytest.mark.integration

SPDX = "application/spdx+json"
VEX = "application/vnd.openvex+json"
_CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
_LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"


def _auth(lab: Any) -> tuple[str, str] | None:
    credentials = getattr(lab, "registry_credentials", None)
    return None if credentials is None else (credentials.username, credentials.password)


@pytest.fixture
def client(lab: Any) -> Iterator[OciClient]:
    with OciClient(lab.endpoints.registry_url, auth=_auth(lab)) as the_client:
        yield the_client


@pytest.fixture
def repo() -> str:
    """A fresh repository per test: the lab's registry lives for the whole session."""
    return f"cihub-tests/oci-{uuid.uuid4().hex[:12]}"


def _push_image(client: OciClient, repo: str, layer: bytes) -> tuple[bytes, str]:
    """Push a one-layer image; return its manifest bytes (indented, not canonical) and digest."""
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": _CONFIG_TYPE,
            "digest": client.push_blob(repo, config),
            "size": len(config),
        },
        "layers": [
            {"mediaType": _LAYER_TYPE, "digest": client.push_blob(repo, layer), "size": len(layer)}
        ],
    }
    manifest = json.dumps(document, indent=3).encode()
    return manifest, client.push_manifest(repo, manifest, OCI_MANIFEST)


def test_blob_round_trip_through_the_proxy(client: OciClient, repo: str) -> None:
    data = os.urandom(256 * 1024)
    digest = client.push_blob(repo, data)
    assert digest == digest_of(data)
    assert client.blob_exists(repo, digest)
    assert client.pull_blob(repo, digest) == data
    assert client.push_blob(repo, data) == digest  # already there: HEAD only


def test_manifest_round_trip_by_digest_and_tag(client: OciClient, repo: str) -> None:
    manifest, digest = _push_image(client, repo, os.urandom(4096))
    assert digest == digest_of(manifest)
    pulled = client.pull_manifest(repo, digest)
    assert pulled.data == manifest  # the registry kept our exact bytes
    assert (pulled.media_type, pulled.digest) == (OCI_MANIFEST, digest)

    client.tag(repo, digest, "v1")
    assert client.pull_manifest(repo, "v1") == pulled
    assert client.resolve(repo, "v1").digest == digest


def test_referrer_is_listed_through_the_tag_schema_fallback(
    lab: Any, client: OciClient, repo: str
) -> None:
    manifest, subject = _push_image(client, repo, b"subject layer")
    sbom = Blob(SPDX, b'{"spdxVersion": "SPDX-2.3"}')
    referrer = client.attach_referrer(
        repo, subject, OCI_MANIFEST, len(manifest), SPDX, [sbom], {"org.cihub.kind": "sbom"}
    )

    listed = client.list_referrers(repo, subject)
    assert [(d.digest, d.artifact_type) for d in listed] == [(referrer, SPDX)]
    assert dict(listed[0].annotations) == {"org.cihub.kind": "sbom"}

    # distribution 2.8 has no referrers API; the index lives under the tag sha256-<hex>.
    base = lab.endpoints.registry_url
    api = requests.get(f"{base}/v2/{repo}/referrers/{subject}", auth=_auth(lab), timeout=5)
    assert api.status_code == 404
    tags = requests.get(f"{base}/v2/{repo}/tags/list", auth=_auth(lab), timeout=5).json()
    assert referrers_tag(subject) in tags["tags"]
    index = client.pull_manifest(repo, referrers_tag(subject), accept=OCI_INDEX)
    assert index.media_type == OCI_INDEX

    pushed = ImageManifest.from_json(client.pull_manifest(repo, referrer).data)
    assert pushed.subject is not None and pushed.subject.digest == subject
    assert pushed.artifact_type == SPDX
    assert pushed.config == EMPTY_DESCRIPTOR
    assert client.pull_blob(repo, pushed.layers[0].digest) == sbom.data


def test_two_referrers_on_one_subject_are_both_listed(client: OciClient, repo: str) -> None:
    manifest, subject = _push_image(client, repo, b"two referrers")
    first = client.attach_referrer(repo, subject, OCI_MANIFEST, len(manifest), SPDX)
    second = client.attach_referrer(repo, subject, OCI_MANIFEST, len(manifest), VEX)
    again = client.attach_referrer(repo, subject, OCI_MANIFEST, len(manifest), SPDX)
    assert again == first
    listed = client.list_referrers(repo, subject)
    assert sorted(d.digest for d in listed) == sorted([first, second])
    assert {d.digest: d.artifact_type for d in listed} == {first: SPDX, second: VEX}


def test_referrers_filtered_by_artifact_type(client: OciClient, repo: str) -> None:
    manifest, subject = _push_image(client, repo, b"filtered")
    sbom = client.attach_referrer(repo, subject, OCI_MANIFEST, len(manifest), SPDX)
    vex = client.attach_referrer(repo, subject, OCI_MANIFEST, len(manifest), VEX)
    assert [d.digest for d in client.list_referrers(repo, subject, SPDX)] == [sbom]
    assert [d.digest for d in client.list_referrers(repo, subject, VEX)] == [vex]
    assert client.list_referrers(repo, subject, "application/x-none") == []


def _median_get_seconds(url: str, auth: tuple[str, str] | None, count: int = 5) -> float:
    """Median time of `GET /v2/`, each on a new connection (requests.get: a new session)."""
    timings = []
    for _ in range(count):
        started = time.perf_counter()
        response = requests.get(f"{url}/v2/", auth=auth, timeout=10)
        timings.append(time.perf_counter() - started)
        assert response.status_code == 200
    return statistics.median(timings)


def test_latency_toxic_delays_registry_request(lab: Any) -> None:
    url, auth = lab.endpoints.registry_url, _auth(lab)
    base = _median_get_seconds(url, auth)
    with lab.toxiproxy.toxic("registry", "latency", {"latency": 300}, stream="downstream"):
        delayed = _median_get_seconds(url, auth)
    restored = _median_get_seconds(url, auth)
    assert delayed >= base + 0.250, f"base {base:.3f}s, with 300 ms latency {delayed:.3f}s"
    assert restored < base + 0.150, f"base {base:.3f}s, after removing it {restored:.3f}s"


def test_reset_peer_breaks_upload_clearly(lab: Any, client: OciClient, repo: str) -> None:
    data = os.urandom(1 << 20)
    digest = digest_of(data)
    with (
        lab.toxiproxy.toxic("registry", "reset_peer", {"timeout": 0}, stream="upstream"),
        pytest.raises(RegistryError) as info,
    ):
        client.push_blob(repo, data)
    message = str(info.value)
    assert "connection reset by peer" in message, message
    assert f"uploading blob {digest} to {lab.endpoints.registry_url}/v2/{repo}" in message
    assert "\n" not in message

    assert client.push_blob(repo, data) == digest
    assert client.pull_blob(repo, digest) == data
