"""The replay check: every digest on record must resolve again after a restore.

Digests come from two places: the items the drill pushed itself (before and after its backup),
and the evidence bundles on record (`pipeline_run.ndjson` in the evidence folder): a release
bundle's `referrers/listing.json` names the registry, repository, subject and referrers it
pushed. Only bundles that pushed to this registry are replayed (other labs' registries are not
this drill's to check).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rfc8785

from harness.evidence import _fs
from harness.telemetry import NDJSON_NAME
from lab.errors import RegistryError
from lab.oci import OCI_EMPTY, OCI_MANIFEST, OciClient, digest_of

_logger = logging.getLogger(__name__)

LISTING = "referrers/listing.json"
MAX_NDJSON_BYTES = 256 * 1024 * 1024
MAX_LISTING_BYTES = 16 * 1024 * 1024
ITEM_TYPE = "application/vnd.cihub.dr-item.v1"


@dataclass(frozen=True)
class ReplayItem:
    """One manifest that must resolve: where it is, and who put it on record."""

    repository: str
    digest: str
    origin: str
    blob: str | None = None
    """The item's layer, pulled and re-hashed too (the drill's own items)."""

    def to_json(self) -> dict[str, Any]:
        return {"repository": self.repository, "digest": self.digest, "origin": self.origin}


@dataclass(frozen=True)
class Missing:
    item: ReplayItem
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {**self.item.to_json(), "reason": self.reason}


def push_items(
    oci: OciClient, repository: str, count: int, size: int, origin: str
) -> list[ReplayItem]:
    """Push `count` fresh artifacts (a random blob each, by digest): what the drill may lose."""
    items = []
    for _ in range(count):
        data = os.urandom(size)
        blob = oci.push_blob(repository, data)
        oci.push_blob(repository, b"{}")
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": ITEM_TYPE,
            "config": {"mediaType": OCI_EMPTY, "digest": digest_of(b"{}"), "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": blob, "size": size}],
        }
        digest = oci.push_manifest(repository, bytes(rfc8785.dumps(manifest)), OCI_MANIFEST)
        items.append(ReplayItem(repository, digest, origin, blob))
    return items


def evidence_items(evidence_dir: Path, registry_url: str) -> list[ReplayItem]:
    """The manifests that evidence bundles on record pushed to `registry_url`."""
    ndjson = evidence_dir / NDJSON_NAME
    try:
        raw = _fs.read_regular(evidence_dir, NDJSON_NAME, MAX_NDJSON_BYTES)
    except FileNotFoundError:
        return []
    except (OSError, _fs.UnsafeEntry, _fs.TooLarge) as exc:
        _logger.warning("%s: not read (%s): no evidence digests replayed", ndjson, exc)
        return []
    items: dict[tuple[str, str], ReplayItem] = {}
    for number, line in enumerate(raw.splitlines(), 1):
        for item in _items_of_record(evidence_dir, line, f"{ndjson}:{number}", registry_url):
            items.setdefault((item.repository, item.digest), item)
    return list(items.values())


def _items_of_record(
    evidence_dir: Path, line: bytes, where: str, registry_url: str
) -> Iterable[ReplayItem]:
    try:
        record = json.loads(line)
        bundle_path = record["evidence"]["bundle_path"]
    except (ValueError, KeyError, TypeError):
        return []
    if not isinstance(bundle_path, str):
        return []
    bundle = evidence_dir / bundle_path
    try:
        listing = json.loads(_fs.read_regular(bundle, LISTING, MAX_LISTING_BYTES))
    except FileNotFoundError:
        return []  # not a bundle that pushed anything
    except (OSError, ValueError, _fs.UnsafeEntry, _fs.TooLarge) as exc:
        _logger.warning("%s: %s/%s not read (%s)", where, bundle_path, LISTING, exc)
        return []
    if not isinstance(listing, dict) or listing.get("registry") != registry_url:
        return []
    repository = listing.get("repository")
    subject = listing.get("subject")
    referrers = listing.get("referrers")
    digests = [subject.get("digest") if isinstance(subject, dict) else None]
    digests += [r.get("digest") for r in referrers or [] if isinstance(r, dict)]
    origin = f"evidence:{bundle_path}"
    return [
        ReplayItem(repository, d, origin)
        for d in digests
        if isinstance(repository, str) and isinstance(d, str)
    ]


def replay(oci: OciClient, items: Sequence[ReplayItem]) -> list[Missing]:
    """Pull every item by digest (and the drill's own blobs, re-hashed); what did not come back."""
    missing = []
    for item in items:
        try:
            oci.pull_manifest(item.repository, item.digest)
            if item.blob is not None and digest_of(oci.pull_blob(item.repository, item.blob)) != (
                item.blob
            ):
                missing.append(Missing(item, f"blob {item.blob} came back with other bytes"))
        except RegistryError as exc:
            missing.append(Missing(item, str(exc).splitlines()[0]))
        except ValueError as exc:
            missing.append(Missing(item, f"not a valid reference ({exc})"))
    return missing
