"""Evidence bundles: the proof every drill leaves behind, verifiable offline.

Public API:

- `EvidenceBundle` (`bundle.py`): create a bundle, write files atomically, run and record
  commands, record steps/verdicts/artifacts, `finalize(signer)`.
- `Redactor`, `AuditLog`, `CommandResult` (`audit.py`): `audit/commands.log`.
- `Manifest`, `Predicate` (`manifest.py`): `manifest.json`, an in-toto Statement v1.
- `Signer` (protocol), `KeySigner`, `KeyVerifier` (`signer.py`): signing the manifest; the
  key signer writes a standard DSSE envelope (`manifest.dsse.json`).
- `IdentityPin` (`identity.py`): whom a keyless signature must name. `KeylessVerifier`,
  `PinnedRoot` (`sigstore_verify.py`, imported on use: it loads sigstore-python): keyless
  Sigstore signatures checked against a pinned trust root.
- `pack_bundle`, `extract_bundle`, `ExtractLimits`, `tar_digest` (`pack.py`): reproducible
  `.tar.gz` and bounded extraction.
- `verify_bundle`, `TrustPins`, `VerifyReport`, `CheckResult` (`verify.py`): offline
  verification against what the verifier pins.
- `escape_name`, `unescape_name` (`names.py`): lossless file names in manifests.
- `write_summaries`, `load_summary_data` (`summary.py`): `summary.md` and `summary.html`.
"""

from __future__ import annotations

from harness.evidence.audit import AuditLog, CommandResult, Redactor
from harness.evidence.bundle import EvidenceBundle, FinalizedBundle, StepHandle, now_rfc3339
from harness.evidence.manifest import (
    DSSE_SIGNATURE,
    LOG_ENTRY,
    MANIFEST,
    MARKER,
    PREDICATE_TYPE,
    SIGNATURE,
    SIGNATURE_FILES,
    SIGSTORE_SIGNATURE,
    STATEMENT_TYPE,
    Artifact,
    DrillOutcome,
    FileEntry,
    Manifest,
    ManifestInvalid,
    Predicate,
    StepEntry,
    StepOutcome,
    Verdict,
    VerdictEntry,
)
from harness.evidence.names import escape_name, unescape_name
from harness.evidence.pack import (
    ArchiveLimitExceeded,
    ExtractLimits,
    extract_bundle,
    is_bundle_dir,
    pack_bundle,
    tar_digest,
)
from harness.evidence.signer import KeySigner, KeyVerifier, SignatureInvalid, Signer
from harness.evidence.identity import IdentityPin
from harness.evidence.summary import load_summary_data, write_summaries
from harness.evidence.verify import (
    CheckResult,
    FileProblems,
    TrustPins,
    VerifyReport,
    verify_bundle,
)

TestKeySigner = KeySigner
"""Deprecated name of `KeySigner` (it now writes a standard DSSE envelope, never the old
test-key "Sigstore bundle"); kept until every caller signs keylessly or names `KeySigner`."""

__all__ = [
    "DSSE_SIGNATURE",
    "LOG_ENTRY",
    "MANIFEST",
    "MARKER",
    "PREDICATE_TYPE",
    "SIGNATURE",
    "SIGNATURE_FILES",
    "SIGSTORE_SIGNATURE",
    "STATEMENT_TYPE",
    "ArchiveLimitExceeded",
    "Artifact",
    "AuditLog",
    "CheckResult",
    "CommandResult",
    "DrillOutcome",
    "EvidenceBundle",
    "ExtractLimits",
    "FileEntry",
    "FileProblems",
    "FinalizedBundle",
    "IdentityPin",
    "KeySigner",
    "KeyVerifier",
    "Manifest",
    "ManifestInvalid",
    "Predicate",
    "Redactor",
    "SignatureInvalid",
    "Signer",
    "StepEntry",
    "StepHandle",
    "StepOutcome",
    "TestKeySigner",
    "TrustPins",
    "Verdict",
    "VerdictEntry",
    "VerifyReport",
    "escape_name",
    "extract_bundle",
    "is_bundle_dir",
    "load_summary_data",
    "now_rfc3339",
    "pack_bundle",
    "tar_digest",
    "unescape_name",
    "verify_bundle",
    "write_summaries",
]
