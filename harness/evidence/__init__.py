"""Evidence bundles: the proof every drill leaves behind, verifiable offline.

Public API:

- `EvidenceBundle` (`bundle.py`): create a bundle, write files atomically, run and record
  commands, record steps/verdicts/artifacts, `finalize(signer)`.
- `Redactor`, `AuditLog`, `CommandResult` (`audit.py`): `audit/commands.log`.
- `Manifest`, `Predicate` (`manifest.py`): `manifest.json`, an in-toto Statement v1.
- `Signer`, `Verifier`, `TestKeySigner`, `TestKeyVerifier` (`signer.py`).
- `pack_bundle`, `extract_bundle` (`pack.py`): reproducible `.tar.gz`.
- `verify_bundle`, `VerifyReport`, `CheckResult` (`verify.py`): offline verification.
- `write_summaries`, `load_summary_data` (`summary.py`): `summary.md` and `summary.html`.
"""

from __future__ import annotations

from harness.evidence.audit import AuditLog, CommandResult, Redactor
from harness.evidence.bundle import EvidenceBundle, FinalizedBundle, StepHandle, now_rfc3339
from harness.evidence.manifest import (
    MANIFEST,
    MARKER,
    PREDICATE_TYPE,
    SIGNATURE,
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
from harness.evidence.pack import extract_bundle, is_bundle_dir, pack_bundle
from harness.evidence.signer import (
    SignatureInvalid,
    Signer,
    TestKeySigner,
    TestKeyVerifier,
    Verifier,
)
from harness.evidence.summary import load_summary_data, write_summaries
from harness.evidence.verify import CheckResult, FileProblems, VerifyReport, verify_bundle

__all__ = [
    "MANIFEST",
    "MARKER",
    "PREDICATE_TYPE",
    "SIGNATURE",
    "STATEMENT_TYPE",
    "Artifact",
    "AuditLog",
    "CheckResult",
    "CommandResult",
    "DrillOutcome",
    "EvidenceBundle",
    "FileEntry",
    "FileProblems",
    "FinalizedBundle",
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
    "TestKeyVerifier",
    "Verdict",
    "VerdictEntry",
    "Verifier",
    "VerifyReport",
    "extract_bundle",
    "is_bundle_dir",
    "load_summary_data",
    "now_rfc3339",
    "pack_bundle",
    "verify_bundle",
    "write_summaries",
]
