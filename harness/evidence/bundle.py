"""`EvidenceBundle`: the folder a drill writes its proof into, finalized into a signed manifest.

Life of a bundle:

1. `EvidenceBundle.create(path, run_id=...)` makes the folder and writes the `INCOMPLETE`
   marker, which also journals what the drill has claimed so far (verdicts, steps, ...).
2. The drill writes files (`write_bytes`, `write_json`, `add_file`, ...; each atomic: temporary
   file, fsync, rename), runs commands through `run()` (recorded in `audit/commands.log`), and
   records steps, verdicts, artifacts and tool versions.
3. `finalize(signer)` writes `summary.md` and `summary.html`, then `manifest.json` (in-toto
   Statement, RFC 8785) and the signature into `signer.signature_file`
   (`manifest.sigstore.json` keyless, `manifest.dsse.json` with a key); for a keyless
   signature also `rekor/entry.json`, the log entry inside it. Only then is the marker
   removed. A crash at any point before that leaves the marker, and `verify` reports the
   bundle incomplete.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import platform
import re
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from harness.errors import ConfigError, InfraError, StepFailed
from harness.evidence import _fs
from harness.evidence.audit import AuditLog, CommandResult, Redactor, read_commands
from harness.evidence.manifest import (
    LOG_ENTRY,
    MANIFEST,
    MARKER,
    RESERVED,
    SIGNATURE_FILES,
    SIGSTORE_SIGNATURE,
    STEP_OUTCOMES,
    VERDICTS,
    Artifact,
    DrillOutcome,
    FileEntry,
    Manifest,
    Predicate,
    StepEntry,
    StepOutcome,
    Verdict,
    VerdictEntry,
    build_statement,
    marker_bytes,
    read_marker,
    serialize,
)
from harness.evidence.names import escape_name
from harness.evidence.signer import Signer
from harness.evidence.summary import (
    COMMANDS_LOG,
    MAX_COMMANDS,
    SUMMARY_HTML,
    SUMMARY_MD,
    SummaryData,
    collect_files,
    read_culprits,
    write_summaries,
)

_logger = logging.getLogger(__name__)

_WRITTEN_BY_FINALIZE = frozenset({SUMMARY_MD, SUMMARY_HTML})
_DIGEST = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-fA-F0-9]{32,}$")


def now_rfc3339() -> str:
    """The current UTC time as RFC 3339 with milliseconds, e.g. `2025-01-31T12:00:00.123Z`."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _tool_defaults() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    with contextlib.suppress(metadata.PackageNotFoundError):
        versions["cihub"] = metadata.version("cihub")
    return versions


@dataclass(frozen=True)
class FinalizedBundle:
    """What `EvidenceBundle.finalize()` produced."""

    root: Path
    manifest: Manifest
    signed_by: str | None
    """The signer's identity, or None for an unsigned bundle (which fails `verify`)."""

    @property
    def digest(self) -> str:
        """`sha256:<hex>` of `manifest.json`: the bundle's identity."""
        return self.manifest.digest

    @property
    def complete(self) -> bool:
        return self.manifest.predicate.complete


class StepHandle:
    """Yielded by `EvidenceBundle.step()`: set `detail`, or `result` to override the outcome."""

    def __init__(self) -> None:
        self.detail = ""
        self.result: StepOutcome | None = None


