"""The cache sentinel: a signed manifest of a cache folder, and the check against it.

`record_cache` lists every file of a folder (sha256 and size) as an in-toto Statement v1 (the
same subject form as an evidence manifest, RFC 8785 bytes) and signs it with a `Signer`:
keyless through the lab (a Sigstore bundle with a DSSE envelope) or with a local key (a DSSE
envelope). `verify_cache` checks the signature against what the VERIFIER pins (`TrustPins`,
through the evidence verifiers: nothing here re-implements them), then compares the folder
with the manifest and names every added, removed and changed file.

Hostile folders are refused or bounded: a link, FIFO, device or socket is never followed or
opened (recording refuses it; verifying reports it as added), a file or a folder larger than
`CacheLimits` is refused, and a manifest naming `..`, absolute or escaped-twice paths is invalid.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.errors import ConfigError
from harness.evidence import _fs
from harness.evidence.manifest import STATEMENT_TYPE, FileEntry, manifest_digest, serialize
from harness.evidence.names import NameInvalid, unescape_name
from harness.evidence.signer import (
    KeyVerifier,
    SignatureDigestMismatch,
    SignatureInvalid,
    Signer,
)
from harness.evidence.verify import TrustPins

PREDICATE_TYPE = "https://cihub.dev/cache-manifest/v1"
MANIFEST_FILE = "cache/manifest.json"
SIGNATURE_FILE = "cache/signature.sig"
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_SIGNATURE_BYTES = 16 * 1024 * 1024

CacheVerdict = Literal["intact", "poisoned", "unverified"]


class CacheRefused(ConfigError):
    """The folder can't be recorded: a link or special file, or past a limit."""


class CacheManifestInvalid(ConfigError):
    """A cache manifest is unreadable, not of its type, or names an unsafe path."""


@dataclass(frozen=True)
class CacheLimits:
    """Bounds of one record or verify, so a hostile folder can't exhaust the machine."""

    max_files: int = 200_000
    max_file_bytes: int = 8 * 1024**3
    max_total_bytes: int = 64 * 1024**3


@dataclass(frozen=True)
class CacheScan:
    """The regular files of a folder, and the entries that are not (links, FIFOs, ...)."""

    files: tuple[FileEntry, ...]
    unsafe: tuple[str, ...] = ()


@dataclass(frozen=True)
class CacheManifest:
    """A parsed cache manifest: its exact bytes and its files."""

    raw: bytes
    files: tuple[FileEntry, ...]
    root: str

    @property
    def digest(self) -> str:
        return manifest_digest(self.raw)

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str) -> CacheManifest:
        """Parse and check a manifest.

        Raises:
            CacheManifestInvalid: naming `source` and what is wrong.
        """
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise CacheManifestInvalid(f"{source}: not JSON") from exc
        if not isinstance(doc, dict) or doc.get("_type") != STATEMENT_TYPE:
            raise CacheManifestInvalid(f"{source}: _type: not an in-toto Statement v1")
        if doc.get("predicateType") != PREDICATE_TYPE:
            raise CacheManifestInvalid(f"{source}: predicateType: not {PREDICATE_TYPE}")
        subjects = doc.get("subject")
        if not isinstance(subjects, list):
            raise CacheManifestInvalid(f"{source}: subject: not a list")
        files = []
        seen: set[str] = set()
        for i, item in enumerate(subjects):
            files.append(_subject(item, f"{source}: subject[{i}]"))
            if files[-1].path in seen:
                raise CacheManifestInvalid(f"{source}: subject[{i}].name: listed twice")
            seen.add(files[-1].path)
        predicate = doc.get("predicate")
        root = predicate.get("root") if isinstance(predicate, dict) else None
        return cls(data, tuple(files), root if isinstance(root, str) else "")


def _subject(item: Any, where: str) -> FileEntry:
    if not isinstance(item, dict):
        raise CacheManifestInvalid(f"{where}: not an object")
    name = item.get("name")
    digest = item.get("digest")
    annotations = item.get("annotations")
    if not isinstance(name, str):
        raise CacheManifestInvalid(f"{where}.name: not a string")
    try:
        path = unescape_name(name)
        _fs.safe_relpath(path)
    except (NameInvalid, ConfigError) as exc:
        raise CacheManifestInvalid(f"{where}.name: {name!r} is not a safe relative path") from exc
    sha = digest.get("sha256") if isinstance(digest, dict) else None
    if not isinstance(sha, str) or len(sha) != 64 or not all(c in "0123456789abcdef" for c in sha):
        raise CacheManifestInvalid(f"{where}.digest.sha256: not a lower-case sha256 hex digest")
    size = annotations.get("size") if isinstance(annotations, dict) else None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise CacheManifestInvalid(f"{where}.annotations.size: not a size in bytes")
    return FileEntry(path, sha, size)


