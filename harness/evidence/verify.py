"""Offline verification of an evidence bundle (a folder or a packed `.tar.gz`).

Every check ends `ok`, `fail` or `missing`:

- Always required (a `missing` counts as a failure): `manifest` (parses, matches its schema,
  RFC 8785 form, subjects sorted and unique), `files` (every listed file present with its
  digest and size, no file added, no link or special file), `signature` (exactly one of
  `manifest.sigstore.json` / `manifest.dsse.json`, verifying over `manifest.json` against
  what the VERIFIER pins: see below), `complete` (no `INCOMPLETE` marker, and the manifest
  says complete), and `required` (every path in the manifest's `requiredPaths` exists).

Trust is pinned from the verifier's side (`TrustPins`), never taken from the bundle:

- keyless (`manifest.sigstore.json`): a Sigstore bundle with a DSSE envelope whose payload
  is `manifest.json`, checked with sigstore-python against the trusted root of
  `--trust-config`, else of the local trust domain (`lab.trust_domain.local_trust_config()`);
  no pinned root fails the signature. `sigstore/trust_config.json` in a bundle is information
  only. Identity and issuer are checked when pinned, else reported.
- key (`manifest.dsse.json`): a DSSE envelope checked against the `--key` public keys only;
  no pinned key fails the signature ("signed with a local key: pin it with --key").

Reading is hostile-safe: no link is followed anywhere in a bundle (markers included), FIFOs
and devices are never opened, every read is bounded, a `.tar.gz` is extracted within
`ExtractLimits`.
- Pass criteria of the drills, each judged from its files: `sbom-vex`, `provenance`,
  `determinism`, `rekor-inclusion`, `cache-signature`, `policy`, `chaos`, `dr`, plus `audit`
  and the drill's own `verdicts`. **Optional evidence:** a check whose files are all absent is
  `missing` — the drill that writes them did not run — and that fails the bundle only when
  one of its files (or a folder above them) is in the manifest's `requiredPaths`. A check
  with some of its files present and others absent fails.

The bundle passes when every check is `ok`, or `missing` and not required.

What each pass criterion reads (what the drills must write):

- `sbom.json` CycloneDX or SPDX; `vex.json` OpenVEX, CycloneDX VEX or CSAF.
- `slsa-provenance.json`: an in-toto statement with an `https://slsa.dev/provenance/...`
  predicateType, or a DSSE envelope.
- `determinism/diff.txt`: empty when the two builds are identical.
- `rekor/entry.json` (written by `finalize()` after a keyless signature, not listed by the
  manifest): must be the log entry inside `manifest.sigstore.json` (same log index, log id
  and body), and its inclusion proof must lead to a checkpoint signed by a log key of the
  pinned trust root; a key stored in the entry never vouches for it. Required for every
  keyless bundle (its absence is a removal); a key-signed bundle has none.
- `cache/signature.sig`: a signature over `cache/manifest.json` of the manifest's kind (a
  Sigstore bundle checked against the pinned root and identity, or a DSSE envelope checked
  against the pinned keys).
- `policy/decisions.json`: a list (or `{"decisions": [...]}`) of objects with `"allow": true`
  (or `"decision": "allow"`); names from `policy`/`name`/`query`.
- `chaos/journal.json`: a Chaos Toolkit journal: status `completed`, the before hypothesis
  met, every rollback `succeeded`, and the steady state held after the method, or, for a
  negative twin, deviated as the signed outcome and the journal's experiment both expect.
- `dr/report.json`: `{"passed": bool}` or `{"verdict": "pass"|"fail"}` and/or
  `{"checks": [{"name", "ok": bool}]}`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from harness.errors import VerificationFailed
from harness.evidence import _fs, _tlog
from harness.evidence.identity import IdentityPin
from harness.evidence.manifest import (
    DSSE_SIGNATURE,
    LOG_ENTRY,
    MANIFEST,
    MARKER,
    MAX_MANIFEST_BYTES,
    RESERVED,
    SIGNATURE_FILES,
    SIGSTORE_SIGNATURE,
    SIGSTORE_TRUST_CONFIG,
    Manifest,
    ManifestInvalid,
    Predicate,
    read_marker,
)
from harness.evidence.names import escape_name
from harness.evidence.pack import ExtractLimits, bundle_folder, is_tarball
from harness.evidence.signer import (
    KeyVerifier,
    SignatureDigestMismatch,
    SignatureInvalid,
)
from harness.evidence.summary import COMMANDS_LOG
from lab.trust_domain import local_trust_config

if TYPE_CHECKING:  # sigstore-python loads only when a keyless bundle is verified
    from harness.evidence.sigstore_verify import KeylessSignature, KeylessVerifier, PinnedRoot

_logger = logging.getLogger(__name__)

CheckStatus = Literal["ok", "fail", "missing"]
_MAX_NAMED = 10
MAX_JSON_BYTES = 64 * 1024 * 1024
"""Evidence JSON files (SBOM, journals, ...) are judged only up to this size."""
MAX_SIGNATURE_BYTES = 16 * 1024 * 1024
MAX_AUDIT_LINE = 16 * 1024 * 1024


@dataclass(frozen=True)
class TrustPins:
    """What the verifier trusts; nothing of it comes from the bundle.

    Attributes:
        trust_config: the trust config (ClientTrustConfig or TrustedRoot JSON) whose trusted
            root keyless signatures and log entries must chain to; None: the local trust
            domain's (`lab.trust_domain.local_trust_config()`), if `use_local_trust_domain`.
        identity: the signer identity and issuer keyless signatures must name.
        keys: PEM public keys a key-signed (`manifest.dsse.json`) bundle must be signed with.
        use_local_trust_domain: fall back to the local trust domain without `trust_config`.
    """

    trust_config: Path | None = None
    identity: IdentityPin = field(default_factory=IdentityPin)
    keys: tuple[bytes, ...] = ()
    use_local_trust_domain: bool = True

    def root_path(self) -> Path | None:
        if self.trust_config is not None:
            return self.trust_config
        return local_trust_config() if self.use_local_trust_domain else None


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check."""

    name: str
    status: CheckStatus
    detail: str
    required: bool
    evidence: tuple[str, ...] = ()
    """The bundle paths this check reads."""

    @property
    def passed(self) -> bool:
        """`ok`, or `missing` for evidence the manifest does not require."""
        return self.status == "ok" or (self.status == "missing" and not self.required)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "required": self.required,
            "passed": self.passed,
            "detail": self.detail,
            "evidence": list(self.evidence),
        }


