"""`manifest.json`: an in-toto Statement v1 listing every file of a bundle, in RFC 8785 form.

The statement's `subject[]` holds every file of the bundle except `manifest.json`, the
signature file (`manifest.sigstore.json` or `manifest.dsse.json`) and the `INCOMPLETE` marker,
sorted by name with no name twice, each with its sha256 and size. Names are escaped as
`names.py` says (lossless for any Linux file name). The predicate (type `PREDICATE_TYPE`)
holds the run id, the required paths, the drill's verdicts and step results, tool versions,
the policy digest, the artifacts the drill produced and whether the bundle was finalized
complete. The sha256 of the serialized statement is the bundle's identity.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import rfc8785

from harness._internal.schemas import validator_for
from harness.errors import VerificationFailed
from harness.evidence import _fs
from harness.evidence.names import NameInvalid, escape_name, unescape_name

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://cihub.dev/evidence-manifest/v1"
SCHEMA_FILE = "evidence_manifest.v1.json"

MANIFEST = "manifest.json"
SIGSTORE_SIGNATURE = "manifest.sigstore.json"
"""A keyless signature: a Sigstore bundle v0.3 holding a DSSE envelope over `manifest.json`."""
DSSE_SIGNATURE = "manifest.dsse.json"
"""A key signature (air-gapped): a plain DSSE envelope over `manifest.json`."""
SIGNATURE_FILES = (SIGSTORE_SIGNATURE, DSSE_SIGNATURE)
"""A finalized, signed bundle holds exactly one of these."""
SIGNATURE = SIGSTORE_SIGNATURE
"""Kept for callers written when keyless was the only signature file."""
MARKER = "INCOMPLETE"
"""Written when a bundle is created, removed by `finalize()`: its presence means incomplete."""
SIGSTORE_TRUST_CONFIG = "sigstore/trust_config.json"
"""The trust config a keyless signer saves: information for people, never a trust anchor."""
LOG_ENTRY = "rekor/entry.json"
"""The keyless signature's transparency-log entry, written by `finalize()` after signing (so the
manifest can't list it); `verify` requires it to be the entry inside `manifest.sigstore.json`."""
RESERVED = frozenset({MANIFEST, MARKER, LOG_ENTRY, *SIGNATURE_FILES})
"""Names the manifest does not list (itself, its signature and what is written after it)."""
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
"""`manifest.json` and the `INCOMPLETE` marker are read only up to this size."""

Verdict = Literal["pass", "fail", "skip"]
VERDICTS: tuple[Verdict, ...] = ("pass", "fail", "skip")

StepOutcome = Literal["success", "failure", "error", "timeout", "cancellation", "skip"]
"""A step's result, named as OpenTelemetry's `cicd.pipeline.result` values."""
STEP_OUTCOMES: tuple[StepOutcome, ...] = (
    "success",
    "failure",
    "error",
    "timeout",
    "cancellation",
    "skip",
)


class ManifestInvalid(VerificationFailed):
    """`manifest.json` is unreadable, not canonical or does not match its schema."""


@dataclass(frozen=True)
class FileEntry:
    """One file of a bundle: its relative POSIX path, sha256 (hex) and size in bytes.

    `path` is the name as `os` spells it (undecodable bytes as surrogates); `name` is its
    escaped manifest spelling.
    """

    path: str
    sha256: str
    size: int

    @property
    def name(self) -> str:
        """The manifest spelling of `path` (see `names.py`)."""
        return escape_name(self.path)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "digest": {"sha256": self.sha256},
            "annotations": {"size": self.size},
        }


@dataclass(frozen=True)
class VerdictEntry:
    """A drill's own verdict on one check (e.g. `determinism`), with a short reason."""

    verdict: Verdict
    detail: str = ""


@dataclass(frozen=True)
class StepEntry:
    """One step of a drill (build, compare, sign, log, push, policy, chaos, dr)."""

    name: str
    result: StepOutcome
    duration_s: float
    started_at: str | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        """The step as the manifest predicate spells it (in-toto camelCase)."""
        return self._serialize("durationSeconds", "startedOn")

    def to_record_json(self) -> dict[str, Any]:
        """The step as a pipeline_run record spells it (snake_case, OTel style)."""
        return self._serialize("duration_s", "started_at")

    def _serialize(self, duration_key: str, started_key: str) -> dict[str, Any]:
        value: dict[str, Any] = {
            "name": self.name,
            "result": self.result,
            duration_key: round(max(0.0, self.duration_s), 6),
        }
        if self.started_at:
            value[started_key] = self.started_at
        if self.detail:
            value["detail"] = self.detail
        return value


