"""The compare step: tree digests first, diffoscope only when they differ."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from harness.compare.diffoscope import DiffoscopeRequest, DiffoscopeResult, run_diffoscope
from harness.compare.preload import PreloadedDiffoscope
from harness.compare.tree import EntryDifference, TreeDigest, diff_trees, digest_tree
from harness.evidence.audit import AuditLog

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompareRequest:
    """Two output trees to compare.

    Attributes:
        a: the control build's output folder; b: the experiment's. Relative paths are taken
            from `workdir`, and they name the trees in the reports (e.g. `build-A`).
        workdir: where diffoscope runs and writes its scratch reports.
        digest_a: the digest of `a` if already known (e.g. computed while extracting it);
            digest_b likewise.
        use_diffoscope: run diffoscope when the digests differ.
        diffoscope_timeout_s: wall-clock limit of diffoscope.
        max_report_bytes: cap of each diffoscope report.
        max_diff_block_lines_saved: diffoscope's bound on lines kept per diff block.
        stop: set it to kill a running diffoscope at once (see `run_diffoscope`).
        preloaded: diffoscope started ahead in `workdir` (`preload_diffoscope`); the caller
            closes it (a run that did not need it leaves it alone).
    """

    a: Path
    b: Path
    workdir: Path
    digest_a: TreeDigest | None = None
    digest_b: TreeDigest | None = None
    use_diffoscope: bool = True
    diffoscope_timeout_s: float = 120.0
    max_report_bytes: int = 4 * 1024 * 1024
    max_diff_block_lines_saved: int = 200
    diffoscope_executable: str | None = None
    stop: threading.Event | None = None
    preloaded: PreloadedDiffoscope | None = None


@dataclass(frozen=True)
class CompareResult:
    """What the comparison found.

    Attributes:
        identical: the two tree digests are equal (diffoscope never decides this).
        differences: the entries that differ, from the digests.
        diffoscope: the diffoscope run, or None when the digests matched (or it was off).
        diff_text: the text for `determinism/diff.txt`: empty when identical; otherwise the
            entry-level differences, then diffoscope's text report (or why there is none).
        html_report: diffoscope's HTML report, when it wrote one.
    """

    identical: bool
    digest_a: TreeDigest
    digest_b: TreeDigest
    differences: tuple[EntryDifference, ...]
    diffoscope: DiffoscopeResult | None
    diff_text: str
    html_report: Path | None


def compare_outputs(request: CompareRequest, audit: AuditLog | None = None) -> CompareResult:
    """Compare two output trees: equal tree digests pass without calling diffoscope.

    Args:
        request: the trees and the limits.
        audit: where the diffoscope command is recorded.

    Returns:
        the result; a diffoscope crash or timeout is in `result.diffoscope`, and
        `result.identical` still says what the digests say.

    Example:
        >>> result = compare_outputs(CompareRequest(Path("build-A"), Path("build-B"), work))
        >>> result.identical, result.digest_a.digest
        (True, 'sha256:…')
    """
    a_path = request.workdir / request.a
    b_path = request.workdir / request.b
    digest_a = request.digest_a or digest_tree(a_path)
    digest_b = request.digest_b or digest_tree(b_path)
    differences = tuple(diff_trees(digest_a, digest_b))
    if not differences:
        _logger.debug("tree digests match (%s): diffoscope not needed", digest_a.digest)
        return CompareResult(True, digest_a, digest_b, (), None, "", None)
    header = _header(request, digest_a, digest_b, differences)
    if not request.use_diffoscope:
        return CompareResult(
            False, digest_a, digest_b, differences, None, header + "\n(diffoscope not run)\n", None
        )
    text_report = request.workdir / "diffoscope.txt"
    html_report = request.workdir / "diffoscope.html"
    result = run_diffoscope(
        DiffoscopeRequest(
            a=request.a,
            b=request.b,
            text_report=text_report,
            html_report=html_report,
            cwd=request.workdir,
            timeout_s=request.diffoscope_timeout_s,
            max_report_bytes=request.max_report_bytes,
            max_diff_block_lines_saved=request.max_diff_block_lines_saved,
            executable=request.diffoscope_executable,
            stop=request.stop,
            preloaded=request.preloaded,
        ),
        audit,
    )
    body = ""
    if text_report.is_file():
        body = text_report.read_text(encoding="utf-8", errors="replace")
    title = f"diffoscope {result.version or '?'}: {result.status}: {result.detail}"
    if not body.strip():
        body = "(no diffoscope text report)\n"
    text = f"{header}\n== {title}\n{body}"
    return CompareResult(
        False,
        digest_a,
        digest_b,
        differences,
        result,
        text,
        html_report if html_report.is_file() else None,
    )


def _header(
    request: CompareRequest,
    digest_a: TreeDigest,
    digest_b: TreeDigest,
    differences: tuple[EntryDifference, ...],
) -> str:
    lines = [
        f"== tree digests differ: {request.a}: {digest_a.digest}",
        f"                        {request.b}: {digest_b.digest}",
        f"== {len(differences)} {'entry differs' if len(differences) == 1 else 'entries differ'}:",
    ]
    lines += [f"  {difference}" for difference in differences[:200]]
    if len(differences) > 200:
        lines.append(f"  (+{len(differences) - 200} more)")
    return "\n".join(lines) + "\n"