@dataclass(frozen=True)
class FileProblems:
    """Files that do not match the manifest, by kind (relative paths, sorted)."""

    modified: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unsafe: tuple[str, ...] = ()
    """Symbolic links and special files, which a bundle must not hold."""

    def __bool__(self) -> bool:
        return bool(self.modified or self.added or self.removed or self.unsafe)

    def to_json(self) -> dict[str, list[str]]:
        """Names as the manifest spells them (escaped: see `names.py`)."""
        return {
            "modified": [escape_name(p) for p in self.modified],
            "added": [escape_name(p) for p in self.added],
            "removed": [escape_name(p) for p in self.removed],
            "unsafe": [escape_name(p) for p in self.unsafe],
        }


@dataclass(frozen=True)
class VerifyReport:
    """Everything `verify_bundle` found."""

    source: str
    name: str
    run_id: str | None
    digest: str | None
    """`sha256:<hex>` of `manifest.json` (the bundle's identity), None without a manifest."""
    signed_by: str | None
    complete: bool
    checks: tuple[CheckResult, ...]
    files: FileProblems = field(default_factory=FileProblems)
    bytes_hashed: int = 0

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if not c.passed)

    def check(self, name: str) -> CheckResult:
        """The result of the check called `name`."""
        for result in self.checks:
            if result.name == name:
                return result
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "bundle": self.source,
            "name": self.name,
            "run_id": self.run_id,
            "digest": self.digest,
            "signed_by": self.signed_by,
            "complete": self.complete,
            "passed": self.passed,
            "checks": [c.to_json() for c in self.checks],
            "files": self.files.to_json(),
        }

    def raise_for_failure(self) -> None:
        """Raise `VerificationFailed` naming the failed checks, if any.

        Raises:
            VerificationFailed: at least one check did not pass.
        """
        failed = self.failures
        if failed:
            summary = "; ".join(f"{c.name}: {c.detail}" for c in failed)
            raise VerificationFailed(f"{self.source}: evidence does not verify: {summary}")


class _Fail(Exception):
    """Raised by a check body: the evidence is there but wrong."""


@dataclass
class _Signed:
    """The manifest signature that verified, and what it lets later checks verify."""

    kind: Literal["keyless", "key"]
    signed_by: str
    keyless: KeylessSignature | None = None
    keyless_verifier: KeylessVerifier | None = None
    key_verifier: KeyVerifier | None = None
    signature: bytes = b""


@dataclass
class _Context:
    root: Path
    present: set[str]
    required_paths: tuple[str, ...]
    pins: TrustPins
    signed: _Signed | None = None
    pinned_root: PinnedRoot | None = None
    predicate: Predicate | None = None

    def read_bytes(self, rel: str, limit: int = MAX_JSON_BYTES) -> bytes:
        return _read(self.root, rel, limit)

    def read_json(self, rel: str) -> Any:
        data = self.read_bytes(rel)
        try:
            return json.loads(data)
        except RecursionError as exc:
            raise _Fail(f"{rel}: not valid JSON (nested too deeply)") from exc
        except ValueError as exc:
            raise _Fail(f"{rel}: not valid JSON ({exc})") from exc