@dataclass(frozen=True)
class CacheDiff:
    """How a folder differs from its manifest."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def lines(self) -> list[str]:
        return [
            *(f"added: {p}" for p in self.added),
            *(f"removed: {p}" for p in self.removed),
            *(f"changed: {p}" for p in self.changed),
        ]


@dataclass(frozen=True)
class CacheCheck:
    """The outcome of `verify_cache`: the signature, the diff and the verdict."""

    verdict: CacheVerdict
    files: int
    diff: CacheDiff
    manifest_digest: str
    signature_verified: bool
    signed_by: str | None = None
    problems: tuple[str, ...] = field(default_factory=tuple)

    def record_json(self) -> dict[str, Any]:
        """The pipeline_run `cache` object (schema v1.4)."""
        return {
            "verdict": self.verdict,
            "files": self.files,
            "added": list(self.diff.added),
            "removed": list(self.diff.removed),
            "changed": list(self.diff.changed),
            "manifest_digest": self.manifest_digest,
            "signature_verified": self.signature_verified,
        }

    def lines(self) -> list[str]:
        head = {
            "intact": f"cache intact: {self.files} files match the manifest",
            "poisoned": "cache POISONED: it differs from its signed manifest",
            "unverified": "cache UNVERIFIED: the manifest's signature did not verify",
        }[self.verdict]
        out = [head, *self.problems, *self.diff.lines()]
        if self.signed_by:
            out.append(f"manifest {self.manifest_digest} signed by {self.signed_by}")
        return out


def scan_cache(root: Path, limits: CacheLimits | None = None) -> CacheScan:
    """Hash every regular file below `root`, following no link and opening nothing else.

    Raises:
        CacheRefused: `root` is not a folder, or a file or the folder is past `limits`.
    """
    limits = limits or CacheLimits()
    if not root.is_dir() or root.is_symlink():
        raise CacheRefused(f"{root}: not a folder")
    files: list[FileEntry] = []
    unsafe: list[str] = []
    total = 0
    buffer = bytearray(_fs.HASH_BUFFER)
    for rel, entry in _fs.walk_files(root, on_error=lambda rel, _exc: unsafe.append(rel)):
        if not entry.is_file(follow_symlinks=False):
            unsafe.append(rel)
            continue
        if len(files) >= limits.max_files:
            raise CacheRefused(f"{root}: more than {limits.max_files} files")
        try:
            fd = _fs.open_regular(root, rel)
        except (_fs.UnsafeEntry, OSError):
            unsafe.append(rel)  # swapped for a link or special file since it was listed
            continue
        try:
            size = os.fstat(fd).st_size
            if size > limits.max_file_bytes:
                raise CacheRefused(f"{root / rel}: {size} bytes, more than {limits.max_file_bytes}")
            total += size
            if total > limits.max_total_bytes:
                raise CacheRefused(f"{root}: more than {limits.max_total_bytes} bytes in all")
            sha, read = _fs.hash_fd(fd, buffer)
        finally:
            os.close(fd)
        files.append(FileEntry(rel, sha, read))
    return CacheScan(tuple(files), tuple(sorted(unsafe)))


def build_manifest(root: Path, scan: CacheScan) -> bytes:
    """The RFC 8785 bytes of the cache manifest of `scan` (no unsafe entry allowed).

    Raises:
        CacheRefused: the folder holds a link or special file (named).
    """
    if scan.unsafe:
        raise CacheRefused(
            f"{root}: {', '.join(scan.unsafe[:10])}: a link or special file; a cache manifest "
            "lists regular files only"
        )
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [f.to_json() for f in sorted(scan.files, key=lambda f: f.name)],
        "predicateType": PREDICATE_TYPE,
        "predicate": {"root": root.name, "files": len(scan.files)},
    }
    return serialize(statement)


@dataclass(frozen=True)
class RecordedCache:
    """A signed cache manifest, written to disk."""

    manifest: Path
    signature: Path
    files: int
    digest: str
    signed_by: str


def signature_path_for(manifest: Path) -> Path:
    """Where the signature of `manifest` lives: `signature.sig` beside a `manifest.json` (the
    bundle layout), else `<manifest>.sig`."""
    if manifest.name == Path(MANIFEST_FILE).name:
        return manifest.with_name(Path(SIGNATURE_FILE).name)
    return manifest.with_name(manifest.name + ".sig")


def record_cache(
    root: Path, manifest_path: Path, signer: Signer, limits: CacheLimits | None = None
) -> RecordedCache:
    """Write the signed manifest of the folder `root` to `manifest_path` (and its signature to
    `signature_path_for(manifest_path)`).

    Raises:
        CacheRefused: the folder can't be recorded (see `scan_cache`, `build_manifest`).
    """
    signature_path = signature_path_for(manifest_path)
    for written in (manifest_path, signature_path):
        if written.absolute().resolve().is_relative_to(root.absolute().resolve()):
            raise CacheRefused(
                f"{written}: inside {root}, the folder it lists: write it somewhere else"
            )
    scan = scan_cache(root, limits)
    data = build_manifest(root, scan)
    signature = signer.sign(data)
    # The signature first: a manifest on disk always has its signature beside it.
    _fs.atomic_write_bytes(signature_path, signature)
    _fs.atomic_write_bytes(manifest_path, data)
    return RecordedCache(
        manifest_path, signature_path, len(scan.files), manifest_digest(data), signer.identity
    )


def diff_cache(manifest: CacheManifest, scan: CacheScan) -> CacheDiff:
    """Added (incl. links and special files), removed and changed files, each sorted."""
    listed = {f.path: f for f in manifest.files}
    found = {f.path: f for f in scan.files}
    added = sorted({*(p for p in found if p not in listed), *scan.unsafe})
    removed = sorted(p for p in listed if p not in found and p not in scan.unsafe)
    changed = sorted(
        p
        for p, entry in found.items()
        if p in listed and (entry.sha256, entry.size) != (listed[p].sha256, listed[p].size)
    )
    return CacheDiff(tuple(added), tuple(removed), tuple(changed))


def verify_signature(data: bytes, signature: bytes, pins: TrustPins) -> str:
    """Who signed `data` (`signature` a Sigstore bundle or a DSSE envelope), under `pins`.

    Raises:
        SignatureInvalid: it does not verify under what is pinned (the message says why).
    """
    try:
        document = json.loads(signature)
    except (ValueError, RecursionError) as exc:
        raise SignatureInvalid("not a Sigstore bundle or DSSE envelope (not JSON)") from exc
    if isinstance(document, dict) and "payloadType" in document:
        if not pins.keys:
            raise SignatureInvalid("signed with a local key: pin it with --key PUB.pem")
        return KeyVerifier(pins.keys).verify(data, signature, payload_type=None)
    from harness.evidence.sigstore_verify import KeylessVerifier, PinnedRoot

    root = pins.root_path()
    if root is None:
        raise SignatureInvalid("no pinned trust root: pass --trust-config FILE")
    return (
        KeylessVerifier(PinnedRoot.load(root), pins.identity).verify_blob(data, signature).signed_by
    )


def verify_cache(
    root: Path,
    manifest_data: bytes,
    signature: bytes | None,
    pins: TrustPins,
    *,
    source: str = MANIFEST_FILE,
    limits: CacheLimits | None = None,
) -> CacheCheck:
    """Check the manifest's signature, then the folder against the manifest.

    A signature that does not verify makes the cache `unverified` (a manifest nobody vouches
    for proves nothing), any difference makes it `poisoned`.

    Raises:
        CacheManifestInvalid: the manifest is malformed.
        CacheRefused: the folder is not a folder or is past `limits`.
    """
    manifest = CacheManifest.from_bytes(manifest_data, source=source)
    problems: list[str] = []
    signed_by: str | None = None
    if signature is None:
        problems.append(f"{source}: no signature beside it")
    else:
        try:
            signed_by = verify_signature(manifest_data, signature, pins)
        except SignatureDigestMismatch as exc:
            problems.append(f"{source}: {exc}")
        except SignatureInvalid as exc:
            problems.append(f"signature: {exc}")
    diff = diff_cache(manifest, scan_cache(root, limits))
    verdict: CacheVerdict = "poisoned" if diff else "intact"
    if signed_by is None:
        verdict = "unverified"
    return CacheCheck(
        verdict,
        len(manifest.files),
        diff,
        manifest.digest,
        signed_by is not None,
        signed_by,
        tuple(problems),
    )


def read_bounded(path: Path, limit: int, what: str) -> bytes:
    """The bytes of a regular file given on the command line, at most `limit` of them.

    Raises:
        ConfigError: missing, a link or special file, or too large; naming the file.
    """
    try:
        return _fs.read_regular(path.parent, path.name, limit)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such {what}") from exc
    except (OSError, _fs.UnsafeEntry, _fs.TooLarge) as exc:
        raise ConfigError(f"{path}: cannot read the {what} ({exc})") from exc
