"""The Rekor monitors: is the log still the log we saw, and are our entries in it?

Two logs, two monitors, one discipline. Each run fetches the log's current signed checkpoint,
checks it with the key and the origin pinned in a trust config (never a key or a name the log
hands out: the origin is what clients derive from the trusted root's `baseUrl`), proves the
tree grew append-only since the last verified checkpoint, and checks that the given entries
are in it and that each entry's body really carries the digest asked about. Only then is the
new checkpoint kept as the last verified one. A smaller tree (a rollback, e.g. a restored old
database), a different root for the same size, another origin or an inconsistent proof (a split
view) fail loudly.

- `RekorMonitor` watches a Rekor v1 log through the v1 API (`/api/v1/log`, `/log/proof`, the
  search index, `/log/entries`).
- `TilesMonitor` watches a Rekor v2 (rekor-tiles) log through the C2SP tlog-tiles read path
  only: `/checkpoint`, `/tile/<L>/<N>[.p/<W>]` and `/tile/entries/<N>[.p/<W>]`. Consistency and
  inclusion proofs are computed here from the tiles' hashes, then verified against the
  checkpoints' roots. v2 has no search index, so entries are named by log index.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from harness.errors import ConfigError, InfraError, VerificationFailed
from lab.services.sigstack import checkpoint as notes
from lab.services.sigstack import merkle
from lab.sigstore_trust import REKOR_V1_NAME

_logger = logging.getLogger(__name__)

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
_V2_HASHES = {"SHA2_256": "sha256", "SHA2_384": "sha384", "SHA2_512": "sha512"}


class MonitorAlarm(VerificationFailed):
    """The log is not consistent with what was verified before, or an entry is missing."""


@dataclass(frozen=True)
class LogState:
    """A verified checkpoint of one log."""

    origin: str
    size: int
    root_hash: str
    checkpoint: str
    verified_at: str


@dataclass(frozen=True)
class MonitorResult:
    """What one run proved."""

    log_id: str
    previous: LogState | None
    current: LogState
    entries: dict[str, list[int]] = field(default_factory=dict)
    """Log indexes found, by artifact digest."""
    api: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "api": f"v{self.api}",
            "log_id": self.log_id,
            "previous": asdict(self.previous) if self.previous else None,
            "current": asdict(self.current),
            "entries": self.entries,
        }


@dataclass(frozen=True)
class PinnedLog:
    """One tlog of a trusted root: what a monitor pins.

    Attributes:
        api: 1 (Rekor v1: ECDSA key, origin "<host> - <treeID>") or 2 (Ed25519, origin host).
        base_url: the stable `baseUrl` in the trusted root.
        key: the log's public key.
        name: the base URL's host name: v1's signature name, v2's checkpoint origin.
        url: where the log is reached (the signing config's URL for that API, if any).
    """

    api: int
    base_url: str
    key: notes.PublicKey
    name: str
    url: str | None = None


def _read_trust_config(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text())
        if not isinstance(document["trustedRoot"]["tlogs"], list):
            raise TypeError("tlogs is not a list")
        return dict(document)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a trust config with trustedRoot.tlogs") from exc


def host_name(base_url: str) -> str:
    """The host name of a base URL, as sigstore-go derives a v2 checkpoint origin from it."""
    host = urlsplit(base_url).hostname
    if not host:
        raise ConfigError(f"tlog baseUrl {base_url!r} has no host name")
    return host


def pinned_logs(path: Path) -> dict[int, PinnedLog]:
    """The Rekor v1 and v2 logs a ClientTrustConfig pins, by API version.

    Raises:
        ConfigError: the file is unreadable or lists an unusable log key.
    """
    document = _read_trust_config(path)
    urls: dict[int, str] = {}
    for service in (document.get("signingConfig") or {}).get("rekorTlogUrls") or []:
        version = int(service.get("majorApiVersion", 1))
        urls.setdefault(version, str(service.get("url", "")).rstrip("/"))
    found: dict[int, PinnedLog] = {}
    for tlog in document["trustedRoot"]["tlogs"]:
        try:
            raw = base64.b64decode(tlog["publicKey"]["rawBytes"])
            key = serialization.load_der_public_key(raw)
            base_url = str(tlog["baseUrl"])
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise ConfigError(f"{path}: a tlog has no readable publicKey and baseUrl") from exc
        if isinstance(key, ed25519.Ed25519PublicKey):
            api = 2
        elif isinstance(key, ec.EllipticCurvePublicKey):
            api = 1
        else:
            continue
        found.setdefault(api, PinnedLog(api, base_url, key, host_name(base_url), urls.get(api)))
    return found


def log_key_from_trust_config(path: Path) -> notes.PublicKey:
    """The Rekor v1 log key (ECDSA) listed in a ClientTrustConfig's trusted root.

    Raises:
        ConfigError: the file is unreadable or lists no usable v1 log key.
    """
    logs = pinned_logs(path)
    if 1 not in logs:
        raise ConfigError(f"{path}: trustedRoot.tlogs lists no ECDSA (Rekor v1) log key")
    return logs[1].key


def body_carries_digest(body: bytes, digest: str) -> bool:
    """Whether a log entry body names `digest` ("sha256:<hex>") as what was signed.

    hashedrekord 0.0.1: `spec.data.hash`; dsse 0.0.1: `spec.payloadHash` or `envelopeHash`;
    hashedrekord 0.0.2: `spec.hashedRekordV002.data`.
    """
    algorithm, _, wanted = digest.lower().partition(":")
    try:
        entry = json.loads(body)
        spec = entry["spec"]
        kind, version = entry["kind"], entry["apiVersion"]
        if kind == "hashedrekord" and version == "0.0.1":
            hashed = spec["data"]["hash"]
            return bool(hashed["algorithm"] == algorithm and hashed["value"].lower() == wanted)
        if kind == "dsse" and version == "0.0.1":
            return any(
                spec[name]["algorithm"] == algorithm and spec[name]["value"].lower() == wanted
                for name in ("payloadHash", "envelopeHash")
                if name in spec
            )
        if kind == "hashedrekord" and version == "0.0.2":
            data = spec["hashedRekordV002"]["data"]
            got = base64.b64decode(data["digest"]).hex()
            return bool(_V2_HASHES.get(data["algorithm"]) == algorithm and got == wanted)
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        return False
    return False


class _Monitor:
    """What both monitors share: the state file, the append-only check, HTTP."""

    api = 0

    def __init__(self, url: str, log_id: bytes, *, state_dir: Path, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.state_dir = state_dir
        self.timeout = timeout
        self.log_id = log_id.hex()
        if state_dir.exists() and not state_dir.is_dir():
            raise ConfigError(f"--state-dir {state_dir}: not a folder")

    @property
    def state_file(self) -> Path:
        return self.state_dir / f"{self.log_id}.json"

    def last_verified(self) -> LogState | None:
        """The checkpoint kept by the last successful run, if any."""
        try:
            return LogState(**json.loads(self.state_file.read_text()))
        except FileNotFoundError:
            return None
        except NotADirectoryError as exc:
            raise ConfigError(f"{self.state_dir}: not a folder") from exc
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"{self.state_file}: not a monitor state file") from exc

    def _state(self, body: notes.Checkpoint, serialized: str) -> LogState:
        return LogState(
            body.origin,
            body.size,
            body.root_hash.hex(),
            serialized,
            datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )

    def _check_append_only(
        self, previous: LogState, current: LogState, proof: Sequence[bytes] | None
    ) -> None:
        if previous.origin != current.origin:
            raise MonitorAlarm(
                f"DIFFERENT LOG: origin {current.origin!r} is not the verified {previous.origin!r}"
            )
        if current.size < previous.size:
            raise MonitorAlarm(
                f"ROLLBACK: the log shrank from {previous.size} to {current.size} entries "
                f"since it was verified at {previous.verified_at}"
            )
        if current.size == previous.size:
            if current.root_hash != previous.root_hash:
                raise MonitorAlarm(f"SPLIT VIEW: two different roots for tree size {current.size}")
            return
        try:
            merkle.verify_consistency(
                previous.size,
                current.size,
                bytes.fromhex(previous.root_hash),
                bytes.fromhex(current.root_hash),
                list(proof or []),
            )
        except (merkle.ProofError, ValueError) as exc:
            raise MonitorAlarm(
                f"INCONSISTENT: the tree of size {current.size} does not extend the verified "
                f"tree of size {previous.size}: {exc}"
            ) from exc

    def _save(self, state: LogState) -> None:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.state_file.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(asdict(state), indent=2) + "\n")
            with tmp.open("rb") as handle:
                os.fsync(handle.fileno())
            tmp.replace(self.state_file)
        except OSError as exc:
            raise ConfigError(f"--state-dir {self.state_dir}: cannot keep state: {exc}") from exc

    def _response(self, method: str, path: str, body: Any = None) -> requests.Response:
        url = self.url + path
        try:
            response = requests.request(method, url, json=body, timeout=self.timeout)
        except requests.RequestException as exc:
            raise InfraError(f"rekor monitor: {method} {url} failed") from exc
        return response

    def _json(self, method: str, path: str, body: Any = None) -> Any:
        response = self._response(method, path, body)
        try:
            response.raise_for_status()
            return response.json()
        except requests.RequestException as exc:
            raise InfraError(f"rekor monitor: {method} {self.url + path} failed") from exc
        except ValueError as exc:
            raise InfraError(
                f"rekor monitor: {method} {self.url + path} did not answer JSON"
            ) from exc


class RekorMonitor(_Monitor):
    """Watches a Rekor v1 log through its v1 API.

    Args:
        rekor_url: the log's URL.
        log_key: the log's key, from a trust config (`log_key_from_trust_config`).
        state_dir: where the last verified checkpoint per log is kept (the evidence store).
        timeout: seconds per HTTP request.
        key_name: the pinned signature name: the host name of the log's `baseUrl` in the
            trusted root; checkpoints must have origin "<key_name> - <treeID>".

    Example:
        monitor = RekorMonitor(url, key, state_dir=Path("evidence/rekor-monitor"))
        monitor.run(["sha256:..."])
    """

    api = 1

    def __init__(
        self,
        rekor_url: str,
        log_key: notes.PublicKey,
        *,
        state_dir: Path,
        timeout: float = 5.0,
        key_name: str = REKOR_V1_NAME,
    ) -> None:
        super().__init__(
            rekor_url, notes.spki_key_id(log_key), state_dir=state_dir, timeout=timeout
        )
        self.rekor_url = self.url
        self.log_key = log_key
        self.key_name = key_name

    def run(
        self, digests: Sequence[str] = (), entries: Mapping[int, str] | None = None
    ) -> MonitorResult:
        """Verify the log's new checkpoint against the last one, and the given entries.

        Args:
            digests: artifact digests that must have an entry (found through the search
                index, then checked in the entry body).
            entries: log index -> the digest that entry's body must carry.

        Raises:
            MonitorAlarm: rollback, split view, bad signature or origin, or a missing entry.
            InfraError: the log could not be reached.
        """
        # Entries first, checkpoint second: the log only grows, so every proof fetched before
        # the checkpoint is for a tree no bigger than the checkpoint's.
        found = {digest: self._fetch_by_digest(digest) for digest in digests}
        named = {index: self._fetch_by_index(index, d) for index, d in (entries or {}).items()}
        current = self._verified_checkpoint(self._json("GET", "/api/v1/log"))
        previous = self.last_verified()
        if previous is not None:
            proof = None
            if current.size > previous.size and current.origin == previous.origin:
                proof = self._consistency(previous.size, current.size)
            self._check_append_only(previous, current, proof)
        result_entries = {
            digest: self._check_included(digest, found[digest], current) for digest in digests
        }
        for index, digest in (entries or {}).items():
            result_entries.setdefault(digest, []).extend(
                self._check_included(digest, named[index], current)
            )
        self._save(current)
        _logger.debug(
            "v1 log %s verified at size %d (was %s)",
            self.log_id[:16],
            current.size,
            previous.size if previous else "unseen",
        )
        return MonitorResult(self.log_id, previous, current, result_entries, api=1)

    # -- checks ---------------------------------------------------------------------------

    def _verified_checkpoint(self, info: dict[str, Any]) -> LogState:
        serialized = str(info.get("signedTreeHead", ""))
        verifier = notes.KeyVerifier(self.key_name, self.log_key)
        try:
            body = notes.open_checkpoint(serialized, [verifier])
        except notes.NoteError as exc:
            raise MonitorAlarm(
                f"checkpoint signature does not verify with the pinned key of "
                f"{self.key_name}: {exc}"
            ) from exc
        prefix = f"{self.key_name} - "
        tree_id = body.origin.removeprefix(prefix)
        if not body.origin.startswith(prefix) or not tree_id.isdigit():
            raise MonitorAlarm(
                f"checkpoint origin {body.origin!r} is not '{prefix}<treeID>' (pinned name)"
            )
        if body.size != info.get("treeSize") or body.root_hash.hex() != info.get("rootHash"):
            raise MonitorAlarm("the signed checkpoint does not match the log's reported tree head")
        return self._state(body, serialized)

    def _consistency(self, first: int, last: int) -> list[bytes]:
        proof = self._json("GET", f"/api/v1/log/proof?firstSize={first}&lastSize={last}")
        try:
            return [bytes.fromhex(h) for h in proof.get("hashes") or []]
        except (ValueError, TypeError, AttributeError) as exc:
            raise MonitorAlarm(f"consistency proof {first}->{last} is malformed") from exc

    def _fetch_by_digest(self, digest: str) -> dict[str, dict[str, Any]]:
        uuids = self._json("POST", "/api/v1/index/retrieve", {"hash": digest})
        if not uuids:
            raise MonitorAlarm(f"no log entry for {digest}")
        fetched = {
            uuid: next(iter(self._json("GET", f"/api/v1/log/entries/{uuid}").values()))
            for uuid in uuids
        }
        # The search index is the log's word; the entry body is what was signed and logged.
        carrying = {u: e for u, e in fetched.items() if _body_carries(e, digest)}
        if not carrying:
            raise MonitorAlarm(
                f"no log entry for {digest}: the search index named {len(fetched)} entr(ies) "
                "whose bodies don't carry that digest"
            )
        return carrying

    def _fetch_by_index(self, index: int, digest: str) -> dict[str, dict[str, Any]]:
        response = self._response("GET", f"/api/v1/log/entries?logIndex={index}")
        if response.status_code == 404:
            raise MonitorAlarm(f"no log entry at index {index}")
        try:
            response.raise_for_status()
            entry: dict[str, dict[str, Any]] = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise InfraError(f"rekor monitor: entry {index} could not be read") from exc
        for uuid, value in entry.items():
            if value.get("logIndex") != index or not _body_carries(value, digest):
                raise MonitorAlarm(f"the entry at index {index} does not carry {digest}")
            return {uuid: value}
        raise MonitorAlarm(f"no log entry at index {index}")

    def _check_included(
        self, digest: str, entries: dict[str, dict[str, Any]], current: LogState
    ) -> list[int]:
        indexes = []
        for uuid, entry in entries.items():
            try:
                proof = entry["verification"]["inclusionProof"]
                leaf = merkle.hash_leaf(base64.b64decode(entry["body"]))
                size, root = int(proof["treeSize"]), str(proof["rootHash"])
                merkle.verify_inclusion(
                    leaf,
                    int(proof["logIndex"]),
                    size,
                    [bytes.fromhex(h) for h in proof["hashes"]],
                    bytes.fromhex(root),
                )
                if int(proof["logIndex"]) != int(entry["logIndex"]):
                    raise merkle.ProofError("the proof is for another index")
            except (merkle.ProofError, ValueError, KeyError, TypeError) as exc:
                raise MonitorAlarm(f"{digest}: entry {uuid} is not in the log: {exc}") from exc
            # The proof's tree must be the verified tree or a prefix of it.
            proof_tree = LogState(current.origin, size, root, "", current.verified_at)
            consistency = None
            if size < current.size:
                consistency = self._consistency(size, current.size)
            self._check_append_only(proof_tree, current, consistency)
            indexes.append(int(entry["logIndex"]))
        return sorted(indexes)


def _body_carries(entry: Mapping[str, Any], digest: str) -> bool:
    try:
        body = base64.b64decode(str(entry["body"]))
    except (KeyError, ValueError, binascii.Error):
        return False
    return body_carries_digest(body, digest)


# -- Rekor v2: tlog-tiles -------------------------------------------------------------------


def tile_path(level: int, index: int, width: int) -> str:
    """`tile/<L>/<N>[.p/<W>]` with N in tlog-tiles' x-prefixed 3-digit groups."""
    groups = []
    n = index
    while True:
        groups.append(f"{n % 1000:03d}")
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    encoded = "/".join([*(f"x{g}" for g in groups[:-1]), groups[-1]])
    where = "entries" if level < 0 else str(level)
    partial = f".p/{width}" if width < TILE_WIDTH else ""
    return f"/tile/{where}/{encoded}{partial}"


class TileReader:
    """Complete-subtree hashes of a tree of `size` leaves, read from a log's tiles.

    A hash at level `8L + r` is computed from 2**r hashes of one tile of level L (tiles hold
    the hashes of level 8L); every tile is fetched once, at the width the tree size implies.
    """

    def __init__(self, monitor: TilesMonitor, size: int) -> None:
        self.monitor = monitor
        self.size = size
        self._tiles: dict[tuple[int, int], bytes] = {}
        self.fetched = 0

    def _tile(self, level: int, index: int) -> bytes:
        key = (level, index)
        if key not in self._tiles:
            width = min(TILE_WIDTH, (self.size >> (TILE_HEIGHT * level)) - index * TILE_WIDTH)
            if width < 1:
                raise MonitorAlarm(f"tile {level}/{index} is beyond the tree of {self.size}")
            data = self.monitor._bytes(tile_path(level, index, width))
            if len(data) != 32 * width:
                raise MonitorAlarm(
                    f"tile {tile_path(level, index, width)} has {len(data)} bytes, not {32 * width}"
                )
            self._tiles[key] = data
            self.fetched += 1
        return self._tiles[key]

    def node(self, level: int, index: int) -> bytes:
        """The hash of the complete subtree (level, index)."""
        if (index + 1) << level > self.size:
            raise merkle.ProofError(f"no complete subtree ({level}, {index}) in {self.size}")
        tile_level, rest = divmod(level, TILE_HEIGHT)
        first = index << rest  # its leftmost node on level 8 * tile_level
        tile = self._tile(tile_level, first // TILE_WIDTH)
        offset = first % TILE_WIDTH
        hashes = [tile[32 * i : 32 * i + 32] for i in range(offset, offset + (1 << rest))]
        while len(hashes) > 1:
            hashes = [
                merkle.hash_children(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)
            ]
        return hashes[0]

    def root(self) -> bytes:
        return merkle.mth_from(self.node, 0, self.size)


class TilesMonitor(_Monitor):
    """Watches a Rekor v2 (rekor-tiles) log through the C2SP tlog-tiles read path.

    Args:
        url: the log's URL (where `/checkpoint` and `/tile/...` are served).
        log_key: the log's Ed25519 key, from the trusted root.
        origin: the pinned checkpoint origin: the host name of the log's `baseUrl`.
        state_dir: where the last verified checkpoint per log is kept.
        timeout: seconds per HTTP request.

    Example:
        pinned = pinned_logs(trust_config)[2]
        monitor = TilesMonitor(url, pinned.key, pinned.name, state_dir=Path("evidence/m"))
        monitor.run({5: "sha256:..."})
    """

    api = 2

    def __init__(
        self,
        url: str,
        log_key: notes.PublicKey,
        origin: str,
        *,
        state_dir: Path,
        timeout: float = 5.0,
    ) -> None:
        if not isinstance(log_key, ed25519.Ed25519PublicKey):
            raise ConfigError("a Rekor v2 log key is Ed25519")
        self.verifier = notes.KeyVerifier(origin, log_key)
        super().__init__(url, self.verifier.key_id, state_dir=state_dir, timeout=timeout)
        self.origin = origin
        self.last_reader: TileReader | None = None

    def run(
        self, entries: Mapping[int, str] | None = None, *, audit: bool = False
    ) -> MonitorResult:
        """Verify the new checkpoint, its consistency with the last one, and given entries.

        Args:
            entries: log index -> the digest ("sha256:<hex>") that entry's body must carry.
            audit: also read every entry added since the last verified checkpoint (entry
                bundles), check each is a JSON entry body, and that its leaf hash is the one
                the tiles (and so the signed root) commit to.

        Raises:
            MonitorAlarm: rollback, split view, bad signature or origin, a tile that doesn't
                match the checkpoints, or an entry that is missing or carries another digest.
            InfraError: the log could not be reached.
        """
        serialized = self._text("/checkpoint")
        try:
            body = notes.open_checkpoint(serialized, [self.verifier], origin=self.origin)
        except notes.NoteError as exc:
            raise MonitorAlarm(
                f"checkpoint does not verify with the pinned key and origin {self.origin!r}: {exc}"
            ) from exc
        current = self._state(body, serialized)
        reader = TileReader(self, current.size)
        self.last_reader = reader
        previous = self.last_verified()
        if previous is not None:
            proof = None
            if current.size > previous.size and current.origin == previous.origin:
                try:
                    proof = merkle.consistency_proof_from(reader.node, previous.size, current.size)
                except merkle.ProofError as exc:
                    raise MonitorAlarm(f"INCONSISTENT: tiles can't prove it: {exc}") from exc
            self._check_append_only(previous, current, proof)
        if audit:
            self._audit(reader, previous.size if previous else 0)
        found: dict[str, list[int]] = {}
        for index, digest in sorted((entries or {}).items()):
            self._check_entry(reader, index, digest, body.root_hash)
            found.setdefault(digest, []).append(index)
        self._save(current)
        _logger.debug(
            "v2 log %s verified at size %d (was %s) from %d tiles",
            self.origin,
            current.size,
            previous.size if previous else "unseen",
            reader.fetched,
        )
        return MonitorResult(self.log_id, previous, current, found, api=2)

    def _audit(self, reader: TileReader, first: int) -> None:
        """Every entry in [first, size) hashes to the leaf the tiles commit to."""
        size = reader.size
        for bundle_index in range(first // TILE_WIDTH, -(-size // TILE_WIDTH)):
            width = min(TILE_WIDTH, size - bundle_index * TILE_WIDTH)
            bodies = _split_entry_bundle(self._bytes(tile_path(-1, bundle_index, width)))
            if len(bodies) != width:
                raise MonitorAlarm(f"entry bundle {bundle_index} holds {len(bodies)}, not {width}")
            for offset, body in enumerate(bodies):
                index = bundle_index * TILE_WIDTH + offset
                if index < first:
                    continue
                if reader.node(0, index) != merkle.hash_leaf(body):
                    raise MonitorAlarm(f"entry {index} does not hash to the leaf in its tile")
                try:
                    json.loads(body)
                except ValueError as exc:
                    raise MonitorAlarm(f"entry {index} is not a JSON entry body") from exc

    def _check_entry(self, reader: TileReader, index: int, digest: str, root: bytes) -> None:
        if not 0 <= index < reader.size:
            raise MonitorAlarm(f"no log entry at index {index} (the tree has {reader.size})")
        bundle_index = index // TILE_WIDTH
        width = min(TILE_WIDTH, reader.size - bundle_index * TILE_WIDTH)
        bodies = _split_entry_bundle(self._bytes(tile_path(-1, bundle_index, width)))
        if len(bodies) != width:
            raise MonitorAlarm(f"entry bundle {bundle_index} holds {len(bodies)}, not {width}")
        body = bodies[index % TILE_WIDTH]
        if not body_carries_digest(body, digest):
            raise MonitorAlarm(f"the entry at index {index} does not carry {digest}")
        leaf = merkle.hash_leaf(body)
        try:
            proof = merkle.inclusion_proof_from(reader.node, index, reader.size)
            merkle.verify_inclusion(leaf, index, reader.size, proof, root)
        except merkle.ProofError as exc:
            raise MonitorAlarm(f"entry {index} is not in the log's tree: {exc}") from exc

    def _text(self, path: str) -> str:
        return self._bytes(path).decode("utf-8", errors="replace")

    def _bytes(self, path: str) -> bytes:
        response = self._response("GET", path)
        if response.status_code == 404:
            raise MonitorAlarm(f"the log does not serve {path} (404)")
        try:
            response.raise_for_status()
        except requests.RequestException as exc:
            raise InfraError(f"rekor monitor: GET {self.url + path} failed") from exc
        return response.content


def _split_entry_bundle(data: bytes) -> list[bytes]:
    bodies = []
    offset = 0
    while offset < len(data):
        if offset + 2 > len(data):
            raise MonitorAlarm("entry bundle is truncated")
        length = int.from_bytes(data[offset : offset + 2], "big")
        offset += 2
        if offset + length > len(data):
            raise MonitorAlarm("entry bundle is truncated")
        bodies.append(data[offset : offset + length])
        offset += length
    return bodies