def _read(root: Path, rel: str, limit: int) -> bytes:
    try:
        return _fs.read_regular(root, rel, limit)
    except (_fs.UnsafeEntry, _fs.TooLarge) as exc:
        raise _Fail(str(exc)) from exc
    except OSError as exc:
        raise _Fail(f"{rel}: cannot read ({exc.strerror or exc})") from exc


def _name_some(paths: Sequence[str]) -> str:
    paths = [escape_name(p) for p in paths]
    shown = ", ".join(paths[:_MAX_NAMED])
    return shown + (f" (+{len(paths) - _MAX_NAMED} more)" if len(paths) > _MAX_NAMED else "")


def _covers(outer: str, inner: str) -> bool:
    """Whether required path `outer` names `inner` (equal, or `outer` is a folder above)."""
    if outer == inner:
        return True
    if outer.endswith("/") and inner.startswith(outer):
        return True
    return inner.endswith("/") and outer.startswith(inner)


def _present(ctx: _Context, path: str) -> bool:
    if path.endswith("/"):
        return any(p.startswith(path) for p in ctx.present)
    return path in ctx.present


# -- pass-criteria checks -------------------------------------------------------------------


def _check_sbom_vex(ctx: _Context) -> str:
    sbom = ctx.read_json("sbom.json")
    if not isinstance(sbom, dict) or not (
        sbom.get("bomFormat") == "CycloneDX" or "spdxVersion" in sbom
    ):
        raise _Fail("sbom.json: not a CycloneDX or SPDX document")
    vex = ctx.read_json("vex.json")
    openvex = isinstance(vex, dict) and str(vex.get("@context", "")).startswith(
        "https://openvex.dev/ns"
    )
    cdx = isinstance(vex, dict) and vex.get("bomFormat") == "CycloneDX" and "vulnerabilities" in vex
    csaf = (
        isinstance(vex, dict)
        and isinstance(vex.get("document"), dict)
        and "csaf_version" in vex["document"]
    )
    if not (openvex or cdx or csaf):
        raise _Fail("vex.json: not an OpenVEX, CycloneDX VEX or CSAF document")
    kind = "CycloneDX" if sbom.get("bomFormat") == "CycloneDX" else "SPDX"
    return f"{kind} SBOM and {'OpenVEX' if openvex else 'CycloneDX' if cdx else 'CSAF'} VEX present"


def _check_provenance(ctx: _Context) -> str:
    doc = ctx.read_json("slsa-provenance.json")
    if not isinstance(doc, dict):
        raise _Fail("slsa-provenance.json: not a JSON object")
    if isinstance(doc.get("payload"), str) and "payloadType" in doc:  # a DSSE envelope
        return "SLSA provenance in a DSSE envelope"
    ptype = str(doc.get("predicateType", ""))
    if not ptype.startswith("https://slsa.dev/provenance/"):
        raise _Fail("slsa-provenance.json: predicateType is not https://slsa.dev/provenance/…")
    if not doc.get("subject"):
        raise _Fail("slsa-provenance.json: no subject")
    return f"{ptype} for {len(doc['subject'])} subject(s)"


def _check_determinism(ctx: _Context) -> str:
    """An empty diff passes; a non-empty one passes only as the scenario's expected finding.

    The expectation is taken from the signed manifest (`outcome`) and must agree with the
    files: the diff, `determinism/result.json` (verdict and culprits) and the scenario's
    `expect` in `determinism/scenario.json`. Nothing unsigned can turn a difference into a pass.
    """
    if "determinism/diff.txt" not in ctx.present:
        raise _Fail("determinism/diff.txt is missing (the comparison did not finish)")
    size = os.lstat(ctx.root / "determinism/diff.txt").st_size
    outcome = ctx.predicate.outcome if ctx.predicate is not None else None
    if outcome is not None and outcome.drill != "determinism":
        outcome = None  # another drill's finding (a release's gate) says nothing about the diff
    if not size:
        if outcome is not None and outcome.observed != "reproducible":
            raise _Fail(f"the diff is empty but the manifest says {outcome.observed}")
        return "the two builds are identical (empty diff)"
    report = " (see determinism/report.html)" if "determinism/report.html" in ctx.present else ""
    differ = f"determinism/diff.txt: the two builds differ ({size} bytes of diff){report}"
    if outcome is None or outcome.observed != "not-reproducible" or not outcome.met:
        raise _Fail(differ)
    verdict, culprits = _determinism_result(ctx)
    expect = _determinism_expect(ctx)
    if verdict != "not-reproducible" or expect is None:
        raise _Fail(
            f"{differ}; determinism/result.json or scenario.json does not back the "
            "manifest's expected finding"
        )
    wanted_verdict, wanted_culprits = expect
    if wanted_verdict != "not-reproducible" or (
        wanted_culprits is not None and set(wanted_culprits) != set(culprits)
    ):
        raise _Fail(
            f"{differ}; the scenario expected {wanted_verdict}"
            + (
                f" with culprits {', '.join(sorted(wanted_culprits))}"
                if wanted_culprits is not None
                else ""
            )
            + f", found culprits {', '.join(culprits) or 'none'}"
        )
    named = f" (culprits: {', '.join(culprits)})" if culprits else ""
    return f"the builds differ, as the scenario expects{named}; {size} bytes of diff{report}"


