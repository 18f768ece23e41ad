"""The replay: which digests evidence on record names, and what counts as missing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.dr.replay import ReplayItem, evidence_items, replay
from lab.errors import RegistryError
from lab.oci import digest_of

REGISTRY = "http://127.0.0.1:5055"
SUBJECT = "sha256:" + "a" * 64
REFERRER = "sha256:" + "b" * 64


def _bundle(evidence: Path, name: str, listing: Any) -> dict[str, Any]:
    folder = evidence / name / "referrers"
    folder.mkdir(parents=True)
    (folder / "listing.json").write_text(json.dumps(listing))
    return {"evidence": {"bundle_path": name, "complete": True}}


def test_only_bundles_that_pushed_to_this_registry_are_replayed(tmp_path: Path) -> None:
    listing = {
        "registry": REGISTRY,
        "repository": "cihub/release",
        "subject": {"digest": SUBJECT},
        "referrers": [{"digest": REFERRER}, {"digest": 7}, "junk"],
    }
    records = [
        _bundle(tmp_path, "release-1", listing),
        _bundle(tmp_path, "release-other-lab", {**listing, "registry": "http://127.0.0.1:1"}),
        _bundle(tmp_path, "release-again", listing),  # the same digests: replayed once
        {"evidence": {"bundle_path": "determinism-1", "complete": True}},  # pushed nothing
        {"evidence": {"bundle_path": ["not", "a", "path"]}},
    ]
    lines = [json.dumps(r) for r in records] + ["{not json", ""]
    (tmp_path / "pipeline_run.ndjson").write_text("\n".join(lines) + "\n")
    items = evidence_items(tmp_path, REGISTRY)
    assert [(i.repository, i.digest, i.origin) for i in items] == [
        ("cihub/release", SUBJECT, "evidence:release-1"),
        ("cihub/release", REFERRER, "evidence:release-1"),
    ]


def test_a_linked_listing_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"registry": REGISTRY, "repository": "x", "subject": {}}))
    (tmp_path / "evil" / "referrers").mkdir(parents=True)
    (tmp_path / "evil" / "referrers" / "listing.json").symlink_to(outside)
    record = {"evidence": {"bundle_path": "evil", "complete": True}}
    (tmp_path / "pipeline_run.ndjson").write_text(json.dumps(record) + "\n")
    assert evidence_items(tmp_path, REGISTRY) == []


def test_no_records_no_items(tmp_path: Path) -> None:
    assert evidence_items(tmp_path, REGISTRY) == []


class _Registry:
    """Answers like the OCI client: some manifests exist, one blob comes back altered."""

    def __init__(self, manifests: set[str], blobs: dict[str, bytes]) -> None:
        self.manifests = manifests
        self.blobs = blobs

    def pull_manifest(self, repo: str, digest: str) -> None:
        if digest not in self.manifests:
            raise RegistryError(f"manifest {digest} not found (404)\nmore")

    def pull_blob(self, repo: str, digest: str) -> bytes:
        return self.blobs[digest]


def test_replay_names_missing_manifests_and_altered_blobs() -> None:
    good_blob = digest_of(b"good")
    bad_blob = digest_of(b"original")
    items = [
        ReplayItem("r", SUBJECT, "drill:before-backup", good_blob),
        ReplayItem("r", REFERRER, "drill:before-backup", bad_blob),
        ReplayItem("r", "sha256:" + "c" * 64, "evidence:release-1"),
    ]
    registry = _Registry({SUBJECT, REFERRER}, {good_blob: b"good", bad_blob: b"tampered"})
    missing = replay(registry, items)  # type: ignore[arg-type]
    assert [(m.item.digest, m.reason.split(" ")[0]) for m in missing] == [
        (REFERRER, "blob"),
        ("sha256:" + "c" * 64, "manifest"),
    ]
    assert "\n" not in missing[1].reason
