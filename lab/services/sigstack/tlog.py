"""One transparency log: a Merkle tree cached from its `Store`, signed for Rekor v1 or v2.

`RekorLog` appends (group commit, serialized through the database so several processes can
share one file), reads entries, signs checkpoints, builds v1 `LogEntry` and v2
`TransparencyLogEntry` answers, and serves the C2SP tlog-tiles data (tiles, entry bundles) of
a v2 log. The HTTP routes over two of them are in `rekor.py`.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from . import canonical
from .checkpoint import (
    Checkpoint,
    KeySigner,
    PrivateKey,
    check_key_name,
    ecdsa_hash,
    note_key_id,
    spki_key_id,
)
from .entries import _b64s
from .store import NewEntry, Store, StoredEntry, StoreReplaced

DEFAULT_ORIGIN = "rekor.cihub.lab"
MAX_BATCH = 256
_CHECKPOINT_CACHE = 64
TILE_WIDTH = 256
TILE_HEIGHT = 8


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