def _determinism_result(ctx: _Context) -> tuple[str, list[str]]:
    if "determinism/result.json" not in ctx.present:
        raise _Fail("determinism/result.json is missing")
    value = ctx.read_json("determinism/result.json")
    culprits = value.get("culprits") if isinstance(value, dict) else None
    if not isinstance(culprits, list) or not all(isinstance(c, str) for c in culprits):
        raise _Fail("determinism/result.json: no list of culprits")
    return str(value.get("verdict")), sorted(culprits)


def _determinism_expect(ctx: _Context) -> tuple[str, list[str] | None] | None:
    if "determinism/scenario.json" not in ctx.present:
        return None
    value = ctx.read_json("determinism/scenario.json")
    expect = value.get("expect") if isinstance(value, dict) else None
    if not isinstance(expect, dict) or not isinstance(expect.get("verdict"), str):
        return None
    culprits = expect.get("culprits")
    if culprits is not None and not (
        isinstance(culprits, list) and all(isinstance(c, str) for c in culprits)
    ):
        raise _Fail("determinism/scenario.json: $.expect.culprits is not a list of names")
    return expect["verdict"], culprits


def _check_rekor(ctx: _Context) -> str:
    document = ctx.read_json(LOG_ENTRY)
    signed = ctx.signed
    if signed is None:
        raise _Fail(f"{LOG_ENTRY}: no verified signature to tie the log entry to")
    if signed.keyless is None or ctx.pinned_root is None:
        raise _Fail(f"{LOG_ENTRY}: a key-signed bundle has no log entry to tie it to")
    try:
        mine = _tlog.entry_identity(document)
        theirs = _tlog.entry_identity(signed.keyless.log_entry)
    except _tlog.LogEntryInvalid as exc:
        raise _Fail(f"{LOG_ENTRY}: {exc}") from exc
    if mine != theirs:
        raise _Fail(
            f"{LOG_ENTRY}: not the log entry of {SIGSTORE_SIGNATURE} (entry {mine.index} "
            f"instead of {theirs.index}, or another log or body)"
        )
    keys = ctx.pinned_root.log_keys()
    if not keys:
        raise _Fail(f"{LOG_ENTRY}: the pinned trust root {ctx.pinned_root.path} has no log keys")
    try:
        return _tlog.verify_log_entry(document, keys)
    except _tlog.LogEntryInvalid as exc:
        raise _Fail(f"{LOG_ENTRY}: {exc}") from exc


def _check_cache(ctx: _Context) -> str:
    data = ctx.read_bytes("cache/manifest.json")
    signature = ctx.read_bytes("cache/signature.sig", MAX_SIGNATURE_BYTES)
    signed = ctx.signed
    try:
        if signed is None:
            raise SignatureInvalid("the manifest signature did not verify, so nothing is pinned")
        if signed.keyless_verifier is not None:
            identity = signed.keyless_verifier.verify_blob(data, signature).signed_by
        elif signed.key_verifier is not None:
            identity = signed.key_verifier.verify(data, signature, payload_type=None)
        else:  # pragma: no cover - a verified signature always has one of the two
            raise SignatureInvalid("no verifier")
    except SignatureDigestMismatch as exc:
        raise _Fail(f"cache/manifest.json: {exc}") from exc
    except SignatureInvalid as exc:
        raise _Fail(f"cache/signature.sig: {exc}") from exc
    return f"cache manifest signed by {identity}"


def _decisions(doc: Any) -> list[Any]:
    if isinstance(doc, dict):
        doc = doc.get("decisions")
    if not isinstance(doc, list):
        raise _Fail('policy/decisions.json: expected a list of decisions (or {"decisions": [...]})')
    return doc


def _check_policy(ctx: _Context) -> str:
    decisions = _decisions(ctx.read_json("policy/decisions.json"))
    if not decisions:
        raise _Fail("policy/decisions.json: no policy decisions")
    denied = []
    for i, item in enumerate(decisions):
        if not isinstance(item, dict):
            raise _Fail(f"policy/decisions.json: decision {i} is not an object")
        allowed = item.get("allow") is True or item.get("decision") == "allow"
        if not allowed:
            denied.append(str(item.get("policy") or item.get("name") or item.get("query") or i))
    if denied:
        raise _Fail(f"policy/decisions.json: not allowed by {_name_some(denied)}")
    return f"all {len(decisions)} policies returned allow"


