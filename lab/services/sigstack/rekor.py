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
other processes committed. One log is a `tlog.RekorLog`; this module is the HTTP routes over
the two, the process, and the keys.

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
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from .checkpoint import (
    NoteError,
    PrivateKey,
    PublicKey,
    check_key_name,
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
from .store import Store, StoredEntry, StoreError
from .tlog import (
    DEFAULT_ORIGIN,
    TILE_WIDTH,
    DuplicateEntry,
    RekorLog,
    _Metrics,
    metrics_text,
    tile_index_path,
    tile_path_index,
)

__all__ = [
    "DEFAULT_ORIGIN",
    "RekorApp",
    "RekorLog",
    "RekorService",
    "log_ids",
    "main",
    "tile_index_path",
    "tile_path_index",
]

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
