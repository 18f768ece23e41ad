"""The Rekor monitor: is the log still the log we saw, and are our entries in it?

Each run fetches the log's current signed checkpoint, checks its signature with the log key from
a trust config (never a key the log hands out), proves the tree grew append-only since the last
verified checkpoint (an RFC 6962 consistency proof), and checks that the given artifact digests
have entries whose inclusion proofs lead to the current root. Only then is the new checkpoint
kept as the last verified one. A smaller tree (a rollback, e.g. a restored old database), a
different root for the same size or an inconsistent proof (a split view) fail loudly.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from harness.errors import ConfigError, InfraError, VerificationFailed
from lab.services.sigstack import checkpoint as notes
from lab.services.sigstack import merkle

_logger = logging.getLogger(__name__)


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

    def to_json(self) -> dict[str, Any]:
        return {
            "log_id": self.log_id,
            "previous": asdict(self.previous) if self.previous else None,
            "current": asdict(self.current),
            "entries": self.entries,
        }


def log_key_from_trust_config(path: Path) -> notes.PublicKey:
    """The Rekor v1 log key (ECDSA) listed in a ClientTrustConfig's trusted root.

    Raises:
        ConfigError: the file is unreadable or lists no usable v1 log key.
    """
    try:
        document = json.loads(path.read_text())
        tlogs = document["trustedRoot"]["tlogs"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a trust config with trustedRoot.tlogs") from exc
    for tlog in tlogs:
        details = str(tlog.get("publicKey", {}).get("keyDetails", ""))
        if "ECDSA" not in details:
            continue
        key = serialization.load_der_public_key(base64.b64decode(tlog["publicKey"]["rawBytes"]))
        if isinstance(key, ec.EllipticCurvePublicKey):
            return key
    raise ConfigError(f"{path}: trustedRoot.tlogs lists no ECDSA (Rekor v1) log key")


class RekorMonitor:
    """Watches one Rekor log through its v1 API.

    Args:
        rekor_url: the log's base URL.
        log_key: the log's checkpoint key, from a trust config (`log_key_from_trust_config`).
        state_dir: where the last verified checkpoint per log is kept (the evidence store).
        timeout: seconds per HTTP request.

    Example:
        monitor = RekorMonitor(url, key, state_dir=Path("evidence/rekor-monitor"))
        monitor.run(["sha256:..."])
    """

    def __init__(
        self, rekor_url: str, log_key: notes.PublicKey, *, state_dir: Path, timeout: float = 5.0
    ) -> None:
        self.rekor_url = rekor_url.rstrip("/")
        self.log_key = log_key
        self.state_dir = state_dir
        self.timeout = timeout
        self.log_id = notes.spki_key_id(log_key).hex()

    @property
    def state_file(self) -> Path:
        return self.state_dir / f"{self.log_id}.json"

    def last_verified(self) -> LogState | None:
        """The checkpoint kept by the last successful run, if any."""
        try:
            return LogState(**json.loads(self.state_file.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{self.state_file}: not a monitor state file") from exc

    def run(self, digests: Sequence[str] = ()) -> MonitorResult:
        """Verify the log's new checkpoint against the last one, and the given entries.

        Raises:
            MonitorAlarm: rollback, split view, bad signature or a missing entry.
            InfraError: the log could not be reached.
        """
        # Entries first, checkpoint second: the log only grows, so every proof fetched before
        # the checkpoint is for a tree no bigger than the checkpoint's.
        found = {digest: self._fetch_entries(digest) for digest in digests}
        current = self._verified_checkpoint(self._get("/api/v1/log"))
        previous = self.last_verified()
        if previous is not None:
            self._check_append_only(previous, current)
        entries = {
            digest: self._check_included(digest, found[digest], current) for digest in digests
        }
        self._save(current)
        _logger.info(
            "log %s verified at size %d (was %s)",
            self.log_id[:16],
            current.size,
            previous.size if previous else "unseen",
        )
        return MonitorResult(self.log_id, previous, current, entries)

    # -- checks ---------------------------------------------------------------------------

    def _verified_checkpoint(self, info: dict[str, Any]) -> LogState:
        serialized = str(info.get("signedTreeHead", ""))
        try:
            note = notes.parse_signed_note(serialized)
            names = {sig.name for sig in note.signatures}
            verifiers = [notes.KeyVerifier(name, self.log_key) for name in sorted(names)]
            body = notes.open_checkpoint(serialized, verifiers)
        except notes.NoteError as exc:
            raise MonitorAlarm(
                f"checkpoint signature does not verify with the log key: {exc}"
            ) from exc
        if body.size != int(info.get("treeSize", -1)) or body.root_hash.hex() != info.get(
            "rootHash"
        ):
            raise MonitorAlarm("the signed checkpoint does not match the log's reported tree head")
        return LogState(
            body.origin,
            body.size,
            body.root_hash.hex(),
            serialized,
            datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )

    def _check_append_only(self, previous: LogState, current: LogState) -> None:
        if current.size < previous.size:
            raise MonitorAlarm(
                f"ROLLBACK: the log shrank from {previous.size} to {current.size} entries "
                f"since it was verified at {previous.verified_at}"
            )
        if current.size == previous.size:
            if current.root_hash != previous.root_hash:
                raise MonitorAlarm(f"SPLIT VIEW: two different roots for tree size {current.size}")
            return
        proof = self._get(f"/api/v1/log/proof?firstSize={previous.size}&lastSize={current.size}")
        try:
            merkle.verify_consistency(
                previous.size,
                current.size,
                bytes.fromhex(previous.root_hash),
                bytes.fromhex(current.root_hash),
                [bytes.fromhex(h) for h in proof.get("hashes") or []],
            )
        except (merkle.ProofError, ValueError) as exc:
            raise MonitorAlarm(
                f"INCONSISTENT: the tree of size {current.size} does not extend the verified "
                f"tree of size {previous.size}: {exc}"
            ) from exc

    def _fetch_entries(self, digest: str) -> dict[str, dict[str, Any]]:
        uuids = self._post("/api/v1/index/retrieve", {"hash": digest})
        if not uuids:
            raise MonitorAlarm(f"no log entry for {digest}")
        return {
            uuid: next(iter(self._get(f"/api/v1/log/entries/{uuid}").values())) for uuid in uuids
        }

    def _check_included(
        self, digest: str, entries: dict[str, dict[str, Any]], current: LogState
    ) -> list[int]:
        indexes = []
        for uuid, entry in entries.items():
            proof = entry["verification"]["inclusionProof"]
            leaf = merkle.hash_leaf(base64.b64decode(entry["body"]))
            size, root = int(proof["treeSize"]), str(proof["rootHash"])
            try:
                merkle.verify_inclusion(
                    leaf,
                    int(proof["logIndex"]),
                    size,
                    [bytes.fromhex(h) for h in proof["hashes"]],
                    bytes.fromhex(root),
                )
            except (merkle.ProofError, ValueError) as exc:
                raise MonitorAlarm(f"{digest}: entry {uuid} is not in the log: {exc}") from exc
            # The proof's tree must be the verified tree or a prefix of it.
            proof_tree = LogState(current.origin, size, root, "", current.verified_at)
            self._check_append_only(proof_tree, current)
            indexes.append(int(entry["logIndex"]))
        return sorted(indexes)

    # -- plumbing -------------------------------------------------------------------------

    def _save(self, state: LogState) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(state), indent=2) + "\n")
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        tmp.replace(self.state_file)

    def _get(self, path: str) -> Any:
        return self._request("GET", path)

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        return self._request("POST", path, body)

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = self.rekor_url + path
        try:
            response = requests.request(method, url, json=body, timeout=self.timeout)
            response.raise_for_status()
            return response.json()
        except requests.RequestException as exc:
            raise InfraError(f"rekor monitor: {method} {url} failed") from exc
        except ValueError as exc:
            raise InfraError(f"rekor monitor: {method} {url} did not answer JSON") from exc