def _check_chaos(ctx: _Context) -> str:
    """A held steady state passes; a deviated one only as a negative twin's expected finding.

    The before hypothesis must hold and every rollback succeed in either case. A deviation
    (the after hypothesis not met) passes only when the signed manifest's outcome says the
    chaos drill observed `steady-state-failed` and that met the expectation, and the journal's
    own experiment declares that expectation (`extensions[].name == "cihub"`,
    `expect: steady-state-fails`): nothing unsigned, and no one of the two alone, turns a
    deviation into a pass.
    """
    journal = ctx.read_json("chaos/journal.json")
    if not isinstance(journal, dict):
        raise _Fail("chaos/journal.json: not a Chaos Toolkit journal")
    status = journal.get("status")
    if status != "completed":
        raise _Fail(f"chaos/journal.json: status is {status!r}, not 'completed'")
    states = journal.get("steady_states") or {}
    met = {
        phase: state.get("steady_state_met") is True
        for phase in ("before", "after")
        if isinstance(states, dict) and isinstance(state := states.get(phase), dict)
    }
    if not met.get("before", True):
        raise _Fail("chaos/journal.json: steady-state hypothesis not met before the method")
    failed = [
        str((r.get("activity") or {}).get("name", "?"))
        for r in journal.get("rollbacks") or []
        if isinstance(r, dict) and r.get("status") != "succeeded"
    ]
    if failed:
        raise _Fail(f"chaos/journal.json: rollbacks did not succeed: {_name_some(failed)}")
    deviated = bool(journal.get("deviated")) or not met.get("after", True)
    if not deviated:
        return "experiment completed, steady state held before and after, rollbacks succeeded"
    outcome = ctx.predicate.outcome if ctx.predicate is not None else None
    expected_twin = (
        outcome is not None
        and outcome.drill == "chaos"
        and outcome.observed == "steady-state-failed"
        and outcome.met
    )
    if not expected_twin:
        raise _Fail("chaos/journal.json: the steady state deviated")
    if _chaos_expect(journal) != "steady-state-fails":
        raise _Fail(
            "chaos/journal.json: the steady state deviated, and the journal's experiment does "
            "not expect it (extensions: cihub expect steady-state-fails)"
        )
    return (
        "the steady state deviated under the fault, as the negative twin expects; held "
        "before the method, rollbacks succeeded"
    )


def _chaos_expect(journal: dict[str, Any]) -> str | None:
    experiment = journal.get("experiment")
    extensions = experiment.get("extensions") if isinstance(experiment, dict) else None
    for extension in extensions if isinstance(extensions, list) else ():
        if isinstance(extension, dict) and extension.get("name") == "cihub":
            expect = extension.get("expect")
            return expect if isinstance(expect, str) else None
    return None


def _check_dr(ctx: _Context) -> str:
    report = ctx.read_json("dr/report.json")
    if not isinstance(report, dict):
        raise _Fail("dr/report.json: not a JSON object")
    checks = report.get("checks")
    if isinstance(checks, list):
        bad = [
            str(c.get("name", i))
            for i, c in enumerate(checks)
            if not (isinstance(c, dict) and (c.get("ok") is True or c.get("passed") is True))
        ]
        if bad:
            raise _Fail(f"dr/report.json: replay checks failed: {_name_some(bad)}")
    if report.get("passed") is False or report.get("verdict") in ("fail", "failed"):
        raise _Fail("dr/report.json: the drill reported failure")
    if (
        not isinstance(checks, list)
        and report.get("passed") is not True
        and report.get("verdict") != "pass"
    ):
        raise _Fail("dr/report.json: no 'passed', 'verdict' or 'checks' to judge by")
    return f"{len(checks) if isinstance(checks, list) else 'all'} replay checks passed"


def _check_audit(ctx: _Context) -> str:
    total = bad = 0
    try:
        fd = _fs.open_regular(ctx.root, COMMANDS_LOG)
    except (_fs.UnsafeEntry, OSError) as exc:
        raise _Fail(f"{COMMANDS_LOG}: {exc}") from exc
    with open(fd, "rb") as handle:
        while raw := handle.readline(MAX_AUDIT_LINE + 1):
            if len(raw) > MAX_AUDIT_LINE:
                raise _Fail(f"{COMMANDS_LOG}: a line is longer than {MAX_AUDIT_LINE} bytes")
            if not raw.strip():
                continue
            total += 1
            try:
                value = json.loads(raw)
            except (ValueError, RecursionError):
                value = None
            if not isinstance(value, dict) or "argv" not in value or "exit_code" not in value:
                bad += 1
    if bad:
        raise _Fail(f"{COMMANDS_LOG}: {bad} of {total} line(s) are not command records")
    return f"{total} command(s) recorded"


@dataclass(frozen=True)
class _Spec:
    name: str
    evidence: tuple[str, ...]
    body: Callable[[_Context], str]