@dataclass(frozen=True)
class Artifact:
    """Something the drill produced or checked, named by digest (`sha256:<hex>`)."""

    name: str
    digest: str

    def to_json(self) -> dict[str, Any]:
        algorithm, _, value = self.digest.partition(":")
        return {"name": self.name, "digest": {algorithm: value}}


@dataclass(frozen=True)
class DrillOutcome:
    """What a drill observed, what its scenario expected, and whether that was met.

    `result` follows the expectation: a finding the scenario expects (e.g. `not-reproducible`
    with the culprits it names) is a success, an unexpected one a failure, a drill that could
    not judge an error; the same values as a pipeline_run record's `result`.
    """

    drill: str
    observed: str
    expected: str
    met: bool
    result: StepOutcome
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "drill": self.drill,
            "observed": self.observed,
            "expected": self.expected,
            "expectationMet": self.met,
            "result": self.result,
        }
        if self.detail:
            value["detail"] = self.detail
        return value

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> DrillOutcome:
        return cls(
            drill=str(value["drill"]),
            observed=str(value["observed"]),
            expected=str(value["expected"]),
            met=bool(value["expectationMet"]),
            result=value["result"],
            detail=str(value.get("detail", "")),
        )


@dataclass(frozen=True)
class Predicate:
    """The `predicate` of the manifest statement: what the drill claims about its run."""

    run_id: str
    started_on: str
    finished_on: str | None = None
    scenario: str | None = None
    required_paths: tuple[str, ...] = ()
    verdicts: Mapping[str, VerdictEntry] = field(default_factory=dict)
    steps: tuple[StepEntry, ...] = ()
    tool_versions: Mapping[str, str] = field(default_factory=dict)
    policy_digest: str | None = None
    artifacts: tuple[Artifact, ...] = ()
    complete: bool = False
    outcome: DrillOutcome | None = None

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "runId": self.run_id,
            "startedOn": self.started_on,
            "requiredPaths": sorted(set(self.required_paths)),
            "verdicts": {
                name: {"verdict": v.verdict, "detail": v.detail}
                for name, v in sorted(self.verdicts.items())
            },
            "steps": [s.to_json() for s in self.steps],
            "toolVersions": dict(sorted(self.tool_versions.items())),
            "policyDigest": _digest_set(self.policy_digest),
            "artifacts": [a.to_json() for a in self.artifacts],
            "complete": self.complete,
        }
        if self.finished_on:
            value["finishedOn"] = self.finished_on
        if self.scenario:
            value["scenario"] = self.scenario
        if self.outcome is not None:
            value["outcome"] = self.outcome.to_json()
        return value

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Predicate:
        """Parse a predicate written by `to_json` (the caller has checked the schema)."""
        policy = value.get("policyDigest")
        return cls(
            run_id=str(value["runId"]),
            started_on=str(value["startedOn"]),
            finished_on=value.get("finishedOn"),
            scenario=value.get("scenario"),
            required_paths=tuple(value.get("requiredPaths", ())),
            verdicts={
                k: VerdictEntry(v["verdict"], v.get("detail", ""))
                for k, v in value.get("verdicts", {}).items()
            },
            steps=tuple(
                StepEntry(
                    s["name"],
                    s["result"],
                    float(s["durationSeconds"]),
                    s.get("startedOn"),
                    s.get("detail", ""),
                )
                for s in value.get("steps", ())
            ),
            tool_versions=dict(value.get("toolVersions", {})),
            policy_digest=_digest_string(policy) if policy else None,
            artifacts=tuple(
                Artifact(a["name"], _digest_string(a["digest"])) for a in value.get("artifacts", ())
            ),
            complete=bool(value.get("complete", False)),
            outcome=DrillOutcome.from_json(value["outcome"]) if value.get("outcome") else None,
        )


def _digest_set(digest: str | None) -> dict[str, str] | None:
    if not digest:
        return None
    algorithm, _, value = digest.partition(":")
    return {algorithm: value}


def _digest_string(digest_set: Mapping[str, str]) -> str:
    algorithm = "sha256" if "sha256" in digest_set else sorted(digest_set)[0]
    return f"{algorithm}:{digest_set[algorithm]}"


