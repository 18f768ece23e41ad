"""The log's durable state: SQLite in WAL mode with `synchronous=FULL`.

Tables:
    meta(key, value)            tree_id (random 63-bit, fixed at creation), created (unix s)
    entries(idx, leaf_hash, body, kind, api_version, api, integrated_time)
                                one row per leaf; idx is the log index, 0..size-1, gap-free
    digests(digest, idx)        "sha256:<hex>"-style keys of artifact/payload digests -> idx
    tree_heads(size, root, ts)  the root after every committed batch, checked on open

One file holds one log. Several processes may append to the same file (labs of one trust
domain each run a rekor container on the same bind-mounted folder): every append runs in one
`BEGIN IMMEDIATE` transaction that first brings the caller's in-memory tree up to the committed
head (`sync`), then numbers the batch from the database's own size, so indexes never fork and
the database, not any process's memory, is the sequencer. The commit has reached the disk when
`append` returns. Readers take a connection from a small pool and never block the writer (WAL).
Opening recomputes the Merkle tree from the stored leaf hashes and refuses a database whose
indexes have gaps or whose last recorded root differs.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .merkle import MerkleTree

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    idx INTEGER PRIMARY KEY,
    leaf_hash BLOB NOT NULL,
    body BLOB NOT NULL,
    kind TEXT NOT NULL,
    api_version TEXT NOT NULL,
    api INTEGER NOT NULL,
    integrated_time INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_leaf_hash ON entries(leaf_hash);
CREATE TABLE IF NOT EXISTS digests (
    digest TEXT NOT NULL,
    idx INTEGER NOT NULL,
    PRIMARY KEY (digest, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tree_heads (
    size INTEGER PRIMARY KEY,
    root BLOB NOT NULL,
    ts INTEGER NOT NULL
);
"""

_POOL_SIZE = 8


class StoreError(Exception):
    """The database can't be opened, is inconsistent, or a write failed."""


class StoreReplaced(StoreError):
    """The database no longer extends the tree this process holds (e.g. an old copy was
    restored underneath it): the caller must reload the tree from scratch."""


@dataclass(frozen=True)
class NewEntry:
    """An entry ready to be appended: its canonical body and what it is indexed under."""

    body: bytes
    leaf_hash: bytes
    kind: str
    api_version: str
    api: int
    digests: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoredEntry:
    """A committed entry."""

    index: int
    leaf_hash: bytes
    body: bytes
    kind: str
    api_version: str
    api: int
    integrated_time: int