CRITERIA: tuple[_Spec, ...] = (
    _Spec("sbom-vex", ("sbom.json", "vex.json"), _check_sbom_vex),
    _Spec("provenance", ("slsa-provenance.json",), _check_provenance),
    _Spec("determinism", ("determinism/",), _check_determinism),
    _Spec("rekor-inclusion", (LOG_ENTRY,), _check_rekor),
    _Spec("cache-signature", ("cache/manifest.json", "cache/signature.sig"), _check_cache),
    _Spec("policy", ("policy/decisions.json",), _check_policy),
    _Spec("chaos", ("chaos/journal.json",), _check_chaos),
    _Spec("dr", ("dr/report.json",), _check_dr),
    _Spec("audit", (COMMANDS_LOG,), _check_audit),
)
"""The drills' pass criteria (DESIGN.md), each with the bundle paths it judges."""


def _run_spec(spec: _Spec, ctx: _Context) -> CheckResult:
    required = any(_covers(r, e) for r in ctx.required_paths for e in spec.evidence)
    have = [e for e in spec.evidence if _present(ctx, e)]
    if not have:
        why = "required but absent" if required else "not produced (that drill did not run)"
        return CheckResult(
            spec.name, "missing", f"{_name_some(spec.evidence)}: {why}", required, spec.evidence
        )
    lacking = [e for e in spec.evidence if e not in have]
    if lacking:
        return CheckResult(
            spec.name, "fail", f"{_name_some(lacking)}: missing", required, spec.evidence
        )
    try:
        detail = spec.body(ctx)
    except _Fail as exc:
        return CheckResult(spec.name, "fail", str(exc), required, spec.evidence)
    except (TypeError, AttributeError, KeyError, ValueError, RecursionError) as exc:
        # Evidence of an unexpected shape is a failed check, never a crash of verify.
        detail = f"{_name_some(spec.evidence)}: malformed ({type(exc).__name__})"
        return CheckResult(spec.name, "fail", detail, required, spec.evidence)
    return CheckResult(spec.name, "ok", detail, required, spec.evidence)


# -- integrity checks -----------------------------------------------------------------------


def _scan(root: Path) -> tuple[dict[str, int], list[str]]:
    """Regular files (path → size) and unsafe entries below `root` (no link is followed)."""
    files: dict[str, int] = {}
    unsafe: list[str] = []
    for rel, entry in _fs.walk_files(root, on_error=lambda rel, _exc: unsafe.append(rel)):
        if entry.is_file(follow_symlinks=False):
            files[rel] = entry.stat(follow_symlinks=False).st_size
        else:
            unsafe.append(rel)
    return files, sorted(unsafe)


def _compare(root: Path, manifest: Manifest, disk: Mapping[str, int]) -> tuple[FileProblems, int]:
    listed = {f.path: f for f in manifest.files}
    extra = sorted(p for p in disk if p not in listed and p not in RESERVED)
    removed = sorted(p for p in listed if p not in disk)
    modified = []
    hashed = 0
    buffer = bytearray(_fs.HASH_BUFFER)
    for path, entry in sorted(listed.items()):
        if path not in disk:
            continue
        if disk[path] != entry.size:
            modified.append(path)
            continue
        try:
            fd = _fs.open_regular(root, path)
        except (_fs.UnsafeEntry, OSError):
            modified.append(path)  # swapped for something else since the scan
            continue
        try:
            sha, size = _fs.hash_fd(fd, buffer)
        finally:
            os.close(fd)
        hashed += size
        if sha != entry.sha256 or size != entry.size:
            modified.append(path)
    return FileProblems(tuple(modified), tuple(extra), tuple(removed)), hashed


def _files_detail(problems: FileProblems) -> str:
    parts = []
    for label, names in (
        ("modified", problems.modified),
        ("added", problems.added),
        ("removed", problems.removed),
        ("link or special file", problems.unsafe),
    ):
        if names:
            parts.append(f"{label}: {_name_some(names)}")
    return "; ".join(parts)


def _must(name: str, status: CheckStatus, detail: str, *evidence: str) -> CheckResult:
    """A check every bundle must pass (`missing` counts as a failure)."""
    return CheckResult(name, status, detail, True, evidence)


def _manifest_check(
    root: Path, disk: Mapping[str, int], unsafe: Sequence[str]
) -> tuple[CheckResult, Manifest | None, bytes | None]:
    if MANIFEST in unsafe:
        return _must("manifest", "fail", f"{MANIFEST} is a link or special file"), None, None
    if MANIFEST not in disk:
        return _must("manifest", "missing", f"no {MANIFEST}: never finalized", MANIFEST), None, None
    try:
        data = _read(root, MANIFEST, MAX_MANIFEST_BYTES)
        manifest = Manifest.from_bytes(data, source=MANIFEST)
    except (_Fail, ManifestInvalid) as exc:
        return _must("manifest", "fail", str(exc), MANIFEST), None, None
    detail = f"{len(manifest.files)} files listed, {manifest.digest}"
    return _must("manifest", "ok", detail, MANIFEST), manifest, data


