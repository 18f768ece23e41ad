"""The compare step: is the output of two builds the same?

- `tree.py`: tree digests (sha256 over normalized entries, order-independent) and the
  entry-level differences between two trees.
- `diffoscope.py`: diffoscope, bounded in time and report size; a crash or timeout is a result.
- `preload.py`: diffoscope started ahead (its imports done while the builds run).
- `outputs.py`: `compare_outputs`, the step: digests first, diffoscope only on a mismatch.
"""

from __future__ import annotations

from harness.compare.diffoscope import (
    DiffoscopeRequest,
    DiffoscopeResult,
    diffoscope_version,
    html_report_version,
    preload_diffoscope,
    run_diffoscope,
)
from harness.compare.outputs import CompareRequest, CompareResult, compare_outputs
from harness.compare.preload import PreloadedDiffoscope
from harness.compare.tree import (
    EntryDifference,
    TreeDigest,
    TreeEntry,
    diff_trees,
    digest_tree,
    extract_and_digest,
)

__all__ = [
    "CompareRequest",
    "CompareResult",
    "DiffoscopeRequest",
    "DiffoscopeResult",
    "EntryDifference",
    "PreloadedDiffoscope",
    "TreeDigest",
    "TreeEntry",
    "compare_outputs",
    "diff_trees",
    "diffoscope_version",
    "digest_tree",
    "extract_and_digest",
    "html_report_version",
    "preload_diffoscope",
    "run_diffoscope",
]