class Store:
    """The SQLite file behind one log.

    Example:
        store = Store(Path("/var/lib/rekor/log.db"))
        tree = store.load_tree()
        store.append([entry], first_index=tree.size, integrated_time=now, root=...)
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._writer = self._connect()
            self._writer.execute("PRAGMA journal_mode=WAL")
            self._writer.executescript(_SCHEMA)
            self.tree_id = self._init_meta()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {path}: {exc}") from exc
        self._pool: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        self._closed = False

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            str(self.path), isolation_level=None, check_same_thread=False, timeout=30.0
        )
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def _init_meta(self) -> int:
        conn = self._writer
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT value FROM meta WHERE key='tree_id'").fetchone()
            if row is None:
                tree_id = secrets.randbits(63) or 1
                conn.executemany(
                    "INSERT INTO meta(key, value) VALUES (?, ?)",
                    [("tree_id", str(tree_id)), ("created", str(int(time.time())))],
                )
            else:
                tree_id = int(row[0])
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        return tree_id

    # -- opening ----------------------------------------------------------------------------

    def load_tree(self) -> MerkleTree:
        """Rebuild the Merkle tree from the stored leaves and check it against the last head.

        Raises:
            StoreError: on a gap in the indexes or a root that differs from the recorded one.
        """
        tree = MerkleTree()
        with self._reader() as conn:
            self._sync(conn, tree)
        return tree

    def sync(self, tree: MerkleTree) -> None:
        """Append to `tree` the leaves other writers committed since it was last synced.

        Raises:
            StoreReplaced: the database is behind `tree` or differs from it (reload).
            StoreError: a gap in the indexes or a root that differs from the recorded one.
        """
        with self._reader() as conn:
            self._sync(conn, tree)

    def _sync(self, conn: sqlite3.Connection, tree: MerkleTree) -> None:
        try:
            head = conn.execute(
                "SELECT size, root FROM tree_heads ORDER BY size DESC LIMIT 1"
            ).fetchone()
            size, root = (int(head[0]), bytes(head[1])) if head is not None else (0, None)
            if size < tree.size:
                raise StoreReplaced(f"{self.path}: the log has {size} entries, fewer than seen")
            if size == tree.size:
                if root is not None and tree.root() != root:
                    raise StoreReplaced(f"{self.path}: root at size {size} changed underneath")
                return
            rows = conn.execute(
                "SELECT idx, leaf_hash FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx",
                (tree.size, size),
            ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {self.path}: {exc}") from exc
        extra: list[bytes] = []
        for offset, (idx, leaf) in enumerate(rows):
            if idx != tree.size + offset:
                raise StoreError(
                    f"{self.path}: entry {tree.size + offset} is missing (found {idx})"
                )
            extra.append(bytes(leaf))
        if len(extra) != size - tree.size:
            raise StoreError(f"{self.path}: recorded tree size {size} > {tree.size + len(extra)}")
        if tree.root_after(extra) != root:
            raise StoreError(f"{self.path}: root at size {size} differs from the recorded one")
        for leaf in extra:
            tree.append(leaf)

    # -- writing ----------------------------------------------------------------------------

    def append(
        self,
        tree: MerkleTree,
        entries: Sequence[NewEntry],
        integrated_time: int,
    ) -> tuple[list[StoredEntry], list[tuple[int, StoredEntry]]]:
        """Commit the new ones of `entries` after the database's last index, durably, or nothing.

        Inside one write transaction: sync `tree` to the committed head, drop duplicates (an
        identical leaf already logged, or twice in the batch), number the rest from the
        committed size, insert them with the new root, commit, then append them to `tree`.
        Only one thread of a process may call this at a time (the log's sequencer ensures it);
        other processes wait on the database lock.

        Returns:
            (the stored new entries in order, [(position in `entries`, existing entry)] for
            the duplicates).

        Raises:
            StoreReplaced: the database no longer extends `tree` (reload and retry).
            StoreError: if the write fails; nothing of the batch is then stored.
        """
        conn = self._writer
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._sync(conn, tree)
                start = tree.size
                stored: list[StoredEntry] = []
                duplicates: list[tuple[int, StoredEntry]] = []
                seen: dict[bytes, StoredEntry] = {}
                for position, entry in enumerate(entries):
                    existing = seen.get(entry.leaf_hash)
                    if existing is None:
                        row = conn.execute(
                            "SELECT idx, leaf_hash, body, kind, api_version, api, integrated_time"
                            " FROM entries WHERE leaf_hash = ? ORDER BY idx LIMIT 1",
                            (entry.leaf_hash,),
                        ).fetchone()
                        existing = _stored(row) if row else None
                    if existing is not None:
                        duplicates.append((position, existing))
                        continue
                    new = StoredEntry(
                        start + len(stored),
                        entry.leaf_hash,
                        entry.body,
                        entry.kind,
                        entry.api_version,
                        entry.api,
                        integrated_time,
                    )
                    seen[entry.leaf_hash] = new
                    stored.append(new)
                if stored:
                    root = tree.root_after([e.leaf_hash for e in stored])
                    conn.executemany(
                        "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [
                            (
                                e.index,
                                e.leaf_hash,
                                e.body,
                                e.kind,
                                e.api_version,
                                e.api,
                                e.integrated_time,
                            )
                            for e in stored
                        ],
                    )
                    digest_rows = [
                        (d, new.index)
                        for new, entry in zip(stored, _fresh(entries, duplicates), strict=True)
                        for d in dict.fromkeys(entry.digests)
                    ]
                    if digest_rows:
                        conn.executemany("INSERT OR IGNORE INTO digests VALUES (?, ?)", digest_rows)
                    conn.execute(
                        "INSERT OR REPLACE INTO tree_heads VALUES (?, ?, ?)",
                        (start + len(stored), root, integrated_time),
                    )
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"append to {self.path} failed: {exc}") from exc
        for e in stored:
            tree.append(e.leaf_hash)
        return stored, duplicates

    # -- reading ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        with self._pool_lock:
            conn = self._pool.pop() if self._pool else None
        if conn is None:
            conn = self._connect()
        try:
            yield conn
        finally:
            with self._pool_lock:
                if len(self._pool) < _POOL_SIZE and not self._closed:
                    self._pool.append(conn)
                    conn = None
            if conn is not None:
                conn.close()

    def ping(self) -> bool:
        """True when the database answers a query."""
        try:
            with self._reader() as conn:
                conn.execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return True

    def entry(self, index: int) -> StoredEntry | None:
        """The entry at a log index, if any."""
        with self._reader() as conn:
            row = conn.execute(
                "SELECT idx, leaf_hash, body, kind, api_version, api, integrated_time "
                "FROM entries WHERE idx = ?",
                (index,),
            ).fetchone()
        return _stored(row) if row else None

    def bodies(self, first: int, end: int) -> list[bytes]:
        """The bodies of entries first..end-1, in order (for tlog-tiles entry bundles)."""
        with self._reader() as conn:
            rows = conn.execute(
                "SELECT body FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx", (first, end)
            ).fetchall()
        return [bytes(r[0]) for r in rows]

    def index_of_leaf(self, leaf_hash: bytes, below: int | None = None) -> int | None:
        """The lowest index whose leaf hash is `leaf_hash` (and below `below`, if given)."""
        limit = below if below is not None else 1 << 62
        with self._reader() as conn:
            row = conn.execute(
                "SELECT MIN(idx) FROM entries WHERE leaf_hash = ? AND idx < ?",
                (leaf_hash, limit),
            ).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def indexes_by_digest(self, digest: str, below: int | None = None) -> list[int]:
        """Indexes of entries indexed under `digest` (e.g. "sha256:<hex>"), ascending."""
        limit = below if below is not None else 1 << 62
        with self._reader() as conn:
            rows = conn.execute(
                "SELECT idx FROM digests WHERE digest = ? AND idx < ? ORDER BY idx",
                (digest, limit),
            ).fetchall()
        return [int(r[0]) for r in rows]

    def close(self) -> None:
        """Close every connection; the WAL is folded into the main file first."""
        with self._pool_lock:
            self._closed = True
            pool, self._pool = self._pool, []
        for conn in pool:
            conn.close()
        with contextlib.suppress(sqlite3.Error):
            self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._writer.close()


def _fresh(
    entries: Sequence[NewEntry], duplicates: Sequence[tuple[int, StoredEntry]]
) -> list[NewEntry]:
    skipped = {position for position, _ in duplicates}
    return [entry for position, entry in enumerate(entries) if position not in skipped]


def _rollback(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        conn.execute("ROLLBACK")


def _stored(row: tuple[object, ...]) -> StoredEntry:
    idx, leaf, body, kind, api_version, api, integrated = row
    assert isinstance(idx, int) and isinstance(api, int) and isinstance(integrated, int)
    assert isinstance(leaf, bytes) and isinstance(body, bytes)
    return StoredEntry(idx, leaf, body, str(kind), str(api_version), api, integrated)
