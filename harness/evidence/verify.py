"""Offline verification of an evidence bundle (a folder or a packed `.tar.gz`).

Every check ends `ok`, `fail` or `missing`:

- Always required (a `missing` counts as a failure): `manifest` (parses, matches its schema,
  RFC 8785 form), `files` (every listed file present with its digest and size, no file
  added, no link or special file), `signature` (`manifest.sigstore.json` verifies over
  `manifest.json`, for the expected identity if one is given), `complete` (no `INCOMPLETE`
  marker, and the manifest says complete), and `required` (every path in the manifest's
  `requiredPaths` exists).
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
- `rekor/entry.json`: a Sigstore TransparencyLogEntry (protobuf JSON) or Rekor v1's
  `{uuid: {...}}` response, optionally wrapped as ``{"tlogEntry": ..., "logPublicKey":
  {"rawBytes": <base64 DER>}}``; the inclusion proof must lead to the root of a checkpoint
  signed by the log key (given to `verify_bundle(log_keys=...)` or from `logPublicKey`).
- `cache/signature.sig`: a Sigstore bundle over `cache/manifest.json` (checked with the same
  verifier as the manifest).
- `policy/decisions.json`: a list (or `{"decisions": [...]}`) of objects with `"allow": true`
  (or `"decision": "allow"`); names from `policy`/`name`/`query`.
- `chaos/journal.json`: a Chaos Toolkit journal: status `completed`, not deviated, both
  steady-state hypotheses met, every rollback `succeeded`.
- `dr/report.json`: `{"passed": bool}` or `{"verdict": "pass"|"fail"}` and/or
  `{"checks": [{"name", "ok": bool}]}`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.errors import VerificationFailed
from harness.evidence import _fs, _tlog
from harness.evidence.manifest import (
    MANIFEST,
    MARKER,
    RESERVED,
    SIGNATURE,
    SIGSTORE_TRUST_CONFIG,
    Manifest,
    ManifestInvalid,
    Predicate,
    read_marker,
)
from harness.evidence.pack import bundle_folder, is_tarball
from harness.evidence.signer import (
    SignatureDigestMismatch,
    SignatureInvalid,
    Verifier,
    default_verifier,
)
from harness.evidence.summary import COMMANDS_LOG

_logger = logging.getLogger(__name__)

CheckStatus = Literal["ok", "fail", "missing"]
_MAX_NAMED = 10


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
        return {
            "modified": list(self.modified),
            "added": list(self.added),
            "removed": list(self.removed),
            "unsafe": list(self.unsafe),
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
class _Context:
    root: Path
    present: set[str]
    required_paths: tuple[str, ...]
    verifier: Verifier | None
    log_keys: Sequence[_tlog.PublicKey] | None
    predicate: Predicate | None = None

    def read_json(self, rel: str) -> Any:
        try:
            return json.loads((self.root / rel).read_bytes())
        except ValueError as exc:
            raise _Fail(f"{rel}: not valid JSON ({exc})") from exc
        except OSError as exc:
            raise _Fail(f"{rel}: cannot read ({exc.strerror})") from exc


def _name_some(paths: Sequence[str]) -> str:
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
    size = (ctx.root / "determinism/diff.txt").stat().st_size
    outcome = ctx.predicate.outcome if ctx.predicate is not None else None
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
        raise _Fail(f"{differ}; determinism/result.json or scenario.json does not back the "
                    "manifest's expected finding")
    wanted_verdict, wanted_culprits = expect
    if wanted_verdict != "not-reproducible" or (
        wanted_culprits is not None and set(wanted_culprits) != set(culprits)
    ):
        raise _Fail(f"{differ}; the scenario expected {wanted_verdict}"
                    + (f" with culprits {', '.join(sorted(wanted_culprits))}"
                       if wanted_culprits is not None else "")
                    + f", found culprits {', '.join(culprits) or 'none'}")
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
    keys = ctx.log_keys
    if keys is None and SIGSTORE_TRUST_CONFIG in ctx.present:
        keys = _trusted_log_keys(ctx)
    try:
        return _tlog.verify_log_entry(ctx.read_json("rekor/entry.json"), keys)
    except _tlog.LogEntryInvalid as exc:
        raise _Fail(f"rekor/entry.json: {exc}") from exc


def _trusted_log_keys(ctx: _Context) -> list[_tlog.PublicKey]:
    """The transparency-log keys of the trust config the Sigstore signer saved."""
    document = ctx.read_json(SIGSTORE_TRUST_CONFIG)
    tlogs = (document.get("trustedRoot") or {}).get("tlogs") or []
    try:
        return [_tlog.load_public_key(tlog["publicKey"]) for tlog in tlogs]
    except (KeyError, TypeError, _tlog.LogEntryInvalid) as exc:
        raise _Fail(f"{SIGSTORE_TRUST_CONFIG}: a tlog key is malformed ({exc})") from exc


def _check_cache(ctx: _Context) -> str:
    data = (ctx.root / "cache/manifest.json").read_bytes()
    signature = (ctx.root / "cache/signature.sig").read_bytes()
    try:
        verifier = ctx.verifier or default_verifier(signature, ctx.root / SIGSTORE_TRUST_CONFIG)
        identity = verifier.verify(data, signature)
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
    journal = ctx.read_json("chaos/journal.json")
    if not isinstance(journal, dict):
        raise _Fail("chaos/journal.json: not a Chaos Toolkit journal")
    status = journal.get("status")
    if status != "completed":
        raise _Fail(f"chaos/journal.json: status is {status!r}, not 'completed'")
    if journal.get("deviated"):
        raise _Fail("chaos/journal.json: the steady state deviated")
    states = journal.get("steady_states") or {}
    for phase in ("before", "after"):
        state = states.get(phase) if isinstance(states, dict) else None
        if isinstance(state, dict) and state.get("steady_state_met") is not True:
            raise _Fail(f"chaos/journal.json: steady-state hypothesis not met {phase} the method")
    failed = [
        str((r.get("activity") or {}).get("name", "?"))
        for r in journal.get("rollbacks") or []
        if isinstance(r, dict) and r.get("status") != "succeeded"
    ]
    if failed:
        raise _Fail(f"chaos/journal.json: rollbacks did not succeed: {_name_some(failed)}")
    return "experiment completed, steady state held before and after, rollbacks succeeded"


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
    with (ctx.root / COMMANDS_LOG).open("rb") as handle:
        for raw in handle:
            if not raw.strip():
                continue
            total += 1
            try:
                value = json.loads(raw)
            except ValueError:
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
    _Spec("rekor-inclusion", ("rekor/entry.json",), _check_rekor),
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
    return CheckResult(spec.name, "ok", detail, required, spec.evidence)


# -- integrity checks -----------------------------------------------------------------------


def _scan(root: Path) -> tuple[dict[str, int], list[str]]:
    """Regular files (path → size) and unsafe entries below `root`."""
    files: dict[str, int] = {}
    unsafe = []
    for rel, entry in _fs.walk_files(root):
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
        sha, size = _fs.hash_file(root / path, buffer)
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


def _manifest_check(root: Path, disk: Mapping[str, int]) -> tuple[CheckResult, Manifest | None]:
    if MANIFEST not in disk:
        return _must("manifest", "missing", f"no {MANIFEST}: never finalized", MANIFEST), None
    try:
        manifest = Manifest.from_bytes((root / MANIFEST).read_bytes(), source=MANIFEST)
    except ManifestInvalid as exc:
        return _must("manifest", "fail", str(exc), MANIFEST), None
    detail = f"{len(manifest.files)} files listed, {manifest.digest}"
    return _must("manifest", "ok", detail, MANIFEST), manifest


def _signature_check(
    root: Path,
    disk: Mapping[str, int],
    verifier: Verifier | None,
    expected_identity: str | None,
) -> tuple[CheckResult, str | None]:
    if SIGNATURE not in disk:
        return _must("signature", "missing", f"no {SIGNATURE}: unsigned", SIGNATURE), None
    if MANIFEST not in disk:
        return _must(
            "signature", "fail", f"{SIGNATURE} signs an absent {MANIFEST}", SIGNATURE
        ), None
    data = (root / MANIFEST).read_bytes()
    bundle = (root / SIGNATURE).read_bytes()
    try:
        chosen = verifier or default_verifier(bundle, root / SIGSTORE_TRUST_CONFIG)
        identity = chosen.verify(data, bundle)
    except SignatureDigestMismatch as exc:
        return _must("signature", "fail", f"{MANIFEST}: {exc} in {SIGNATURE}", SIGNATURE), None
    except SignatureInvalid as exc:
        return _must("signature", "fail", f"{SIGNATURE}: {exc}", SIGNATURE), None
    if expected_identity is not None and identity != expected_identity:
        detail = f"{SIGNATURE}: signed by {identity}, expected {expected_identity}"
        return _must("signature", "fail", detail, SIGNATURE), None
    note = (
        " (test key: integrity only, not an identity)" if identity.startswith("test-key:") else ""
    )
    return _must("signature", "ok", f"signed by {identity}{note}", SIGNATURE), identity


def _complete_check(
    marker: tuple[Predicate, dict[str, Any]] | None,
    manifest: Manifest | None,
    disk: Mapping[str, int],
) -> CheckResult:
    if marker is not None:
        info = marker[1]
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
    root: Path,
    *,
    source: str | None = None,
    verifier: Verifier | None = None,
    expected_identity: str | None = None,
    log_keys: Sequence[_tlog.PublicKey] | None = None,
) -> VerifyReport:
    """Verify the bundle folder `root` (see `verify_bundle`)."""
    disk, unsafe = _scan(root)
    marker = read_marker(root)
    manifest_result, manifest = _manifest_check(root, disk)
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

    signature_result, signed_by = _signature_check(root, disk, verifier, expected_identity)
    checks.append(signature_result)
    complete = _complete_check(marker, manifest, disk)
    checks.append(complete)

    predicate = manifest.predicate if manifest is not None else (marker[0] if marker else None)
    required = predicate.required_paths if predicate is not None else ()
    ctx = _Context(
        root, set(disk) - {MANIFEST, SIGNATURE, MARKER}, required, verifier, log_keys, predicate
    )
    absent = [r for r in required if not _present(ctx, r)]
    checks.append(
        _must("required", "fail", f"required but absent: {_name_some(absent)}", *required)
        if absent
        else _must("required", "ok", f"{len(required)} required path(s) present", *required)
    )
    checks.extend(_run_spec(spec, ctx) for spec in CRITERIA)
    checks.append(_verdicts_check(predicate))

    return VerifyReport(
        source=source or str(root),
        name=root.name,
        run_id=predicate.run_id if predicate is not None else None,
        digest=manifest.digest if manifest is not None else None,
        signed_by=signed_by,
        complete=complete.status == "ok",
        checks=tuple(checks),
        files=problems,
        bytes_hashed=hashed,
    )


def verify_bundle(
    path: Path,
    *,
    verifier: Verifier | None = None,
    expected_identity: str | None = None,
    log_keys: Sequence[_tlog.PublicKey] | None = None,
) -> VerifyReport:
    """Verify a bundle folder or packed `.tar.gz` offline and report every check.

    Args:
        path: a bundle folder, or a `.tar.gz` made by `pack_bundle` (extracted safely into a
            temporary folder first).
        verifier: checks `manifest.sigstore.json` and `cache/signature.sig`; default picks by
            signature kind (test-key signatures verify against their embedded key).
        expected_identity: the signer identity the manifest signature must have.
        log_keys: transparency-log keys for checkpoints; default the key in `rekor/entry.json`.

    Returns:
        the report; `report.passed` says whether the bundle passes, `raise_for_failure()`
        turns a failure into an exception.

    Raises:
        ConfigError: `path` does not exist or is not a bundle (bad input, exit code 2).
        VerificationFailed: the archive holds an unsafe member (path traversal, a link).

    Example:
        >>> report = verify_bundle(Path("evidence/run-1.tar.gz"))
        >>> report.passed, [c.name for c in report.failures]
        (True, [])
    """
    source = str(path)
    with bundle_folder(path) as root:
        if is_tarball(path):
            _logger.debug("extracted %s into %s", path, root)
        return verify_folder(
            root,
            source=source,
            verifier=verifier,
            expected_identity=expected_identity,
            log_keys=log_keys,
        )