def build_statement(files: Iterable[FileEntry], predicate: Predicate) -> dict[str, Any]:
    """The in-toto Statement v1 for `files` (sorted here by manifest name) and `predicate`."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [f.to_json() for f in sorted(files, key=lambda f: f.name)],
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate.to_json(),
    }


def serialize(statement: Mapping[str, Any]) -> bytes:
    """The RFC 8785 (JCS) bytes of `statement`: what `manifest.json` holds and what is signed."""
    return bytes(rfc8785.dumps(statement))


def manifest_digest(data: bytes) -> str:
    """The bundle's identity: `sha256:<hex>` of the serialized manifest."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Manifest:
    """A parsed, schema-checked `manifest.json`."""

    raw: bytes
    files: tuple[FileEntry, ...]
    predicate: Predicate

    @property
    def digest(self) -> str:
        """`sha256:<hex>` of `raw`: the bundle's identity."""
        return manifest_digest(self.raw)

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = MANIFEST) -> Manifest:
        """Parse and check a serialized manifest.

        Raises:
            ManifestInvalid: not JSON, not RFC 8785 canonical, not matching the schema, a
                subject name twice, subjects not sorted by name, or a name not escaped as
                `names.py` says; the message starts with `source`.
        """
        value = _load_json(data, source)
        errors = validator_for(SCHEMA_FILE).errors(value)
        if errors:
            raise ManifestInvalid(f"{source}: does not match {SCHEMA_FILE}: {errors[0]}")
        try:
            canonical = serialize(value) == data
        except (ValueError, TypeError, UnicodeError, RecursionError):
            canonical = False
        if not canonical:
            raise ManifestInvalid(f"{source}: not in RFC 8785 canonical form")
        names = [str(s["name"]) for s in value["subject"]]
        for before, after in itertools.pairwise(names):
            if before == after:
                raise ManifestInvalid(f"{source}: subject {after!r} is listed twice")
            if before > after:
                raise ManifestInvalid(
                    f"{source}: subject is not sorted by name ({after!r} after {before!r})"
                )
        files = []
        for s in value["subject"]:
            try:
                path = unescape_name(s["name"])
            except NameInvalid as exc:
                raise ManifestInvalid(f"{source}: subject name {exc}") from exc
            files.append(FileEntry(path, s["digest"]["sha256"], int(s["annotations"]["size"])))
        return cls(raw=data, files=tuple(files), predicate=Predicate.from_json(value["predicate"]))

    @classmethod
    def from_path(cls, path: Path) -> Manifest:
        """Read and parse `path` without following a link (see `from_bytes`)."""
        try:
            data = _fs.read_regular(path.parent, path.name, MAX_MANIFEST_BYTES)
        except (OSError, _fs.UnsafeEntry, _fs.TooLarge) as exc:
            raise ManifestInvalid(f"{path}: cannot read the manifest ({exc})") from exc
        return cls.from_bytes(data, source=str(path))


def _load_json(data: bytes, source: str) -> Any:
    try:
        return json.loads(data)
    except RecursionError as exc:
        raise ManifestInvalid(f"{source}: not valid JSON (nested too deeply)") from exc
    except ValueError as exc:
        raise ManifestInvalid(f"{source}: not valid JSON ({exc})") from exc


def marker_bytes(predicate: Predicate, *, pid: int, host: str) -> bytes:
    """Content of the `INCOMPLETE` marker: who is writing the bundle and what it holds so far."""
    value = {
        "cihub": "incomplete evidence bundle: not finalized (the drill is running or crashed)",
        "pid": pid,
        "host": host,
        "predicate": predicate.to_json(),
    }
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()


def read_marker(root: Path) -> tuple[Predicate, dict[str, Any]] | None:
    """The predicate and writer info saved in `root/INCOMPLETE`, or None if there is none.

    A marker that can't be parsed (a crash while writing it can't happen: it is replaced
    atomically, but it may be hand-edited) yields an empty predicate with run id "unknown".
    A marker that is a link, FIFO or device, or too large, is never opened or read: it
    yields the same, with `{"unsafe": reason}` as writer info.
    """
    unknown = Predicate(run_id="unknown", started_on="1970-01-01T00:00:00Z")
    try:
        data = _fs.read_regular(root, MARKER, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        return None
    except (_fs.UnsafeEntry, _fs.TooLarge) as exc:
        return unknown, {"unsafe": str(exc)}
    except OSError as exc:
        return unknown, {"unsafe": f"{MARKER}: cannot read ({exc.strerror})"}
    try:
        value = json.loads(data)
        probe = {  # the marker's predicate must have the manifest predicate's shape
            "_type": STATEMENT_TYPE,
            "subject": [{"name": MARKER, "digest": {"sha256": "0" * 64}, "annotations": {"size": 0}}],
            "predicateType": PREDICATE_TYPE,
            "predicate": value["predicate"],
        }
        if validator_for(SCHEMA_FILE).errors(probe):
            return unknown, {}
        return Predicate.from_json(value["predicate"]), value
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return unknown, {}