class EvidenceBundle:
    """A drill's evidence folder. Build it with `create()` (or `open()` to continue one).

    Example:
        >>> bundle = EvidenceBundle.create(tmp / "run-1", run_id="run-1", scenario="dual-build")
        >>> bundle.require("determinism/diff.txt")
        >>> with bundle.step("build"):
        ...     bundle.run(["make"], cwd=src, check=True)
        >>> bundle.write_text("determinism/diff.txt", "")
        >>> bundle.set_verdict("determinism", "pass")
        >>> result = bundle.finalize(KeySigner.from_pem_file(Path("signing-key.pem")))
        >>> result.digest
        'sha256:…'
    """

    def __init__(self, root: Path, predicate: Predicate, redactor: Redactor) -> None:
        """Use `create()` or `open()`."""
        self.root = root
        self.redactor = redactor
        self.audit = AuditLog(root / COMMANDS_LOG, redactor)
        self._predicate = predicate
        self._lock = threading.RLock()
        self._finalized: FinalizedBundle | None = None

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        root: Path,
        *,
        run_id: str,
        scenario: str | None = None,
        required: Iterable[str] = (),
        redactor: Redactor | None = None,
        tool_versions: Mapping[str, str] | None = None,
    ) -> EvidenceBundle:
        """Make a new, empty bundle folder at `root` and mark it incomplete.

        Args:
            root: the bundle folder; it must not exist or be empty.
            run_id: the drill run's id (also the pipeline_run record's `run_id`).
            scenario: the scenario (drill) name.
            required: paths (folders end in `/`) this drill must produce; `verify` fails the
                bundle if one is missing.
            redactor: secrets to remove from the audit log (default: from the environment).
            tool_versions: versions to record besides python and cihub.

        Raises:
            ConfigError: `root` exists and is not an empty folder, or a path is invalid.
        """
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise ConfigError(
                f"{root}: cannot create an evidence bundle, it exists and is not empty"
            )
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{root}: cannot create the evidence bundle folder") from exc
        predicate = Predicate(
            run_id=run_id,
            started_on=now_rfc3339(),
            scenario=scenario,
            required_paths=tuple(sorted({_check_required(r) for r in required})),
            tool_versions={**_tool_defaults(), **(tool_versions or {})},
        )
        bundle = cls(root, predicate, redactor or Redactor.from_environ())
        bundle._save_marker()
        _logger.debug("created evidence bundle %s", root)
        return bundle

    @classmethod
    def open(cls, root: Path, *, redactor: Redactor | None = None) -> EvidenceBundle:
        """Continue writing a bundle that is not finalized yet (its marker holds its state).

        Raises:
            ConfigError: `root` is not a bundle, it is already finalized, or its marker is a
                link or special file.
        """
        marker = read_marker(root)
        if marker is None:
            if (root / MANIFEST).is_file():
                raise ConfigError(f"{root}: the evidence bundle is finalized, it can't be changed")
            raise ConfigError(f"{root}: not an evidence bundle (no {MARKER} marker)")
        if marker[1].get("unsafe"):
            raise ConfigError(f"{root}: cannot continue the bundle: {marker[1]['unsafe']}")
        return cls(root, marker[0], redactor or Redactor.from_environ())

    # -- facts -------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def run_id(self) -> str:
        return self._predicate.run_id

    @property
    def predicate(self) -> Predicate:
        """What the bundle claims so far (a frozen snapshot)."""
        return self._predicate

    @property
    def finalized(self) -> FinalizedBundle | None:
        """The result of `finalize()`, or None while the bundle is open."""
        return self._finalized

    # -- writing files -----------------------------------------------------------------------

    def path_for(self, relpath: str) -> Path:
        """The absolute path of `relpath` in the bundle, its folder created.

        For tools that must write a file themselves (e.g. `diffoscope --html`). Prefer the
        `write_*` methods, which are atomic.

        Raises:
            ConfigError: `relpath` leaves the bundle or is a name the bundle reserves.
        """
        self._check_open()
        rel = _fs.safe_relpath(relpath)
        if str(rel) in RESERVED or str(rel) in _WRITTEN_BY_FINALIZE:
            raise ConfigError(f"{relpath}: reserved name in an evidence bundle")
        path = self.root.joinpath(*rel.parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def write_bytes(self, relpath: str, data: bytes) -> Path:
        """Write `data` to `relpath` atomically and return its path."""
        path = self.path_for(relpath)
        _fs.atomic_write_bytes(path, data)
        return path

    def write_text(self, relpath: str, text: str, *, redact: bool = False) -> Path:
        """Write `text` (UTF-8) to `relpath` atomically, with secrets removed if `redact`."""
        return self.write_bytes(relpath, (self.redactor.redact(text) if redact else text).encode())

    def write_json(self, relpath: str, value: Any) -> Path:
        """Write `value` as indented, key-sorted JSON to `relpath` atomically."""
        text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        return self.write_bytes(relpath, text.encode())

    @contextlib.contextmanager
    def open_write(self, relpath: str) -> Iterator[IO[bytes]]:
        """A binary file to stream into; it appears at `relpath` whole, or not at all."""
        with _fs.atomic_writer(self.path_for(relpath)) as handle:
            yield handle

    def add_file(self, relpath: str, source: Path) -> Path:
        """Copy the file `source` into the bundle at `relpath` atomically.

        Raises:
            ConfigError: `source` is not a readable file.
        """
        if not source.is_file():
            raise ConfigError(f"{source}: not a file, cannot add it to the evidence bundle")
        path = self.path_for(relpath)
        _fs.atomic_copy(source, path)
        return path

    def add_tree(self, relpath: str, source: Path) -> list[Path]:
        """Copy every regular file below the folder `source` to `relpath/...` in the bundle.

        Symbolic links are not followed; they are recorded as a file `<name>.symlink` holding
        the link target (its bytes, then a newline), so the bundle never contains a link.
        Names are kept as bytes (any Linux name, the manifest escapes it).

        Raises:
            ConfigError: `source` is not a folder, or two entries would land on one bundle
                path (e.g. a link `foo` and a file `foo.symlink`), or one is already in the
                bundle; nothing is copied then.
        """
        if not source.is_dir():
            raise ConfigError(f"{source}: not a folder, cannot add it to the evidence bundle")
        base = str(_fs.safe_relpath(relpath))
        plan: dict[str, tuple[str, os.DirEntry[str]]] = {}
        for rel, entry in sorted(_fs.walk_files(source)):
            if entry.is_symlink():
                target = f"{base}/{rel}.symlink"
            elif entry.is_file(follow_symlinks=False):
                target = f"{base}/{rel}"
            else:
                continue
            if target in plan:
                raise ConfigError(
                    f"{source}: {plan[target][0]!r} and {rel!r} would both be stored as "
                    f"{target!r} in the evidence bundle"
                )
            if _fs.exists_no_follow(self.root / target):
                raise ConfigError(f"{target}: already in the evidence bundle, not overwritten")
            plan[target] = (rel, entry)
        written = []
        for target, (_, entry) in plan.items():
            if entry.is_symlink():
                link = os.fsencode(os.readlink(entry.path))
                written.append(self.write_bytes(target, link + b"\n"))
            else:
                written.append(self.add_file(target, Path(entry.path)))
        return written

    # -- commands ----------------------------------------------------------------------------

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        input: bytes | None = None,
        timeout: float | None = None,
        check: bool = False,
    ) -> CommandResult:
        """Run a command and record it in `audit/commands.log` (see `AuditLog.run`)."""
        self._check_open()
        return self.audit.run(argv, cwd=cwd, env=env, input=input, timeout=timeout, check=check)

    # -- claims ------------------------------------------------------------------------------

    def require(self, *paths: str) -> None:
        """Add paths this drill must produce (folders end in `/`)."""
        checked = {_check_required(p) for p in paths}
        self._update(required_paths=tuple(sorted(set(self._predicate.required_paths) | checked)))

    def set_verdict(self, check: str, verdict: Verdict, detail: str = "") -> None:
        """Record the drill's verdict on `check` (pass, fail or skip), with a short reason."""
        if verdict not in VERDICTS:
            raise ConfigError(f"verdict {verdict!r} for {check!r}: must be one of {VERDICTS}")
        verdicts = dict(self._predicate.verdicts)
        verdicts[check] = VerdictEntry(verdict, self.redactor.redact(detail))
        self._update(verdicts=verdicts)

    def record_step(
        self,
        name: str,
        result: StepOutcome,
        duration_s: float,
        *,
        started_at: str | None = None,
        detail: str = "",
    ) -> None:
        """Record a finished step (build, compare, sign, log, push, policy, chaos, dr, ...)."""
        if result not in STEP_OUTCOMES:
            raise ConfigError(f"step {name!r}: result {result!r} must be one of {STEP_OUTCOMES}")
        entry = StepEntry(
            name, result, max(0.0, duration_s), started_at, self.redactor.redact(detail)
        )
        self._update(steps=(*self._predicate.steps, entry))

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[StepHandle]:
        """Time a step and record its result: success, or failure / error / cancellation
        from the exception that leaves the block (which is re-raised).

        Example:
            >>> with bundle.step("sign") as step:
            ...     step.detail = "signed 3 artifacts"
        """
        handle = StepHandle()
        started_at = now_rfc3339()
        start = time.monotonic()
        result: StepOutcome = "success"
        try:
            yield handle
        except (StepFailed, AssertionError) as exc:
            result, handle.detail = "failure", handle.detail or _first_line(exc)
            raise
        except (TimeoutError, InfraError) as exc:
            timeout = isinstance(exc, TimeoutError) or "timed out" in str(exc)
            result = "timeout" if timeout else "error"
            handle.detail = handle.detail or _first_line(exc)
            raise
        except KeyboardInterrupt:
            result = "cancellation"
            raise
        except BaseException as exc:
            result, handle.detail = "error", handle.detail or _first_line(exc)
            raise
        finally:
            self.record_step(
                name,
                handle.result or result,
                time.monotonic() - start,
                started_at=started_at,
                detail=handle.detail,
            )

    def set_outcome(self, outcome: DrillOutcome) -> None:
        """Record what the drill observed, what was expected, and whether that was met."""
        self._update(outcome=outcome)

    def set_tool_version(self, tool: str, version: str) -> None:
        """Record the version of a tool the drill used."""
        self._update(tool_versions={**self._predicate.tool_versions, tool: version})

    def set_policy_digest(self, digest: str) -> None:
        """Record the digest (`sha256:<hex>`) of the policy bundle the drill evaluated."""
        self._update(policy_digest=_check_digest(digest))

    def add_artifact(self, name: str, digest: str) -> None:
        """Record an artifact the drill produced or checked, by digest (`sha256:<hex>`).

        A name that is not UTF-8 (a file name is bytes) is recorded with the manifest's `%XX`
        escaping rule (`harness.evidence.names`), like the files' paths."""
        artifact = Artifact(escape_name(name), _check_digest(digest))
        self._update(artifacts=(*self._predicate.artifacts, artifact))

    # -- finalize ----------------------------------------------------------------------------

    def finalize(self, signer: Signer | None = None, *, complete: bool = True) -> FinalizedBundle:
        """Write the summaries, `manifest.json` and its signature; then drop the marker.

        Args:
            signer: signs `manifest.json` into `signer.signature_file`. Without one the
                bundle is unsigned, and `verify` fails it.
            complete: False keeps the `INCOMPLETE` marker (for a drill that was cut short
                but still wants what it has listed and signed).

        Raises:
            ConfigError: the bundle was already finalized, or the signer names a signature
                file that is not one of `SIGNATURE_FILES`.
        """
        signature_file = None
        if signer is not None:
            signature_file = signer.signature_file
            if signature_file not in SIGNATURE_FILES:
                raise ConfigError(
                    f"{signature_file!r}: a signer must write one of {', '.join(SIGNATURE_FILES)}"
                )
        with self._lock:
            self._check_open()
            self._remove_stale_temporaries()
            self._predicate = dataclasses.replace(
                self._predicate, finished_on=now_rfc3339(), complete=complete
            )
            # A signer may need files in the bundle to be checked offline later (a Sigstore
            # signer saves its trust config); they go in before the manifest lists the files.
            extra = getattr(signer, "evidence_files", None)
            for relpath, content in (extra() if callable(extra) else {}).items():
                self.write_bytes(relpath, content)
            files = list(collect_files(self.root, skip=_WRITTEN_BY_FINALIZE))
            commands, total = read_commands(self.root / COMMANDS_LOG, MAX_COMMANDS)
            write_summaries(
                self.root,
                SummaryData(
                    name=self.name,
                    predicate=self._predicate,
                    files=tuple(files),
                    commands=tuple(commands),
                    total_commands=total,
                    complete=complete,
                    signer=signer.identity if signer is not None else None,
                    trust_root=getattr(signer, "trust_root", None),
                    culprits=read_culprits(self.root),
                ),
            )
            for name in sorted(_WRITTEN_BY_FINALIZE):
                sha, size = _fs.hash_file(self.root / name)
                files.append(FileEntry(name, sha, size))
            data = serialize(build_statement(files, self._predicate))
            _fs.atomic_write_bytes(self.root / MANIFEST, data)
            signed_by = None
            for name in (*SIGNATURE_FILES, LOG_ENTRY):  # a bundle holds one signature only
                with contextlib.suppress(FileNotFoundError):
                    (self.root / name).unlink()
            if signer is not None and signature_file is not None:
                signature = signer.sign(data)
                _fs.atomic_write_bytes(self.root / signature_file, signature)
                if signature_file == SIGSTORE_SIGNATURE:
                    self._write_log_entry(signature)
                signed_by = signer.identity
            else:
                _logger.warning("%s: finalized without a signer; verify will fail it", self.root)
            if complete:
                (self.root / MARKER).unlink()
                _fs.fsync_dir(self.root)
            else:
                self._save_marker()
            self._finalized = FinalizedBundle(self.root, Manifest.from_bytes(data), signed_by)
            _logger.info("finalized evidence bundle %s (%s)", self.root, self._finalized.digest)
            return self._finalized

    # -- internals ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._finalized is not None:
            raise ConfigError(f"{self.root}: the evidence bundle is finalized, it can't be changed")

    def _update(self, **changes: Any) -> None:
        with self._lock:
            self._check_open()
            self._predicate = dataclasses.replace(self._predicate, **changes)
            self._save_marker()

    def _write_log_entry(self, sigstore_bundle: bytes) -> None:
        """Save the keyless signature's log entry as `rekor/entry.json` (for people and tools;
        `verify` requires it to equal the entry inside the signature)."""
        try:
            entries = json.loads(sigstore_bundle)["verificationMaterial"]["tlogEntries"]
            entry = entries[0]
        except (ValueError, KeyError, IndexError, TypeError):
            _logger.warning("%s: the keyless signature holds no log entry", self.root)
            return
        text = json.dumps(entry, indent=2, sort_keys=True) + "\n"
        _fs.atomic_write_bytes(self.root / LOG_ENTRY, text.encode())

    def _save_marker(self) -> None:
        data = marker_bytes(self._predicate, pid=os.getpid(), host=socket.gethostname())
        _fs.atomic_write_bytes(self.root / MARKER, data)

    def _remove_stale_temporaries(self) -> None:
        for rel, entry in list(_fs.walk_files(self.root)):
            if _fs.TMP_MARK in entry.name:
                _logger.warning("%s: removing a partly written file %s", self.root, rel)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)


def _check_required(path: str) -> str:
    text = path.rstrip("/")
    _fs.safe_relpath(text)
    return path if path.endswith("/") else text


def _check_digest(digest: str) -> str:
    if not _DIGEST.match(digest):
        raise ConfigError(f"{digest!r}: not a digest of the form sha256:<hex>")
    return digest


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
