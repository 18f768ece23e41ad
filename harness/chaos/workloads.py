"""Chaos workloads: the release traffic a fault hits (registry pushes, signings, log appends).

Actions an experiment runs in its method, alone or in the background next to a fault. Each one
checks its own result and raises `ActivityFailed` when the release would have been harmed: a
digest that does not match, a signature bundle without an inclusion proof, a client that did not
give up within its bound or gave up silently.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
from chaoslib.exceptions import ActivityFailed  # type: ignore[import-untyped]
from sigstore.errors import Error as SigstoreError
from sigstore.models import Bundle, ClientTrustConfig
from sigstore.verify import Verifier, policy

from harness._internal.lab_signer import caller_lab
from harness.chaos.actions import Configuration
from harness.chaos.vars import need
from harness.errors import CihubError
from lab.config import DEFAULT_IDENTITY, DEFAULT_ISSUER
from lab.errors import LabError
from lab.oci import EMPTY_DESCRIPTOR, EMPTY_JSON, OCI_MANIFEST, ImageManifest, OciClient, digest_of

_logger = logging.getLogger(__name__)

_LAYER_TYPE = "application/octet-stream"
_BUNDLES = "bundles"
_PUSHED = "pushed"


def _manifest(blobs: list[tuple[str, int]]) -> bytes:
    """An OCI image manifest over the pushed blobs (with the empty config)."""
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.cihub.chaos.v1",
        "config": EMPTY_DESCRIPTOR.to_json(),
        "layers": [{"mediaType": _LAYER_TYPE, "digest": d, "size": n} for d, n in blobs],
    }
    return json.dumps(document, sort_keys=True).encode()


def push_artifact(
    repository: str,
    size_mb: int,
    tag: str,
    timeout: float = 60.0,
    configuration: Configuration = None,
) -> dict[str, Any]:
    """Push a random `size_mb` MB artifact and its manifest (by tag); the registry must answer
    the pushed digests. The push is kept in `<state_dir>/pushed/` for `pushed_artifacts_verify`,
    which pulls everything back once the fault is gone (a pull through a 1.5 s latency toxic
    takes minutes, and proves nothing more).

    Returns:
        {"digest", "manifest", "seconds"}.
    """
    data = os.urandom(size_mb * 1024 * 1024)
    started = time.monotonic()
    with OciClient(need(configuration, "registry_url"), timeout=timeout) as client:
        try:
            digest = client.push_blob(repository, data)
            client.push_blob(repository, EMPTY_JSON)
            manifest = _manifest([(digest, len(data))])
            pushed = client.push_manifest(repository, manifest, OCI_MANIFEST, reference=tag)
        except (CihubError, LabError) as exc:
            raise ActivityFailed(f"push of {size_mb} MB failed: {exc}") from exc
    if digest != digest_of(data) or pushed != digest_of(manifest):
        raise ActivityFailed("the registry answered other digests than the pushed ones")
    seconds = round(time.monotonic() - started, 2)
    _keep_push(configuration, repository, pushed)
    return {"digest": digest, "manifest": pushed, "seconds": seconds}


def pushed_artifacts(configuration: Configuration) -> list[tuple[str, str]]:
    """(repository, manifest digest) of every push `push_artifact` kept."""
    folder = Path(need(configuration, "state_dir")) / _PUSHED
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        entry = json.loads(path.read_text())
        found.append((str(entry["repository"]), str(entry["manifest"])))
    return found


def verify_push(client: OciClient, repository: str, manifest: str) -> int:
    """Pull a manifest by digest and every blob it references, checking each digest.

    Returns:
        the number of blobs checked.

    Raises:
        ActivityFailed: a digest does not match, or something is missing.
    """
    try:
        pulled = client.pull_manifest(repository, manifest)
        parsed = ImageManifest.from_json(pulled.data)
        for descriptor in (parsed.config, *parsed.layers):
            client.pull_blob(repository, descriptor.digest)  # checks the digest
    except (CihubError, LabError, ValueError) as exc:
        raise ActivityFailed(f"{repository}@{manifest} does not verify: {exc}") from exc
    return 1 + len(parsed.layers)


def _keep_push(configuration: Configuration, repository: str, manifest: str) -> None:
    folder = Path(need(configuration, "state_dir")) / _PUSHED
    folder.mkdir(parents=True, exist_ok=True)
    name = repository.replace("/", "_") + ".json"
    (folder / name).write_text(json.dumps({"repository": repository, "manifest": manifest}))


def push_expect_give_up(
    repository: str,
    size_kb: int,
    tag: str,
    bound_s: float,
    configuration: Configuration = None,
) -> dict[str, Any]:
    """Push a blob then its manifest with a client bounded to `bound_s` seconds per operation
    and no retries; the fault must make it give up, within its bound, with a clear error.

    Returns:
        {"gave_up_after_s", "error"}.

    Raises:
        ActivityFailed: the push completed (the fault did not bite), or the client hung past
            twice its bound.
    """
    data = os.urandom(size_kb * 1024)
    started = time.monotonic()
    with OciClient(need(configuration, "registry_url"), timeout=bound_s, retries=0) as client:
        try:
            digest = client.push_blob(repository, data)
            client.push_blob(repository, EMPTY_JSON)
            client.push_manifest(
                repository, _manifest([(digest, len(data))]), OCI_MANIFEST, reference=tag
            )
        except (CihubError, LabError) as exc:
            waited = time.monotonic() - started
            message = str(exc).splitlines()[0]
            if waited > 2 * bound_s + 5:
                raise ActivityFailed(
                    f"the client gave up only after {waited:.1f} s (bound {bound_s} s)"
                ) from exc
            _logger.info("the client gave up after %.1f s: %s", waited, message)
            return {"gave_up_after_s": round(waited, 2), "error": message}
    raise ActivityFailed("the push completed: the fault did not stop it")


def push_blobs_until_done(
    repository: str,
    count: int,
    size_mb: int,
    tag: str,
    deadline_s: float = 90.0,
    expect_interruption: bool = True,
    interval_s: float = 0.0,
    configuration: Configuration = None,
) -> dict[str, Any]:
    """Push `count` random blobs of `size_mb` MB (`interval_s` apart) and a manifest over them,
    retrying each failed request until `deadline_s`; then pull every blob back and check its
    digest.

    Returns:
        {"blobs", "retries", "manifest", "seconds"}.

    Raises:
        ActivityFailed: the deadline passed, a digest does not match, or `expect_interruption`
            and no request failed (the fault never hit the push).
    """
    blobs = [os.urandom(size_mb * 1024 * 1024) for _ in range(count)]
    started = time.monotonic()
    retries = 0
    registry = need(configuration, "registry_url")

    def attempt(what: str, action: Any) -> Any:
        nonlocal retries
        while True:
            with OciClient(registry, timeout=5, retries=0) as client:
                try:
                    return action(client)
                except (CihubError, LabError) as exc:
                    if time.monotonic() - started > deadline_s:
                        raise ActivityFailed(
                            f"{what}: still failing at the deadline: {exc}"
                        ) from exc
                    retries += 1
                    _logger.info("%s failed (%s): retrying", what, str(exc).splitlines()[0])
            time.sleep(0.5)

    digests = []
    for index, data in enumerate(blobs):
        if index and interval_s:
            time.sleep(interval_s)
        digests.append(attempt(f"blob {index}", lambda c, b=data: c.push_blob(repository, b)))
    attempt("config", lambda c: c.push_blob(repository, EMPTY_JSON))
    manifest = _manifest([(d, len(b)) for d, b in zip(digests, blobs, strict=True)])
    pushed = attempt(
        "manifest", lambda c: c.push_manifest(repository, manifest, OCI_MANIFEST, reference=tag)
    )
    for digest, data in zip(digests, blobs, strict=True):
        pulled = attempt(f"pull {digest}", lambda c, d=digest: c.pull_blob(repository, d))
        if pulled != data:
            raise ActivityFailed(f"blob {digest} came back with other bytes")
    if expect_interruption and retries == 0:
        raise ActivityFailed("no request failed: the fault never hit the push")
    seconds = round(time.monotonic() - started, 2)
    return {"blobs": count, "retries": retries, "manifest": pushed, "seconds": seconds}


def sign_artifacts(count: int, configuration: Configuration = None) -> dict[str, Any]:
    """Sign `count` random artifacts keylessly through the lab; keep each bundle that came back
    (`bundles_verify` checks them). A signing may fail, but only with a clear error.

    Returns:
        {"signed", "failed", "errors"}.

    Raises:
        ActivityFailed: a returned bundle has no verified inclusion proof.
    """
    from harness.sign import sign_artifact

    folder = _bundle_dir(configuration, fresh=True)
    signed, errors = 0, []
    with caller_lab(
        lab_id=need(configuration, "lab_id"), evidence_dir=folder, images="offline"
    ) as access:
        for index in range(count):
            data = os.urandom(256)
            try:
                result = sign_artifact(data, access.signing_setup())
            except CihubError as exc:
                errors.append(str(exc).splitlines()[0])
                continue
            (folder / f"{index}.bin").write_bytes(data)
            (folder / f"{index}.sigstore.json").write_text(result.bundle_json)
            verify_bundle_with_proof(
                folder / f"{index}.bin", folder / f"{index}.sigstore.json", configuration
            )
            signed += 1
    return {"signed": signed, "failed": len(errors), "errors": errors}


def append_expect_timeout(timeout_s: float, configuration: Configuration = None) -> dict[str, Any]:
    """Send an entry to the log with a `timeout_s` client: it must time out (the log is
    frozen), not answer.

    Returns:
        {"timed_out_after_s"}.
    """
    url = need(configuration, "rekor_url") + "/api/v1/log/entries"
    started = time.monotonic()
    try:
        response = requests.post(url, json={"kind": "hashedrekord"}, timeout=timeout_s)
    except requests.Timeout:
        return {"timed_out_after_s": round(time.monotonic() - started, 2)}
    except requests.RequestException as exc:
        raise ActivityFailed(f"the log append failed without a timeout: {exc}") from exc
    raise ActivityFailed(f"the log answered HTTP {response.status_code}: it is not frozen")


def signed_bundles(configuration: Configuration) -> Iterator[tuple[Path, Path]]:
    """(artifact, bundle) pairs `sign_artifacts` kept."""
    folder = _bundle_dir(configuration, fresh=False)
    for bundle in sorted(folder.glob("*.sigstore.json")):
        yield folder / bundle.name.replace(".sigstore.json", ".bin"), bundle


def verify_bundle_with_proof(artifact: Path, bundle: Path, configuration: Configuration) -> None:
    """The bundle verifies for the lab identity against the trust config, and its log entry
    carries an inclusion proof with a checkpoint.

    Raises:
        ActivityFailed: it does not.
    """
    try:
        document = json.loads(bundle.read_text())
        entry = document["verificationMaterial"]["tlogEntries"][0]
        proof = entry["inclusionProof"]
        if not proof["checkpoint"]["envelope"] or not proof["rootHash"]:
            raise ActivityFailed(f"{bundle.name}: the inclusion proof is incomplete")
        trust = ClientTrustConfig.from_json(Path(need(configuration, "trust_config")).read_text())
        Verifier(trusted_root=trust.trusted_root).verify_artifact(
            artifact.read_bytes(),
            Bundle.from_json(bundle.read_text()),
            policy.Identity(identity=DEFAULT_IDENTITY, issuer=DEFAULT_ISSUER),
        )
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise ActivityFailed(f"{bundle.name}: no inclusion proof ({exc!r})") from exc
    except SigstoreError as exc:
        raise ActivityFailed(f"{bundle.name}: does not verify: {exc}") from exc


def _bundle_dir(configuration: Configuration, *, fresh: bool) -> Path:
    folder = Path(need(configuration, "state_dir")) / _BUNDLES
    if fresh and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