_NO_ROOT = (
    "no pinned trust root: pass --trust-config FILE (the auditor's copy of `cihub trust "
    "export`) or create the local trust domain; the bundle's own "
    f"{SIGSTORE_TRUST_CONFIG} is never trusted"
)


def _signature_check(
    ctx: _Context, disk: Mapping[str, int], unsafe: Sequence[str], manifest_data: bytes | None
) -> CheckResult:
    files = [f for f in SIGNATURE_FILES if f in disk or f in unsafe]
    if not files:
        return _must(
            "signature", "missing", f"unsigned: no {' or '.join(SIGNATURE_FILES)}", *SIGNATURE_FILES
        )
    if len(files) > 1:
        detail = f"both {' and '.join(files)}: a bundle holds exactly one signature"
        return _must("signature", "fail", detail, *files)
    (name,) = files
    if manifest_data is None:
        return _must("signature", "fail", f"{name} signs no valid {MANIFEST}", name)
    try:
        signature = _read(ctx.root, name, MAX_SIGNATURE_BYTES)
        if name == SIGSTORE_SIGNATURE:
            detail = _verify_keyless(ctx, manifest_data, signature)
        else:
            detail = _verify_key(ctx, manifest_data, signature)
    except _Fail as exc:
        return _must("signature", "fail", str(exc), name)
    except SignatureDigestMismatch as exc:
        return _must("signature", "fail", f"{MANIFEST}: {exc} ({name})", name)
    except SignatureInvalid as exc:
        return _must("signature", "fail", f"{name}: {exc}", name)
    return _must("signature", "ok", detail, name)


def _verify_keyless(ctx: _Context, data: bytes, signature: bytes) -> str:
    from harness.evidence.sigstore_verify import KeylessVerifier, PinnedRoot

    path = ctx.pins.root_path()
    if path is None:
        raise _Fail(f"{SIGSTORE_SIGNATURE}: {_NO_ROOT}")
    if ctx.pinned_root is None:
        ctx.pinned_root = PinnedRoot.load(path)
    verifier = KeylessVerifier(ctx.pinned_root, ctx.pins.identity)
    result = verifier.verify_manifest(data, signature)
    ctx.signed = _Signed("keyless", result.signed_by, result, verifier, None, signature)
    pinned = ctx.pins.identity
    who = (
        f"identity pinned to {pinned.describe()}"
        if pinned.pinned
        else "identity not pinned (--cert-identity, --cert-oidc-issuer)"
    )
    note = _copy_note(ctx)
    return f"signed by {result.signed_by} under the pinned trust root {path}; {who}{note}"


def _copy_note(ctx: _Context) -> str:
    """Say so when the bundle's own trust config (information only) is not the pinned root."""
    if SIGSTORE_TRUST_CONFIG not in ctx.present or ctx.pinned_root is None:
        return ""
    try:
        carried = ctx.read_json(SIGSTORE_TRUST_CONFIG)
    except _Fail:
        return f"; {SIGSTORE_TRUST_CONFIG} is unreadable (ignored: information only)"
    pinned = ctx.pinned_root.document
    ours = pinned.get("trustedRoot", pinned)
    theirs = carried.get("trustedRoot", carried) if isinstance(carried, dict) else None
    if theirs == ours:
        return ""
    return f"; {SIGSTORE_TRUST_CONFIG} names another root (ignored: information only)"


def _verify_key(ctx: _Context, data: bytes, signature: bytes) -> str:
    if not ctx.pins.keys:
        raise _Fail(f"{DSSE_SIGNATURE}: signed with a local key: pin it with --key PUB.pem")
    if ctx.pins.identity.pinned:
        raise _Fail(
            f"{DSSE_SIGNATURE}: signed with a local key, which names no identity to match "
            "--cert-identity/--cert-oidc-issuer"
        )
    verifier = KeyVerifier(ctx.pins.keys)
    identity = verifier.verify(data, signature)
    ctx.signed = _Signed("key", identity, None, None, verifier, signature)
    return f"signed by {identity} (a pinned key)"


def _complete_check(
    marker: tuple[Predicate, dict[str, Any]] | None,
    manifest: Manifest | None,
    disk: Mapping[str, int],
) -> CheckResult:
    if marker is not None:
        info = marker[1]
        if info.get("unsafe"):
            return _must("complete", "fail", f"{MARKER} marker present: {info['unsafe']}", MARKER)
        who = f" (written by pid {info['pid']} on {info.get('host')})" if info.get("pid") else ""
        temporaries = sorted(p for p in disk if _fs.TMP_MARK in p)
        partial = f"; partly written: {_name_some(temporaries)}" if temporaries else ""
        detail = f"{MARKER} marker present: the bundle was not finalized{who}{partial}"
        return _must("complete", "fail", detail, MARKER)
    if manifest is None:
        return _must("complete", "fail", f"neither a valid {MANIFEST} nor a {MARKER} marker")
    if not manifest.predicate.complete:
        return _must("complete", "fail", "the manifest says the bundle is incomplete")
    return _must("complete", "ok", "finalized")


