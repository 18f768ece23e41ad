"""Unit tests of lab.oci: digests, uploads, referrers (API and tag-schema fallback), errors."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from responses import matchers

from lab.errors import RegistryError
from lab.oci import (
    EMPTY_DESCRIPTOR,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    Blob,
    Descriptor,
    ImageIndex,
    ImageManifest,
    OciClient,
    PulledManifest,
    digest_of,
    referrers_tag,
)

BASE = "http://registry.test:5000"
REPO = "demo/app"
WHERE = f"{BASE}/v2/{REPO}"
SPDX = "application/spdx+json"
VEX = "application/vnd.openvex+json"
SUBJECT_BYTES = b'{"schemaVersion": 2, "note": "not canonical  JSON"}'
SUBJECT = digest_of(SUBJECT_BYTES)


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _body(call: Any) -> bytes:
    body = call.request.body
    if hasattr(body, "read"):
        body = body.read()
    return body.encode() if isinstance(body, str) else bytes(body)


def _query(call: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


def _index(*entries: Descriptor, **extra: Any) -> bytes:
    document = {"schemaVersion": 2, "mediaType": OCI_INDEX, **extra}
    document["manifests"] = [entry.to_json() for entry in entries]
    return json.dumps(document).encode()


def _referrer(artifact_type: str, seed: bytes) -> Descriptor:
    return Descriptor(OCI_MANIFEST, _sha(seed), 321, artifact_type, {"k": seed.decode()})


@pytest.fixture
def client() -> Iterator[OciClient]:
    with OciClient(BASE, timeout=2.0, retries=1) as the_client:
        yield the_client


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


def _manifest_put(mocked: responses.RequestsMock, reference: str, **headers: str) -> None:
    mocked.put(f"{WHERE}/manifests/{reference}", status=201, headers=headers)


_ANY_MANIFEST_BY_DIGEST = re.compile(rf"{re.escape(WHERE)}/manifests/sha256:[0-9a-f]{{64}}$")


def _any_manifest_put(mocked: responses.RequestsMock, **headers: str) -> None:
    mocked.add_callback(
        responses.PUT, _ANY_MANIFEST_BY_DIGEST, callback=lambda request: (201, headers, b"")
    )


# -- digests and data types ----------------------------------------------------------------


def test_digest_of_is_the_sha256_of_the_exact_bytes() -> None:
    assert digest_of(b"{}") == EMPTY_DESCRIPTOR.digest == _sha(b"{}")
    assert digest_of(b"x", "sha512").startswith("sha512:")
    with pytest.raises(ValueError, match="unsupported digest algorithm"):
        digest_of(b"x", "md5")


def test_referrers_tag_replaces_the_colon() -> None:
    assert referrers_tag(SUBJECT) == SUBJECT.replace(":", "-")
    with pytest.raises(ValueError, match="not an OCI digest"):
        referrers_tag("latest")


def test_descriptor_round_trips_through_json() -> None:
    raw = {
        "mediaType": OCI_MANIFEST,
        "digest": SUBJECT,
        "size": 12,
        "artifactType": SPDX,
        "annotations": {"a": "b"},
        "platform": {"os": "linux"},
    }
    descriptor = Descriptor.from_json(json.dumps(raw).encode())
    assert descriptor == Descriptor(OCI_MANIFEST, SUBJECT, 12, SPDX, {"a": "b"})
    assert descriptor.to_json() == {k: v for k, v in raw.items() if k != "platform"}
    assert Descriptor(OCI_EMPTY, SUBJECT, 2).to_json() == {
        "mediaType": OCI_EMPTY,
        "digest": SUBJECT,
        "size": 2,
    }
    assert hash(descriptor) == hash(Descriptor(OCI_MANIFEST, SUBJECT, 12, SPDX))
    with pytest.raises(TypeError):
        descriptor.annotations["c"] = "d"  # type: ignore[index]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"mediaType": OCI_MANIFEST, "size": 1}, "lacks digest"),
        ({"mediaType": OCI_MANIFEST, "digest": "sha256:abc", "size": 1}, "not a sha256 digest"),
        ({"mediaType": OCI_MANIFEST, "digest": SUBJECT, "size": -1}, "non-negative"),
        ({"mediaType": OCI_MANIFEST, "digest": SUBJECT, "size": True}, "non-negative"),
        ({"mediaType": "", "digest": SUBJECT, "size": 1}, "mediaType"),
        ({"mediaType": "x", "digest": SUBJECT, "size": 1, "annotations": {"a": 1}}, "annotations"),
    ],
)
def test_descriptor_rejects_malformed_json(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Descriptor.from_json(raw)


def test_manifest_and_index_parse_subject_and_artifact_type() -> None:
    subject = Descriptor(OCI_MANIFEST, SUBJECT, len(SUBJECT_BYTES))
    manifest = ImageManifest.from_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": SPDX,
            "config": EMPTY_DESCRIPTOR.to_json(),
            "layers": [EMPTY_DESCRIPTOR.to_json()],
            "subject": subject.to_json(),
        }
    )
    assert manifest.subject == subject
    assert manifest.artifact_type == SPDX
    assert manifest.layers == (EMPTY_DESCRIPTOR,)
    index = ImageIndex.from_json(_index(_referrer(SPDX, b"a")))
    assert [d.artifact_type for d in index.manifests] == [SPDX]
    with pytest.raises(ValueError, match="manifests list"):
        ImageIndex.from_json(b'{"schemaVersion": 2}')
    with pytest.raises(ValueError, match="not JSON"):
        ImageManifest.from_json(b"{")


def test_client_validates_its_arguments() -> None:
    with pytest.raises(ValueError, match="http"):
        OciClient("registry.test:5000")
    with pytest.raises(ValueError, match="timeout"):
        OciClient(BASE, timeout=0)
    client = OciClient(BASE)
    with pytest.raises(ValueError, match="repository"):
        client.pull_blob("Bad Repo", SUBJECT)
    with pytest.raises(ValueError, match="tag or digest"):
        client.pull_manifest(REPO, "bad tag!")


# -- blobs ---------------------------------------------------------------------------------


def test_push_blob_skips_the_upload_when_the_registry_has_it(
    client: OciClient, mocked: responses.RequestsMock
) -> None:
    data = b"already there"
    mocked.head(f"{WHERE}/blobs/{_sha(data)}", status=200)
    assert client.push_blob(REPO, data) == _sha(data)
    assert len(mocked.calls) == 1


@pytest.mark.parametrize("absolute", [False, True])
def test_push_blob_posts_then_puts_the_exact_bytes_with_the_digest(
    client: OciClient, mocked: responses.RequestsMock, absolute: bool
) -> None:
    data = b"\x00\x01 layer bytes"
    digest = _sha(data)
    location = "/v2/demo/app/blobs/uploads/u-1?_state=abc"
    mocked.head(f"{WHERE}/blobs/{digest}", status=404)
    mocked.post(
        f"{WHERE}/blobs/uploads/",
        status=202,
        headers={"Location": BASE + location if absolute else location},
    )
    mocked.put(
        f"{WHERE}/blobs/uploads/u-1",
        status=201,
        headers={"Docker-Content-Digest": digest},
        match=[matchers.query_param_matcher({"_state": "abc", "digest": digest})],
    )
    assert client.push_blob(REPO, data) == digest
    put = mocked.calls[2]
    assert _body(put) == data
    assert put.request.headers["Content-Type"] == "application/octet-stream"


def test_push_blob_streams_a_file_from_any_folder(
    client: OciClient, mocked: responses.RequestsMock, tmp_path: Path
) -> None:
    data = b"file content" * 1000
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    digest = _sha(data)
    mocked.head(f"{WHERE}/blobs/{digest}", status=404)
    mocked.post(f"{WHERE}/blobs/uploads/", status=202, headers={"Location": "/up/1"})
    mocked.put(f"{BASE}/up/1", status=201, headers={"Docker-Content-Digest": digest})
    assert client.push_blob(REPO, path) == digest
    assert _body(mocked.calls[2]) == data


def test_push_blob_of_a_missing_file_names_it(client: OciClient, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match=r"cannot read .*missing\.bin"):
        client.push_blob(REPO, tmp_path / "missing.bin")


def test_push_blob_rejects_a_different_stored_digest(
    client: OciClient, mocked: responses.RequestsMock
) -> None:
    data = b"blob"
    mocked.head(f"{WHERE}/blobs/{_sha(data)}", status=404)
    mocked.post(f"{WHERE}/blobs/uploads/", status=202, headers={"Location": "/up/1"})
    mocked.put(f"{BASE}/up/1", status=201, headers={"Docker-Content-Digest": _sha(b"other")})
    with pytest.raises(RegistryError, match=r"stored sha256:[0-9a-f]{64}, not the pushed digest"):
        client.push_blob(REPO, data)


def test_push_blob_error_names_the_status_code_and_registry(
    client: OciClient, mocked: responses.RequestsMock
) -> None:
    data = b"blob"
    mocked.head(f"{WHERE}/blobs/{_sha(data)}", status=404)
    mocked.post(f"{WHERE}/blobs/uploads/", status=202, headers={"Location": "/up/1"})
    error = {"errors": [{"code": "DIGEST_INVALID", "message": "provided digest did not match"}]}
    mocked.put(f"{BASE}/up/1", status=400, json=error)
    with pytest.raises(RegistryError) as info:
        client.push_blob(REPO, data)
    message = str(info.value)
    assert message == (
        "HTTP 400 DIGEST_INVALID (provided digest did not match) while uploading blob "
        f"{_sha(data)} to {WHERE} (sending 4 bytes)"
    )
    assert "\n" not in message


def test_pull_blob_verifies_the_digest(client: OciClient, mocked: responses.RequestsMock) -> None:
    digest = _sha(b"good")
    mocked.get(f"{WHERE}/blobs/{digest}", body=b"good")
    assert client.pull_blob(REPO, digest) == b"good"
    mocked.get(f"{WHERE}/blobs/{digest}", body=b"evil")
    with pytest.raises(RegistryError, match=r"content digest sha256:\w+ does not match"):
        client.pull_blob(REPO, digest)


def test_a_missing_blob_names_url_repo_digest_and_status(
    client: OciClient, mocked: responses.RequestsMock
) -> None:
    error = {"errors": [{"code": "BLOB_UNKNOWN", "message": "blob unknown to registry"}]}
    mocked.get(f"{WHERE}/blobs/{SUBJECT}", status=404, json=error)
    with pytest.raises(RegistryError) as info:
        client.pull_blob(REPO, SUBJECT)
    assert str(info.value) == (
        f"HTTP 404 BLOB_UNKNOWN (blob unknown to registry) while pulling blob {SUBJECT} "
        f"from {WHERE}"
    )


# -- manifests -----------------------------------------------------------------------------


def test_push_manifest_puts_the_exact_bytes_by_digest(
    client: OciClient, mocked: responses.RequestsMock
) -> None:
    _manifest_put(mocked, SUBJECT, **{"Docker-Content-Digest": SUBJECT})
    assert client.push_manifest(REPO, SUBJECT_BYTES, OCI_MANIFEST) == SUBJECT
    assert _body(mocked.calls[0]) == SUBJECT_BYTES
    assert mocked.calls[0].request.headers["Content-Type"] == OCI_MANIFEST


def test_push_manifest_by_tag_and_guards(client: OciClient, mocked: responses.RequestsMock) -> None:
    _manifest_put(mocked, "v1")
    assert client.push_manifest(REPO, SUBJECT_BYTES, OCI_MANIFEST, reference="v1") == SUBJECT
    with pytest.raises(ValueError, match="is not the manifest's digest"):
        client.push_manifest(REPO, SUBJECT_BYTES, OCI_MANIFEST, reference=_sha(b"x"))
    with pytest.raises(TypeError, match="bytes"):
        client.push_manifest(REPO, {"a": 1}, OCI_MANIFEST)  # type: ignore[arg-type]


def test_push_manifest_rejects_a_different_stored_digest(
    client: OciClient, mocked: responses.RequestsMock
) -> None:
    _manifest_put(mocked, SUBJECT, **{"Docker-Content-Digest": _sha(b"other")})
    with pytest.raises(RegistryError, match="the registry stored"):
        client.push_manifest(REPO, SUBJECT_BYTES, OCI_MANIFEST)


def test_pull_manifest_by_digest_verifies_and_keeps_bytes(
    client: OciClient, mocked: responses.RequestsMock
) -> None:
    mocked.get(
        f"{WHERE}/manifests/{SUBJECT}",
        body=SUBJECT_BYTES,
        headers={"Content-Type": OCI_MANIFEST},
        match=[matchers.header_matcher({"Accept": OCI_MANIFEST})],
    )
    pulled = client.pull_manifest(REPO, SUBJECT, accept=OCI_MANIFEST)
    assert pulled == PulledManifest(SUBJECT_BYTES, OCI_MANIFEST, SUBJECT)
    data, media_type, digest = pulled
    assert pulled.descriptor() == Descriptor(media_type, digest, len(data))

    mocked.get(f"{WHERE}/manifests/{SUBJECT}", body=SUBJECT_BYTES + b" ")
    with pytest.raises(RegistryError, match="does not match while pulling manifest"):
        client.pull_manifest(REPO, SUBJECT)


def test_pull_manifest_by_tag_checks_the_registry_digest(
    client: OciClient, mocked: responses.RequestsMock
) -> None:
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode()
    mocked.get(f"{WHERE}/manifests/v1", body=body, headers={"Content-Type": "application/json"})
    pulled = client.pull_manifest(REPO, "v1")
    assert (pulled.media_type, pulled.digest) == (OCI_INDEX, _sha(body))
    mocked.get(f"{WHERE}/manifests/v2", body=body, headers={"Docker-Content-Digest": SUBJECT})
    with pytest.raises(RegistryError, match="differs from the registry's"):
        client.pull_manifest(REPO, "v2")


def test_tag_pushes_the_pulled_bytes_under_the_tag(
    client: OciClient, mocked: responses.RequestsMock
) -> None:
    mocked.get(
        f"{WHERE}/manifests/{SUBJECT}", body=SUBJECT_BYTES, headers={"Content-Type": OCI_MANIFEST}
    )
    _manifest_put(mocked, "release-1", **{"Docker-Content-Digest": SUBJECT})
    client.tag(REPO, SUBJECT, "release-1")
    assert _body(mocked.calls[1]) == SUBJECT_BYTES
    assert mocked.calls[1].request.headers["Content-Type"] == OCI_MANIFEST


# -- referrers -----------------------------------------------------------------------------


def _expect_empty_blob_present(mocked: responses.RequestsMock) -> None:
    mocked.head(f"{WHERE}/blobs/{EMPTY_DESCRIPTOR.digest}", status=200)


def _pushed_manifest(mocked: responses.RequestsMock) -> tuple[str, dict[str, Any], bytes]:
    put = next(
        c
        for c in mocked.calls
        if c.request.method == "PUT" and "/manifests/sha256:" in str(c.request.url)
    )
    body = _body(put)
    return str(put.request.url).rsplit("/", 1)[1], json.loads(body), body


def test_attach_referrer_builds_an_artifact_manifest_and_pushes_it_by_digest(
    client: OciClient, mocked: responses.RequestsMock
) -> None:
    layer = Blob(SPDX, b'{"spdxVersion": "SPDX-2.3"}', {"org.opencontainers.image.title": "sbom"})
    _expect_empty_blob_present(mocked)
    mocked.head(f"{WHERE}/blobs/{layer.digest}", status=200)
    _any_manifest_put(mocked, **{"OCI-Subject": SUBJECT})
    digest = client.attach_referrer(
        REPO, SUBJECT, OCI_MANIFEST, len(SUBJECT_BYTES), SPDX, [layer], {"created": "now"}
    )
    reference, document, body = _pushed_manifest(mocked)
    assert reference == digest == _sha(body)
    assert document == {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SPDX,
        "config": {"mediaType": OCI_EMPTY, "digest": EMPTY_DESCRIPTOR.digest, "size": 2},
        "layers": [layer.descriptor().to_json()],
        "subject": {"mediaType": OCI_MANIFEST, "digest": SUBJECT, "size": len(SUBJECT_BYTES)},
        "annotations": {"created": "now"},
    }
    # OCI-Subject answered: the registry keeps the referrers list, no tag-schema index calls.
    assert len(mocked.calls) == 3


def test_attach_referrer_without_layers_uses_the_empty_descriptor(
    client: OciClient, mocked: responses.RequestsMock
) -> None:
    mocked.head(f"{WHERE}/blobs/{EMPTY_DESCRIPTOR.digest}", status=404)
    mocked.post(f"{WHERE}/blobs/uploads/", status=202, headers={"Location": "/up/1"})
    mocked.put(f"{BASE}/up/1", status=201)
    _any_manifest_put(mocked, **{"OCI-Subject": SUBJECT})
    client.attach_referrer(REPO, SUBJECT, OCI_MANIFEST, 10, VEX)
    assert _body(mocked.calls[2]) == b"{}"
    _, document, _ = _pushed_manifest(mocked)
    assert document["layers"] == [EMPTY_DESCRIPTOR.to_json()]
    assert "annotations" not in document


def test_attach_referrer_creates_the_tag_schema_index_when_absent(
    client: OciClient, mocked: responses.RequestsMock
) -> None:
    tag = referrers_tag(SUBJECT)
    _expect_empty_blob_present(mocked)
    _any_manifest_put(mocked)  # no OCI-Subject header: the fallback is ours to maintain
    mocked.get(
        f"{WHERE}/manifests/{tag}",
        status=404,
        json={"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]},
        match=[matchers.header_matcher({"Accept": OCI_INDEX})],
    )
    _manifest_put(mocked, tag)
    digest = client.attach_referrer(REPO, SUBJECT, OCI_MANIFEST, 10, SPDX, annotations={"a": "b"})
    _, _, referrer_body = _pushed_manifest(mocked)
    put_index = mocked.calls[-1]
    assert put_index.request.headers["Content-Type"] == OCI_INDEX
    assert json.loads(_body(put_index)) == {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": digest,
                "size": len(referrer_body),
                "artifactType": SPDX,
                "annotations": {"a": "b"},
            }
        ],
    }


def test_attach_referrer_adds_to_an_existing_index_keeping_what_is_there(
    client: OciClient, mocked: responses.RequestsMock
) -> None:
    tag = referrers_tag(SUBJECT)
    other = _referrer(VEX, b"vex")
    existing = _index(other, annotations={"keep": "me"})
    _expect_empty_blob_present(mocked)
    _any_manifest_put(mocked)
    mocked.get(f"{WHERE}/manifests/{tag}", body=existing, headers={"Content-Type": OCI_INDEX})
    _manifest_put(mocked, tag)
    digest = client.attach_referrer(REPO, SUBJECT, OCI_MANIFEST, 10, SPDX)
    written = json.loads(_body(mocked.calls[-1]))
    assert written["annotations"] == {"keep": "me"}
    assert [entry["digest"] for entry in written["manifests"]] == [other.digest, digest]


def test_attach_referrer_does_not_duplicate_an_entry(
    client: OciClient, mocked: responses.RequestsMock
) -> None:
    tag = referrers_tag(SUBJECT)
    _expect_empty_blob_present(mocked)
    _any_manifest_put(mocked)
    mocked.get(f"{WHERE}/manifests/{tag}", status=404)
    _manifest_put(mocked, tag)
    digest = client.attach_referrer(REPO, SUBJECT, OCI_MANIFEST, 10, SPDX)
    index_bytes = _body(mocked.calls[-1])

    mocked.get(f"{WHERE}/manifests/{tag}", body=index_bytes, headers={"Content-Type": OCI_INDEX})
    calls_before = len(mocked.calls)
    assert client.attach_referrer(REPO, SUBJECT, OCI_MANIFEST, 10, SPDX) == digest
    new_calls = [c.request.method for c in mocked.calls[calls_before:]]
    assert new_calls == ["HEAD", "PUT", "GET"]  # no second PUT of the index


def test_attach_referrer_refuses_a_tag_that_is_not_an_index(
    client: OciClient, mocked: responses.RequestsMock
) -> None:
    tag = referrers_tag(SUBJECT)
    _expect_empty_blob_present(mocked)
    _any_manifest_put(mocked)
    mocked.get(
        f"{WHERE}/manifests/{tag}", body=SUBJECT_BYTES, headers={"Content-Type": OCI_MANIFEST}
    )
    with pytest.raises(RegistryError, match=f"not an OCI image index, while updating .*{tag}"):
        client.attach_referrer(REPO, SUBJECT, OCI_MANIFEST, 10, SPDX)


def test_list_referrers_uses_the_api_and_trusts_an_applied_filter(
    client: OciClient, mocked: responses.RequestsMock
) -> None:
    sbom = _referrer(SPDX, b"sbom")
    mocked.get(
        f"{WHERE}/referrers/{SUBJECT}",
        body=_index(sbom),
        headers={"Content-Type": OCI_INDEX, "OCI-Filters-Applied": "artifactType"},
        match=[matchers.query_param_matcher({"artifactType": SPDX})],
    )
    assert client.list_referrers(REPO, SUBJECT, SPDX) == [sbom]


def test_list_referrers_filters_when_the_server_did_not(
    client: OciClient, mocked: responses.RequestsMock
) -> None:
    sbom, vex = _referrer(SPDX, b"sbom"), _referrer(VEX, b"vex")
    mocked.get(f"{WHERE}/referrers/{SUBJECT}", body=_index(sbom, vex))
    assert client.list_referrers(REPO, SUBJECT, VEX) == [vex]


def test_list_referrers_follows_next_links(
    client: OciClient, mocked: responses.RequestsMock
) -> None:
    sbom, vex = _referrer(SPDX, b"sbom"), _referrer(VEX, b"vex")
    mocked.get(
        f"{WHERE}/referrers/{SUBJECT}",
        body=_index(sbom),
        headers={"Link": f'</v2/{REPO}/referrers/{SUBJECT}?n=1&last=x>; rel="next"'},
        match=[matchers.query_param_matcher({})],
    )
    mocked.get(
        f"{WHERE}/referrers/{SUBJECT}",
        body=_index(vex),
        match=[matchers.query_param_matcher({"n": "1", "last": "x"})],
    )
    assert client.list_referrers(REPO, SUBJECT) == [sbom, vex]


def test_list_referrers_falls_back_to_the_tag_schema_on_404(
    client: OciClient, mocked: responses.RequestsMock
) -> None:
    sbom, vex = _referrer(SPDX, b"sbom"), _referrer(VEX, b"vex")
    mocked.get(f"{WHERE}/referrers/{SUBJECT}", status=404, body=b"404 page not found\n")
    mocked.get(
        f"{WHERE}/manifests/{referrers_tag(SUBJECT)}",
        body=_index(sbom, vex),
        headers={"Content-Type": OCI_INDEX},
    )
    assert client.list_referrers(REPO, SUBJECT) == [sbom, vex]
    assert client.list_referrers(REPO, SUBJECT, SPDX) == [sbom]
    assert _query(mocked.calls[2]) == {"artifactType": [SPDX]}


def test_list_referrers_without_api_or_tag_is_empty(
    client: OciClient, mocked: responses.RequestsMock
) -> None:
    mocked.get(f"{WHERE}/referrers/{SUBJECT}", status=404)
    mocked.get(f"{WHERE}/manifests/{referrers_tag(SUBJECT)}", status=404)
    assert client.list_referrers(REPO, SUBJECT) == []


def test_list_referrers_reports_a_malformed_list(
    client: OciClient, mocked: responses.RequestsMock
) -> None:
    mocked.get(f"{WHERE}/referrers/{SUBJECT}", body=b'{"schemaVersion": 2, "manifests": [{}]}')
    with pytest.raises(RegistryError, match=f"malformed referrers list .* of {SUBJECT} in {WHERE}"):
        client.list_referrers(REPO, SUBJECT)


# -- auth ----------------------------------------------------------------------------------


def test_basic_auth_is_sent_and_never_shown(
    mocked: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = OciClient(BASE, auth=("ci", "s3cret-pw"))
    mocked.get(f"{BASE}/v2/", status=401, json={"errors": [{"code": "UNAUTHORIZED"}]})
    with pytest.raises(RegistryError) as info:
        client.ping()
    assert mocked.calls[0].request.headers["Authorization"].startswith("Basic ")
    assert "HTTP 401 UNAUTHORIZED" in str(info.value)
    shown = str(info.value) + repr(client) + caplog.text
    assert "s3cret-pw" not in shown
    assert "ci" in repr(client)


def test_a_bearer_challenge_is_answered_once_with_a_token(
    mocked: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = OciClient(BASE, auth=("ci", "s3cret-pw"))
    challenge = 'Bearer realm="http://auth.test/token",service="registry.test",scope="repository:demo/app:pull"'
    mocked.get(f"{WHERE}/blobs/{_sha(b'b')}", status=401, headers={"WWW-Authenticate": challenge})
    mocked.get(
        "http://auth.test/token",
        json={"token": "tok-123"},
        match=[
            matchers.query_param_matcher(
                {"service": "registry.test", "scope": "repository:demo/app:pull"}
            )
        ],
    )
    mocked.get(
        f"{WHERE}/blobs/{_sha(b'b')}",
        body=b"b",
        match=[matchers.header_matcher({"Authorization": "Bearer tok-123"})],
    )
    assert client.pull_blob(REPO, _sha(b"b")) == b"b"
    assert mocked.calls[1].request.headers["Authorization"].startswith("Basic ")
    assert "tok-123" not in caplog.text and "s3cret-pw" not in caplog.text


def test_a_refused_token_is_a_registry_error(mocked: responses.RequestsMock) -> None:
    client = OciClient(BASE)
    mocked.get(
        f"{BASE}/v2/", status=401, headers={"WWW-Authenticate": 'Bearer realm="http://a.test/t"'}
    )
    mocked.get("http://a.test/t", status=403)
    with pytest.raises(RegistryError, match=r"token realm http://a.test/t answered HTTP 403"):
        client.ping()


# -- retries and connection failures -------------------------------------------------------


def test_get_is_retried_on_503_but_post_is_not(mocked: responses.RequestsMock) -> None:
    client = OciClient(BASE, retries=2)
    mocked.get(f"{BASE}/v2/", status=503)
    mocked.get(f"{BASE}/v2/", status=200)
    client.ping()
    mocked.head(f"{WHERE}/blobs/{_sha(b'p')}", status=404)
    mocked.post(f"{WHERE}/blobs/uploads/", status=503)
    with pytest.raises(RegistryError, match=r"HTTP 503 .*starting the upload"):
        client.push_blob(REPO, b"p")
    assert [c.request.method for c in mocked.calls].count("POST") == 1


def test_persistent_503_on_get_fails_after_the_retries(mocked: responses.RequestsMock) -> None:
    client = OciClient(BASE, retries=2)
    mocked.get(f"{BASE}/v2/", status=503, body=b"down for maintenance")
    with pytest.raises(RegistryError, match=r"HTTP 503 \(down for maintenance\)"):
        client.ping()
    assert len(mocked.calls) == 3


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_dead_registry_fails_fast_with_a_clear_error() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    with pytest.raises(RegistryError) as info:
        OciClient(url, retries=2).push_blob("demo", b"data")
    assert time.monotonic() - started < 20
    assert str(info.value).startswith(f"connection refused while uploading blob {_sha(b'data')}")
    assert f"to {url}/v2/demo" in str(info.value)
    assert isinstance(info.value.__cause__, OSError)


def test_a_registry_that_never_answers_times_out() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(RegistryError, match="timed out waiting for a response"):
            OciClient(url, timeout=0.3, retries=1).ping()
        assert time.monotonic() - started < 20


class _ResettingRegistry(BaseHTTPRequestHandler):
    """Answers HEAD 404 and POST 202, then resets the connection instead of taking the PUT."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        self.send_response(202)
        self.send_header("Location", "/v2/demo/blobs/uploads/u-1?_state=s")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_PUT(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()


@pytest.fixture
def resetting_registry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ResettingRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("size", [16, 1 << 20])
def test_a_reset_during_upload_says_so(resetting_registry: str, size: int) -> None:
    data = bytes(size)
    with pytest.raises(RegistryError) as info:
        OciClient(resetting_registry).push_blob("demo", data)
    assert str(info.value) == (
        f"connection reset by peer while uploading blob {_sha(data)} to "
        f"{resetting_registry}/v2/demo (sending {size} bytes)"
    )
