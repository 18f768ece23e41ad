"""The `rekor` role: two Rekor-compatible transparency logs, v1 and v2, in one process.

Run as::

    python3 -m sigstack rekor --host 0.0.0.0 --port 3000 \\
        --db /var/lib/rekor/v1.db --key rekor-key.pem --origin rekor.cihub.lab \\
        --db-v2 /var/lib/rekor/v2.db --key-v2 rekor-key-v2.pem --origin-v2 rekor-v2.cihub.lab

The two logs are separate, as in production (Rekor v1 on Trillian, Rekor v2 = rekor-tiles):
each has its own key, log ID, SQLite database and index sequence.

- v1 (`--db`, `--key`: ECDSA P-256 as public Rekor v1 uses): hashedrekord and dsse 0.0.1,
  a search index, Signed Entry Timestamps, checkpoints with origin "<origin> - <treeID>"
  signed under the name <origin> (the v1 base URL's host name, as rekor's `--rekor_server.
  hostname`); log ID = SHA256(DER SPKI).
- v2 (`--db-v2`, `--key-v2`: Ed25519 as rekor-tiles uses): hashedrekord 0.0.2 only, no search
  index, C2SP checkpoints with origin <origin-v2>, which must be the host name of the log's
  `baseUrl` in the trusted root (sigstore-go builds its note verifier from it); log ID = the
  C2SP key ID SHA256(origin || 0x0A || 0x01 || key). The C2SP tlog-tiles read path serves it.

Several processes may serve the same database files (labs sharing a trust domain): appends
serialize through the database (see `store.py`), and each read first catches up with what
other processes committed.

Endpoints:
    POST /api/v2/log/entries            hashedRekordRequestV002 -> 201 TransparencyLogEntry
    GET  /checkpoint                    v2 signed checkpoint (c2sp.org/tlog-tiles)
    GET  /tile/<L>/<N>[.p/<W>]          v2 Merkle tiles (hashes of level 8L, 32 bytes each)
    GET  /tile/entries/<N>[.p/<W>]      v2 entry bundles (big-endian uint16 length || body)*
    GET  /api/v2/checkpoint             501 Unimplemented, as rekor-tiles answers
    POST /api/v1/log/entries            hashedrekord | dsse 0.0.1 -> 201 {uuid: LogEntry}
    GET  /api/v1/log                    LogInfo {rootHash, treeSize, signedTreeHead, treeID}
    GET  /api/v1/log/publicKey          the v1 public key (PEM)
    GET  /api/v1/log/proof?firstSize=&lastSize=   consistency proof {rootHash, hashes}
    GET  /api/v1/log/entries?logIndex=N and GET /api/v1/log/entries/{uuid}
    POST /api/v1/log/entries/retrieve   {entryUUIDs | logIndexes | entries} (10 at most each)
    POST /api/v1/index/retrieve         {hash | publicKey | email | operator} -> [uuid, ...]
    GET  /healthz, GET /metrics         health (200 when both databases answer), Prometheus

Every entry body is RFC 8785 JSON in the format of the API it came through; proposed entries
are validated (`entries.py`) and a failure is a 400 with the reason. A second submission of an
identical body is a 409 (v1: Location of the existing entry; v2: header x-log-index), as
upstream answers. Appends from concurrent requests are grouped into one SQLite transaction
(group commit) and answered only after it is on disk.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import json
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from . import canonical
from .checkpoint import (
    Checkpoint,
    KeySigner,
    NoteError,
    PrivateKey,
    PublicKey,
    check_key_name,
    ecdsa_hash,
    note_key_id,
    spki_der,
    spki_key_id,
)
from .entries import (
    _CURVE_DETAILS,
    EntryError,
    _b64s,
    canonicalize_v1,
    canonicalize_v2,
    public_key_search_keys,
)
from .http import HttpError, Request, Response, Server, json_response, serve_until_signal
from .http import text_response as _text
from .merkle import ProofError
from .store import NewEntry, Store, StoredEntry, StoreError, StoreReplaced

DEFAULT_ORIGIN = "rekor.cihub.lab"
MAX_BATCH = 256
_CHECKPOINT_CACHE = 64
TILE_WIDTH = 256
TILE_HEIGHT = 8
MAX_SEARCH = 10
"""Rekor v1 takes at most 10 logIndexes / entryUUIDs / entries in one retrieve."""

# gRPC status codes, which Rekor v2 (a grpc-gateway) puts in its JSON error bodies
_GRPC_INVALID_ARGUMENT = 3
_GRPC_NOT_FOUND = 5
_GRPC_ALREADY_EXISTS = 6
_GRPC_UNIMPLEMENTED = 12
_GRPC_INTERNAL = 13


# -- keys -----------------------------------------------------------------------------------


def load_private_key(pem: bytes, what: str = "key") -> PrivateKey:
    """An ECDSA or Ed25519 private key from PEM (PKCS#8 or SEC1), unencrypted.

    Raises:
        ValueError: if the PEM is unreadable or holds another kind of key.
    """
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"{what}: not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise ValueError(f"{what}: only ECDSA and Ed25519 keys are supported")
    return key


def key_details(key: PublicKey) -> str:
    """The Sigstore `PublicKeyDetails` name of a log key."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "PKIX_ED25519"
    details = _CURVE_DETAILS.get(key.curve.name)
    if details is None:
        raise ValueError(f"unsupported curve {key.curve.name}")
    return details


def log_ids(
    key: PrivateKey, key_v2: PrivateKey | None, origin: str, origin_v2: str | None = None
) -> dict[str, Any]:
    """What a trusted root needs about both logs: log IDs, public keys, key details, names.

    Example:
        log_ids(ec_key, ed_key, "rekor.cihub.lab")["v2"]["logId"]  # base64 C2SP key ID
    """
    v2 = key_v2 or key
    name_v2 = origin_v2 or origin
    out: dict[str, Any] = {}
    for api, private, key_id, name in (
        ("v1", key, spki_key_id(key.public_key()), origin),
        ("v2", v2, note_key_id(name_v2, v2.public_key()), name_v2),
    ):
        public = private.public_key()
        out[api] = {
            "logId": base64.b64encode(key_id).decode(),
            "logIdHex": key_id.hex(),
            "keyName": name,
            "publicKey": {
                "rawBytes": base64.b64encode(spki_der(public)).decode(),
                "keyDetails": key_details(public),
            },
        }
    out["v2"]["origin"] = name_v2
    return out


def _sign(key: PrivateKey, data: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    return key.sign(data, ec.ECDSA(ecdsa_hash(key.curve)))


# -- the log --------------------------------------------------------------------------------


class DuplicateEntry(Exception):
    """An identical entry is already in the log."""

    def __init__(self, entry: StoredEntry) -> None:
        super().__init__(f"an equivalent entry already exists at index {entry.index}")
        self.entry = entry


@dataclass
class _Slot:
    entry: NewEntry
    done: bool = False
    stored: StoredEntry | None = None
    duplicate: bool = False
    error: BaseException | None = None


_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass
class _Metrics:
    lock: threading.Lock = field(default_factory=threading.Lock)
    entries: dict[int, int] = field(default_factory=lambda: {1: 0, 2: 0})
    duplicates: int = 0
    rejected: int = 0
    batches: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * len(_LATENCY_BUCKETS))
    latency_sum: float = 0.0
    latency_count: int = 0
    requests: dict[tuple[str, str, int], int] = field(default_factory=dict)

    def observe_append(self, seconds: float) -> None:
        with self.lock:
            i = bisect.bisect_left(_LATENCY_BUCKETS, seconds)
            if i < len(self.buckets):
                self.buckets[i] += 1
            self.latency_sum += seconds
            self.latency_count += 1

    def count_request(self, method: str, route: str, status: int) -> None:
        with self.lock:
            key = (method, route, status)
            self.requests[key] = self.requests.get(key, 0) + 1


def tile_path_index(text: str) -> int:
    """Decode a tlog-tiles index path (`x001/x234/067` -> 1234067).

    Raises:
        ValueError: not 3-digit groups with an `x` on all but the last.
    """
    parts = text.split("/")
    digits = []
    for position, part in enumerate(parts):
        last = position == len(parts) - 1
        if not last:
            if not part.startswith("x"):
                raise ValueError(f"tile index element {part!r} must start with x")
            part = part[1:]
        if len(part) != 3 or not part.isdigit():
            raise ValueError(f"tile index element {part!r} is not 3 digits")
        digits.append(part)
    return int("".join(digits))


def tile_index_path(index: int) -> str:
    """Encode a tile index as tlog-tiles path elements (1234067 -> `x001/x234/067`)."""
    groups = []
    while True:
        groups.append(f"{index % 1000:03d}")
        index //= 1000
        if index == 0:
            break
    groups.reverse()
    return "/".join([*(f"x{g}" for g in groups[:-1]), groups[-1]])


class RekorLog:
    """One Merkle log in its own `Store`, signed for one API (1: Rekor v1, 2: Rekor v2).

    The in-memory tree is a cache of the database: every append syncs it inside the write
    transaction, and `refresh()` (called before each read) catches up with entries that other
    processes committed, reloading from scratch if the database went backwards.

    Example:
        log = RekorLog(Store(path), key=ed_key, origin="rekor-v2.cihub.lab", api=2)
        stored = log.append(canonicalize_v2(request))
        response = log.v2_entry(stored)
    """

    def __init__(
        self,
        store: Store,
        key: PrivateKey,
        origin: str = DEFAULT_ORIGIN,
        api: int = 1,
        clock: Callable[[], float] = time.time,
        metrics: _Metrics | None = None,
    ) -> None:
        check_key_name(origin)
        if api not in (1, 2):
            raise ValueError(f"api must be 1 or 2, not {api}")
        self.api = api
        self.store = store
        self.tree = store.load_tree()
        self.key = key
        self.key_name = origin
        if api == 1:
            self.origin = f"{origin} - {store.tree_id}"
            self.log_id = spki_key_id(key.public_key())
        else:
            self.origin = origin
            self.log_id = note_key_id(origin, key.public_key())
        self._signer = KeySigner(origin, key, key_id=self.log_id)
        self._clock = clock
        self._cond = threading.Condition()
        self._pending: list[_Slot] = []
        self._writing = False
        self._tree_lock = threading.Lock()
        self._checkpoints: OrderedDict[tuple[int, bytes], str] = OrderedDict()
        self._checkpoint_lock = threading.Lock()
        self.metrics = metrics or _Metrics()

    @property
    def size(self) -> int:
        """The number of committed entries this process knows of (see `refresh`)."""
        return self.tree.size

    def refresh(self) -> int:
        """Catch up with entries other processes committed; returns the size."""
        with self._tree_lock:
            try:
                self.store.sync(self.tree)
            except StoreReplaced:
                self.tree = self.store.load_tree()
        return self.tree.size

    # -- appending --------------------------------------------------------------------------

    def append(self, entry: NewEntry) -> StoredEntry:
        """Add an entry; returns it once committed to disk and to the tree.

        Concurrent callers are grouped: one of them writes everyone's pending entries in one
        transaction, and each gets its own consecutive index.

        Raises:
            DuplicateEntry: if an identical body is already logged.
            StoreError: if the database write failed (nothing was logged).
        """
        slot = _Slot(entry)
        with self._cond:
            self._pending.append(slot)
        while True:
            with self._cond:
                while not slot.done and self._writing:
                    self._cond.wait()
                if not slot.done:
                    batch = self._pending[:MAX_BATCH]
                    del self._pending[:MAX_BATCH]
                    self._writing = True
            if slot.done:
                break
            try:
                self._commit(batch)
            except BaseException as exc:
                for s in batch:
                    if s.stored is None:
                        s.error = exc
            finally:
                with self._cond:
                    for s in batch:
                        s.done = True
                    self._writing = False
                    self._cond.notify_all()
        if slot.error is not None:
            raise slot.error
        assert slot.stored is not None
        if slot.duplicate:
            raise DuplicateEntry(slot.stored)
        return slot.stored

    def _commit(self, batch: list[_Slot]) -> None:
        entries = [slot.entry for slot in batch]
        with self._tree_lock:
            try:
                stored, duplicates = self.store.append(self.tree, entries, int(self._clock()))
            except StoreReplaced:
                self.tree = self.store.load_tree()
                stored, duplicates = self.store.append(self.tree, entries, int(self._clock()))
        dup_at = dict(duplicates)
        fresh = iter(stored)
        for position, slot in enumerate(batch):
            if position in dup_at:
                slot.stored, slot.duplicate = dup_at[position], True
            else:
                slot.stored = next(fresh)
        if stored:
            with self.metrics.lock:
                self.metrics.batches += 1
                self.metrics.entries[self.api] += len(stored)

    # -- reading ----------------------------------------------------------------------------

    def entry(self, index: int) -> StoredEntry | None:
        """A committed entry by log index."""
        if not 0 <= index < self.tree.size:
            return None
        return self.store.entry(index)

    def entry_by_uuid(self, uuid: str) -> StoredEntry | None:
        """A committed entry by v1 UUID (64 hex) or entry ID (16 hex tree ID + UUID)."""
        uuid = uuid.lower()
        if len(uuid) == 80:
            if uuid[:16] != f"{self.store.tree_id:016x}":
                return None
            uuid = uuid[16:]
        if len(uuid) != 64:
            return None
        try:
            leaf = bytes.fromhex(uuid)
        except ValueError:
            return None
        index = self.store.index_of_leaf(leaf, below=self.tree.size)
        return self.store.entry(index) if index is not None else None

    def entry_id(self, entry: StoredEntry) -> str:
        """The v1 entry ID: tree ID (16 hex) followed by the UUID (the leaf hash, hex)."""
        return f"{self.store.tree_id:016x}{entry.leaf_hash.hex()}"

    def search(self, key: str) -> list[int]:
        """Log indexes of committed entries indexed under `key` (lower case)."""
        return self.store.indexes_by_digest(key.lower(), below=self.tree.size)

    def search_digest(self, digest: str) -> list[StoredEntry]:
        """Committed entries indexed under `digest` ("sha256:<hex>")."""
        return [e for i in self.search(digest) if (e := self.store.entry(i)) is not None]

    def checkpoint(self, size: int | None = None) -> str:
        """The signed checkpoint of the tree at `size` (default: now)."""
        size = self.tree.size if size is None else size
        root = self.tree.root(size)
        cache_key = (size, root)
        with self._checkpoint_lock:
            cached = self._checkpoints.get(cache_key)
        if cached is not None:
            return cached
        text = Checkpoint(self.origin, size, root).sign([self._signer])
        with self._checkpoint_lock:
            self._checkpoints[cache_key] = text
            while len(self._checkpoints) > _CHECKPOINT_CACHE:
                self._checkpoints.popitem(last=False)
        return text

    def signed_entry_timestamp(self, entry: StoredEntry) -> bytes:
        """The v1 SET: the v1 key's signature over RFC 8785 {body, integratedTime, logID,
        logIndex}."""
        payload = {
            "body": _b64s(entry.body),
            "integratedTime": entry.integrated_time,
            "logID": self.log_id.hex(),
            "logIndex": entry.index,
        }
        return _sign(self.key, canonical.dumps(payload))

    def v1_entry(self, entry: StoredEntry, size: int | None = None) -> dict[str, Any]:
        """`{entryID: LogEntry}` as Rekor v1 answers, with a proof at `size` (default: now)."""
        size = self.tree.size if size is None else size
        proof = self.tree.inclusion_proof(entry.index, size)
        body = {
            "body": _b64s(entry.body),
            "integratedTime": entry.integrated_time,
            "logID": self.log_id.hex(),
            "logIndex": entry.index,
            "verification": {
                "inclusionProof": {
                    "checkpoint": self.checkpoint(size),
                    "hashes": [h.hex() for h in proof],
                    "logIndex": entry.index,
                    "rootHash": self.tree.root(size).hex(),
                    "treeSize": size,
                },
                "signedEntryTimestamp": _b64s(self.signed_entry_timestamp(entry)),
            },
        }
        return {self.entry_id(entry): body}

    def v2_entry(self, entry: StoredEntry, size: int | None = None) -> dict[str, Any]:
        """The protobuf-JSON `TransparencyLogEntry` Rekor v2 answers (integratedTime "0")."""
        size = self.tree.size if size is None else size
        proof = self.tree.inclusion_proof(entry.index, size)
        return {
            "logIndex": str(entry.index),
            "logId": {"keyId": _b64s(self.log_id)},
            "kindVersion": {"kind": entry.kind, "version": entry.api_version},
            "integratedTime": "0",
            "inclusionProof": {
                "logIndex": str(entry.index),
                "rootHash": _b64s(self.tree.root(size)),
                "treeSize": str(size),
                "hashes": [_b64s(h) for h in proof],
                "checkpoint": {"envelope": self.checkpoint(size)},
            },
            "canonicalizedBody": _b64s(entry.body),
        }

    def log_info(self) -> dict[str, Any]:
        """Rekor v1 LogInfo."""
        size = self.tree.size
        return {
            "rootHash": self.tree.root(size).hex(),
            "treeSize": size,
            "signedTreeHead": self.checkpoint(size),
            "treeID": str(self.store.tree_id),
            "inactiveShards": [],
        }

    def consistency(self, first: int, last: int) -> dict[str, Any]:
        """Rekor v1 ConsistencyProof between two sizes."""
        return {
            "rootHash": self.tree.root(last).hex(),
            "hashes": [h.hex() for h in self.tree.consistency_proof(first, last)],
        }

    # -- tlog-tiles -------------------------------------------------------------------------

    def tile(self, level: int, index: int, width: int) -> bytes | None:
        """The hashes of tile (level, index) at `width`, or None if the tree has too few."""
        tree = self.tree
        height = level * TILE_HEIGHT
        available = tree.size >> height
        first = index * TILE_WIDTH
        if not 1 <= width <= TILE_WIDTH or first + width > available:
            return None
        return b"".join(tree.node(height, first + i) for i in range(width))

    def entry_bundle(self, index: int, width: int) -> bytes | None:
        """Entry bundle `index` at `width`: each body prefixed by its big-endian uint16 length."""
        first = index * TILE_WIDTH
        if not 1 <= width <= TILE_WIDTH or first + width > self.tree.size:
            return None
        bodies = self.store.bodies(first, first + width)
        if len(bodies) != width:
            return None
        return b"".join(len(b).to_bytes(2, "big") + b for b in bodies)


def metrics_text(logs: Sequence[RekorLog], m: _Metrics) -> str:
    """Prometheus text exposition of both logs (one shared `_Metrics`)."""
    with m.lock:
        lines = [
            "# HELP rekor_tree_size Number of leaves in the Merkle tree, by log.",
            "# TYPE rekor_tree_size gauge",
            *(f'rekor_tree_size{{api="v{log.api}"}} {log.size}' for log in logs),
            "# HELP rekor_entries_total Entries appended by this process, by API version.",
            "# TYPE rekor_entries_total counter",
            *(f'rekor_entries_total{{api="v{api}"}} {n}' for api, n in m.entries.items()),
            "# HELP rekor_duplicate_entries_total Submissions of an already logged body.",
            "# TYPE rekor_duplicate_entries_total counter",
            f"rekor_duplicate_entries_total {m.duplicates}",
            "# HELP rekor_rejected_entries_total Proposed entries refused as invalid.",
            "# TYPE rekor_rejected_entries_total counter",
            f"rekor_rejected_entries_total {m.rejected}",
            "# HELP rekor_append_batches_total Transactions that appended entries.",
            "# TYPE rekor_append_batches_total counter",
            f"rekor_append_batches_total {m.batches}",
            "# HELP rekor_append_latency_seconds Time to validate, commit and prove an entry.",
            "# TYPE rekor_append_latency_seconds histogram",
        ]
        cumulative = 0
        for bound, count in zip(_LATENCY_BUCKETS, m.buckets, strict=True):
            cumulative += count
            lines.append(f'rekor_append_latency_seconds_bucket{{le="{bound}"}} {cumulative}')
        lines += [
            f'rekor_append_latency_seconds_bucket{{le="+Inf"}} {m.latency_count}',
            f"rekor_append_latency_seconds_sum {m.latency_sum:.6f}",
            f"rekor_append_latency_seconds_count {m.latency_count}",
            "# HELP rekor_http_requests_total HTTP requests by method, route and status.",
            "# TYPE rekor_http_requests_total counter",
        ]
        lines += [
            f'rekor_http_requests_total{{method="{meth}",route="{route}",code="{code}"}} {n}'
            for (meth, route, code), n in sorted(m.requests.items())
        ]
    return "\n".join(lines) + "\n"


# -- HTTP -----------------------------------------------------------------------------------


def _v1_error(status: int, message: str) -> HttpError:
    return HttpError(status, message)


def _v2_error(status: int, grpc_code: int, message: str) -> Response:
    body = {"code": grpc_code, "message": message, "details": []}
    return json_response(body, status)


def _int_param(request: Request, name: str) -> int:
    """A required non-negative integer query parameter (go-swagger: 422 when missing/bad)."""
    text = request.param(name)
    if text is None or text == "":
        raise _v1_error(422, f"{name} in query is required")
    if not text.isdigit():
        raise _v1_error(422, f"{name} in query must be of type int64: {text!r}")
    return int(text)


_HASH_PATTERN = re.compile(
    r"^(sha512:)?[0-9a-f]{128}$|^(sha256:)?[0-9a-f]{64}$|^(sha1:)?[0-9a-f]{40}$"
)
_TILE = re.compile(r"^/tile/(?P<level>\d+)/(?P<index>(?:x\d{3}/)*\d{3})(?:\.p/(?P<width>\d+))?$")
_ENTRIES = re.compile(r"^/tile/entries/(?P<index>(?:x\d{3}/)*\d{3})(?:\.p/(?P<width>\d+))?$")


class RekorApp:
    """The HTTP routes of the `rekor` role over its v1 and v2 logs."""

    def __init__(self, v1: RekorLog, v2: RekorLog) -> None:
        if v1.api != 1 or v2.api != 2:
            raise ValueError("RekorApp needs a v1 log and a v2 log")
        self.v1 = v1
        self.v2 = v2
        self.metrics = v1.metrics
        self._get: dict[str, Callable[[Request], Response]] = {
            "/healthz": self._healthz,
            "/metrics": self._metrics,
            "/api/v1/log": self._log_info,
            "/api/v1/log/publicKey": self._public_key,
            "/api/v1/log/proof": self._proof,
            "/api/v1/log/entries": self._entry_by_index,
            "/api/v2/checkpoint": self._checkpoint_v2_api,
            "/checkpoint": self._checkpoint,
        }
        self._post: dict[str, Callable[[Request], Response]] = {
            "/api/v1/log/entries": self._create_v1,
            "/api/v1/log/entries/retrieve": self._retrieve,
            "/api/v1/index/retrieve": self._index,
            "/api/v2/log/entries": self._create_v2,
        }

    def __call__(self, request: Request) -> Response:
        route, response = self._route(request)
        self.metrics.count_request(request.method, route, response.status)
        return response

    def _route(self, request: Request) -> tuple[str, Response]:
        """(route label for metrics, response)."""
        path = request.path.rstrip("/") or "/"
        reading = request.method in ("GET", "HEAD")
        handler = (self._get if reading else self._post).get(path)
        route = path if path in self._get or path in self._post else "other"
        try:
            # Other labs' rekor processes may have appended to the shared databases: reads
            # (searches are POSTs) first catch up; appends sync inside their transaction.
            if path.startswith("/api/v1") and (reading or path != "/api/v1/log/entries"):
                self.v1.refresh()
            if reading and path.startswith(("/tile/", "/checkpoint")):
                self.v2.refresh()
            if handler is not None:
                return route, handler(request)
            if reading and path.startswith("/api/v1/log/entries/"):
                route = "/api/v1/log/entries/{uuid}"
                return route, self._entry_by_uuid(path.rsplit("/", 1)[1])
            if reading and path.startswith("/tile/entries/"):
                return "/tile/entries", self._entry_bundle(path)
            if reading and path.startswith("/tile/"):
                return "/tile", self._tile(path)
            if route != "other":
                raise _v1_error(405, f"method {request.method} is not allowed on {path}")
            raise _v1_error(404, f"path {path} was not found")
        except HttpError as exc:
            return route, json_response({"code": exc.code, "message": exc.message}, exc.status)

    # -- v2 ---------------------------------------------------------------------------------

    def _create_v2(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            entry = canonicalize_v2(request.json())
        except HttpError as exc:
            return _v2_error(400, _GRPC_INVALID_ARGUMENT, exc.message)
        except EntryError as exc:
            self._rejected()
            return _v2_error(400, _GRPC_INVALID_ARGUMENT, f"invalid entry: {exc}")
        try:
            stored = self.v2.append(entry)
        except DuplicateEntry as dup:
            self._duplicate()
            response = _v2_error(409, _GRPC_ALREADY_EXISTS, str(dup))
            response.headers.append(("x-log-index", str(dup.entry.index)))
            return response
        except StoreError as exc:
            return _v2_error(500, _GRPC_INTERNAL, f"failed to integrate entry: {exc}")
        body = self.v2.v2_entry(stored)
        self.metrics.observe_append(time.perf_counter() - started)
        return json_response(body, 201)

    def _checkpoint_v2_api(self, request: Request) -> Response:
        # rekor-tiles serves checkpoints only on the tlog-tiles read path (/checkpoint).
        return _v2_error(501, _GRPC_UNIMPLEMENTED, "method GetCheckpoint not implemented")

    def _checkpoint(self, request: Request) -> Response:
        return _text(self.v2.checkpoint())

    def _tile(self, path: str) -> Response:
        match = _TILE.match(path)
        if match is None:
            raise _v1_error(404, f"path {path} is not a tile")
        data = self.v2.tile(
            int(match["level"]),
            tile_path_index(match["index"]),
            int(match["width"]) if match["width"] else TILE_WIDTH,
        )
        if data is None or (match["width"] and int(match["width"]) >= TILE_WIDTH):
            raise _v1_error(404, f"tile {path} does not exist (yet)")
        return _text(data, content_type="application/octet-stream")

    def _entry_bundle(self, path: str) -> Response:
        match = _ENTRIES.match(path)
        if match is None:
            raise _v1_error(404, f"path {path} is not an entry bundle")
        width = int(match["width"]) if match["width"] else TILE_WIDTH
        data = self.v2.entry_bundle(tile_path_index(match["index"]), width)
        if data is None or (match["width"] and width >= TILE_WIDTH):
            raise _v1_error(404, f"entry bundle {path} does not exist (yet)")
        return _text(data, content_type="application/octet-stream")

    # -- v1 ---------------------------------------------------------------------------------

    def _create_v1(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            entry = canonicalize_v1(request.json())
        except EntryError as exc:
            self._rejected()
            raise _v1_error(400, f"invalid entry: {exc}") from exc
        try:
            stored = self.v1.append(entry)
        except DuplicateEntry as dup:
            self._duplicate()
            uuid = self.v1.entry_id(dup.entry)
            message = f"an equivalent entry already exists in the transparency log with UUID {uuid}"
            response = json_response({"code": 409, "message": message}, 409)
            response.headers.append(("Location", f"/api/v1/log/entries/{uuid}"))
            return response
        except StoreError as exc:
            raise _v1_error(500, f"failed to append the entry: {exc}") from exc
        body = self.v1.v1_entry(stored)
        uuid = next(iter(body))
        self.metrics.observe_append(time.perf_counter() - started)
        headers = [("ETag", uuid), ("Location", f"/api/v1/log/entries/{uuid}")]
        return json_response(body, 201, headers)

    def _log_info(self, request: Request) -> Response:
        return json_response(self.v1.log_info())

    def _public_key(self, request: Request) -> Response:
        pem = self.v1.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return _text(pem, content_type="application/x-pem-file")

    def _proof(self, request: Request) -> Response:
        size = self.v1.size
        first = request.param("firstSize")
        first_size = _int_param(request, "firstSize") if first not in (None, "") else 1
        last = _int_param(request, "lastSize")
        if first_size < 1:
            raise _v1_error(422, "firstSize in query should be greater than or equal to 1")
        if first_size > last:
            raise _v1_error(400, f"firstSize({first_size}) must be less than lastSize({last})")
        if last > size:
            raise _v1_error(400, f"lastSize({last}) is beyond the tree size ({size})")
        try:
            return json_response(self.v1.consistency(first_size, last))
        except ProofError as exc:
            raise _v1_error(400, str(exc)) from exc

    def _entry_by_index(self, request: Request) -> Response:
        index = _int_param(request, "logIndex")
        entry = self.v1.entry(index)
        if entry is None:
            raise _v1_error(404, f"no entry at logIndex {index}")
        return json_response(self.v1.v1_entry(entry))

    def _entry_by_uuid(self, uuid: str) -> Response:
        entry = self.v1.entry_by_uuid(uuid)
        if entry is None:
            raise _v1_error(404, f"no entry with UUID {uuid}")
        return json_response(self.v1.v1_entry(entry))

    def _retrieve(self, request: Request) -> Response:
        query = request.json()
        if not isinstance(query, dict):
            raise _v1_error(400, "search query must be an object")
        found: dict[int, StoredEntry] = {}
        uuids = _list(query.get("entryUUIDs"), "entryUUIDs")
        indexes = _list(query.get("logIndexes"), "logIndexes")
        proposed_entries = _list(query.get("entries"), "entries")
        for uuid in uuids:
            if isinstance(uuid, str) and (entry := self.v1.entry_by_uuid(uuid)) is not None:
                found[entry.index] = entry
        for index in indexes:
            if not isinstance(index, int) or isinstance(index, bool) or index < 0:
                raise _v1_error(422, "logIndexes in body should be non-negative integers")
            if (entry := self.v1.entry(index)) is not None:
                found[entry.index] = entry
        for proposed in proposed_entries:
            try:
                leaf = canonicalize_v1(proposed).leaf_hash
            except EntryError as exc:
                raise _v1_error(400, f"invalid entry in search: {exc}") from exc
            if (entry := self.v1.entry_by_uuid(leaf.hex())) is not None:
                found[entry.index] = entry
        size = self.v1.size
        return json_response([self.v1.v1_entry(found[i], size) for i in sorted(found)])

    def _index(self, request: Request) -> Response:
        query = request.json()
        if not isinstance(query, dict):
            raise _v1_error(400, "search query must be an object")
        keys: list[str] = []
        wanted = query.get("hash")
        if wanted is not None:
            text = wanted.lower() if isinstance(wanted, str) else ""
            if not _HASH_PATTERN.match(text):
                raise _v1_error(422, f"hash in body should match {_HASH_PATTERN.pattern}")
            if ":" not in text:
                text = {40: "sha1", 64: "sha256", 128: "sha512"}[len(text)] + ":" + text
            keys.append(text)
        public_key = query.get("publicKey")
        if public_key is not None:
            try:
                keys.extend(public_key_search_keys(public_key))
            except EntryError as exc:
                raise _v1_error(400, f"invalid publicKey: {exc}") from exc
        email = query.get("email")
        if email is not None:
            if not isinstance(email, str) or "@" not in email:
                raise _v1_error(422, "email in body must be of type email")
            keys.append(email.lower())
        if not keys:
            raise _v1_error(400, "SearchIndex needs at least one of hash, publicKey and email")
        operator = query.get("operator", "and")
        if operator not in ("and", "or"):
            raise _v1_error(422, 'operator in body should be one of ["and","or"]')
        sets = [set(self.v1.search(key)) for key in keys]
        chosen = set.union(*sets) if operator == "or" else set.intersection(*sets)
        entries = [e for i in sorted(chosen) if (e := self.v1.store.entry(i)) is not None]
        return json_response([self.v1.entry_id(e) for e in entries])

    # -- operations -------------------------------------------------------------------------

    def _healthz(self, request: Request) -> Response:
        if not (self.v1.store.ping() and self.v2.store.ping()):
            return json_response({"status": "unavailable"}, 503)
        return json_response(
            {"status": "ok", "treeSize": self.v1.refresh(), "treeSizeV2": self.v2.refresh()}
        )

    def _metrics(self, request: Request) -> Response:
        return _text(
            metrics_text([self.v1, self.v2], self.metrics),
            content_type="text/plain; version=0.0.4",
        )

    def _rejected(self) -> None:
        with self.metrics.lock:
            self.metrics.rejected += 1

    def _duplicate(self) -> None:
        with self.metrics.lock:
            self.metrics.duplicates += 1


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _v1_error(422, f"{where} in body must be of type array")
    if len(value) > MAX_SEARCH:
        raise _v1_error(422, f"{where} in body should have at most {MAX_SEARCH} items")
    return value


# -- process --------------------------------------------------------------------------------


def default_v2_db(db: Path) -> Path:
    """Where the v2 database goes when not named: beside the v1 one, `<stem>-v2<suffix>`."""
    return db.with_name(f"{db.stem}-v2{db.suffix}")


class RekorService:
    """Both logs with their HTTP server, for in-process use (tests, benchmarks).

    Args:
        db: the v1 log's database file.
        key: the v1 key (ECDSA P-256).
        origin: the v1 key name (the host name of the v1 base URL).
        key_v2: the v2 key (Ed25519; default: `key`).
        db_v2: the v2 log's database file (default: `default_v2_db(db)`).
        origin_v2: the v2 checkpoint origin (default: `origin`).

    Example:
        with RekorService(tmp / "v1.db", key, "rekor.test", ed, db_v2=tmp / "v2.db") as svc:
            requests.post(svc.url + "/api/v2/log/entries", json=...)
    """

    def __init__(
        self,
        db: Path,
        key: PrivateKey,
        origin: str = DEFAULT_ORIGIN,
        key_v2: PrivateKey | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        log_requests: bool = False,
        *,
        db_v2: Path | None = None,
        origin_v2: str | None = None,
    ) -> None:
        self.store = Store(db)
        self.store_v2: Store | None = None
        try:
            self.store_v2 = Store(db_v2 or default_v2_db(db))
            metrics = _Metrics()
            self.v1 = RekorLog(self.store, key, origin, api=1, metrics=metrics)
            self.v2 = RekorLog(
                self.store_v2, key_v2 or key, origin_v2 or origin, api=2, metrics=metrics
            )
            self.server = Server(RekorApp(self.v1, self.v2), host, port, "rekor", log_requests)
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:41234."""
        return self.server.url

    def start(self) -> RekorService:
        """Serve on a background thread."""
        self.server.start()
        return self

    def close(self) -> None:
        """Close both databases."""
        self.store.close()
        if self.store_v2 is not None:
            self.store_v2.close()

    def stop(self) -> None:
        """Stop serving and close the databases."""
        self.server.stop()
        self.close()

    def __enter__(self) -> RekorService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sigstack rekor",
        description="Two Rekor-compatible transparency logs (v1 and v2 APIs) for the lab.",
    )
    parser.add_argument("--host", default="0.0.0.0", help="listen address (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=3000, help="listen port (default 3000)")
    parser.add_argument(
        "--db", type=Path, default=Path("/var/lib/rekor/v1.db"), help="the v1 log's SQLite file"
    )
    parser.add_argument(
        "--db-v2", type=Path, help="the v2 log's SQLite file (default: <db stem>-v2<suffix>)"
    )
    parser.add_argument(
        "--key", type=Path, required=True, help="v1 signer: PEM ECDSA (P-256) or Ed25519 key"
    )
    parser.add_argument(
        "--key-v2", type=Path, help="v2 checkpoint signer: PEM Ed25519 key (default: --key)"
    )
    parser.add_argument(
        "--origin",
        default=DEFAULT_ORIGIN,
        help=f"v1 key name: its base URL's host name (default {DEFAULT_ORIGIN})",
    )
    parser.add_argument(
        "--origin-v2", help="v2 checkpoint origin: its base URL's host name (default: --origin)"
    )
    parser.add_argument(
        "--print-log-ids", action="store_true", help="print log IDs and public keys as JSON, exit"
    )
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the rekor role until SIGTERM/SIGINT; returns the exit status."""
    args = _parser().parse_args(list(argv) if argv is not None else None)
    try:
        key = load_private_key(args.key.read_bytes(), f"--key {args.key}")
        key_v2 = None
        if args.key_v2 is not None:
            key_v2 = load_private_key(args.key_v2.read_bytes(), f"--key-v2 {args.key_v2}")
        check_key_name(args.origin)
        if args.origin_v2 is not None:
            check_key_name(args.origin_v2)
    except (OSError, ValueError, NoteError) as exc:
        print(f"rekor: {exc}", file=sys.stderr)
        return 2
    if args.print_log_ids:
        print(json.dumps(log_ids(key, key_v2, args.origin, args.origin_v2), indent=2))
        return 0
    try:
        service = RekorService(
            args.db,
            key,
            args.origin,
            key_v2,
            args.host,
            args.port,
            not args.quiet,
            db_v2=args.db_v2,
            origin_v2=args.origin_v2,
        )
    except (StoreError, OSError) as exc:
        print(f"rekor: {exc}", file=sys.stderr)
        return 1
    v1, v2 = service.v1, service.v2
    service.server.log(
        f"v1: origin={v1.origin!r} size={v1.size} logID={v1.log_id.hex()} db={args.db}; "
        f"v2: origin={v2.origin!r} size={v2.size} logId={_b64s(v2.log_id)} "
        f"db={service.store_v2.path if service.store_v2 else '-'}"
    )
    return serve_until_signal(service.server, on_stop=service.close)