def _verdicts_check(predicate: Predicate | None) -> CheckResult:
    verdicts = predicate.verdicts if predicate is not None else {}
    failed = sorted(k for k, v in verdicts.items() if v.verdict == "fail")
    if not verdicts:
        return CheckResult("verdicts", "missing", "the drill recorded no verdicts", False)
    if failed:
        reasons = "; ".join(
            f"{k}: {verdicts[k].detail}" if verdicts[k].detail else k for k in failed
        )
        return CheckResult("verdicts", "fail", f"the drill reported failure: {reasons}", False)
    return CheckResult("verdicts", "ok", f"{len(verdicts)} verdict(s), none failed", False)


def verify_folder(
    root: Path, *, source: str | None = None, pins: TrustPins | None = None
) -> VerifyReport:
    """Verify the bundle folder `root` (see `verify_bundle`)."""
    pins = pins or TrustPins()
    # An explicitly named trust config must be usable whatever the bundle holds (exit 2).
    explicit_root = None
    if pins.trust_config is not None:
        from harness.evidence.sigstore_verify import PinnedRoot

        explicit_root = PinnedRoot.load(pins.trust_config)
    disk, unsafe = _scan(root)
    marker = read_marker(root)
    manifest_result, manifest, manifest_data = _manifest_check(root, disk, unsafe)
    checks = [manifest_result]

    hashed = 0
    problems = FileProblems(unsafe=tuple(unsafe))
    if manifest is None:
        status: CheckStatus = "missing" if MANIFEST not in disk else "fail"
        checks.append(_must("files", status, "no valid manifest to check the files against"))
    else:
        found, hashed = _compare(root, manifest, disk)
        problems = FileProblems(found.modified, found.added, found.removed, tuple(unsafe))
        count = len(manifest.files)
        checks.append(
            _must("files", "fail", _files_detail(problems))
            if problems
            else _must("files", "ok", f"{count} files match their sha256 and size")
        )

    predicate = manifest.predicate if manifest is not None else (marker[0] if marker else None)
    required = predicate.required_paths if predicate is not None else ()
    ctx = _Context(
        root, set(disk) - RESERVED, required, pins, pinned_root=explicit_root, predicate=predicate
    )
    if LOG_ENTRY in disk:
        ctx.present.add(LOG_ENTRY)
    checks.append(_signature_check(ctx, disk, unsafe, manifest_data))
    complete = _complete_check(marker, manifest, disk)
    checks.append(complete)

    absent = [r for r in required if not _present(ctx, r)]
    checks.append(
        _must("required", "fail", f"required but absent: {_name_some(absent)}", *required)
        if absent
        else _must("required", "ok", f"{len(required)} required path(s) present", *required)
    )
    if ctx.signed is not None and ctx.signed.kind == "keyless":
        # finalize() writes the keyless signature's log entry; its absence is a removal.
        ctx.required_paths = (*ctx.required_paths, LOG_ENTRY)
    checks.extend(_run_spec(spec, ctx) for spec in CRITERIA)
    checks.append(_verdicts_check(predicate))

    return VerifyReport(
        source=source or str(root),
        name=root.name,
        run_id=predicate.run_id if predicate is not None else None,
        digest=manifest.digest if manifest is not None else None,
        signed_by=ctx.signed.signed_by if ctx.signed is not None else None,
        complete=complete.status == "ok",
        checks=tuple(checks),
        files=problems,
        bytes_hashed=hashed,
    )


def verify_bundle(
    path: Path,
    *,
    pins: TrustPins | None = None,
    limits: ExtractLimits | None = None,
) -> VerifyReport:
    """Verify a bundle folder or packed `.tar.gz` offline and report every check.

    Args:
        path: a bundle folder, or a `.tar.gz` made by `pack_bundle` (extracted within
            `limits` into a temporary folder first, removed afterwards).
        pins: what the verifier trusts (trust config, identity, keys); default: the local
            trust domain, any identity, no key.
        limits: bounds on extracting a `.tar.gz`.

    Returns:
        the report; `report.passed` says whether the bundle passes, `raise_for_failure()`
        turns a failure into an exception.

    Raises:
        ConfigError: `path` does not exist or is not a bundle, or a pinned trust config or key
            is unusable (bad input, exit code 2).
        VerificationFailed: the archive holds an unsafe member or goes past a limit.

    Example:
        >>> pins = TrustPins(identity=IdentityPin("ci@example.com", issuer="https://idp"))
        >>> report = verify_bundle(Path("evidence/run-1.tar.gz"), pins=pins)
        >>> report.passed, [c.name for c in report.failures]
        (True, [])
    """
    source = str(path)
    with bundle_folder(path, limits) as root:
        if is_tarball(path):
            _logger.debug("extracted %s into %s", path, root)
        return verify_folder(root, source=source, pins=pins)
