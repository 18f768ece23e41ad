"""The top of summary.md/summary.html: one verdict line, the signer, links, fix hints."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.evidence import DrillOutcome, EvidenceBundle, Redactor, KeySigner
from harness.evidence.summary import FIX_HINTS, fix_hint


def _dual_build_bundle(root: Path, *, met: bool) -> EvidenceBundle:
    bundle = EvidenceBundle.create(root, run_id="r1", redactor=Redactor(), scenario="py-buildinfo")
    bundle.write_text("determinism/diff.txt", "--- A\n+++ B\n")
    bundle.write_text("determinism/report.html", "<html>diffoscope</html>")
    bundle.write_json(
        "determinism/result.json",
        {"verdict": "not-reproducible", "culprits": ["domain_host", "time"]},
    )
    bundle.audit.record(["true"], exit_code=0, duration_s=0.1)
    expected = "not-reproducible (culprits: domain_host, time)" if met else "reproducible"
    bundle.set_outcome(
        DrillOutcome("determinism", "not-reproducible", expected, met, "success" if met else "failure")
    )
    bundle.set_verdict("determinism", "pass" if met else "fail", "not reproducible")
    return bundle


def test_an_expected_finding_reads_pass_with_the_signer_links_and_fixes(tmp_path: Path) -> None:
    bundle = _dual_build_bundle(tmp_path / "b", met=True)
    signer = KeySigner.from_secret(3)
    bundle.finalize(signer)

    text = (bundle.root / "summary.md").read_text()
    head = text.split("- **Run id:**")[0]
    assert "**PASS**: not-reproducible, as expected (culprits: domain_host, time)" in head
    assert signer.identity in head
    assert "[diffoscope report](determinism/report.html)" in head
    assert "[commands log](audit/commands.log)" in head
    assert f"**time**: {FIX_HINTS['time']}" in head
    assert "uname -n" in head  # domain_host's hint

    page = (bundle.root / "summary.html").read_text()
    top = page.split("<table>")[0]
    assert '<p id="verdict" class="verdict pass"><strong>PASS</strong>' in top
    assert 'href="determinism/report.html"' in top and 'href="determinism/diff.txt"' in top


def test_an_unexpected_finding_reads_fail(tmp_path: Path) -> None:
    bundle = _dual_build_bundle(tmp_path / "b", met=False)
    bundle.finalize(KeySigner.from_secret(3))
    text = (bundle.root / "summary.md").read_text()
    assert "**FAIL**: not-reproducible, expected reproducible" in text
    assert 'class="verdict fail"' in (bundle.root / "summary.html").read_text()


def test_an_incomplete_bundle_never_reads_pass(tmp_path: Path) -> None:
    bundle = _dual_build_bundle(tmp_path / "b", met=True)
    bundle.finalize(KeySigner.from_secret(3), complete=False)
    assert "**INCOMPLETE**" in (bundle.root / "summary.md").read_text()


def test_every_reprotest_variation_has_its_own_hint() -> None:
    from harness.variations import NAMES

    for name in NAMES:
        assert fix_hint(name) != fix_hint("no-such-variation"), name


@pytest.mark.slow
def test_the_page_renders_in_headless_chromium(tmp_path: Path) -> None:
    """What a change-ticket reviewer sees: the verdict first, with a screenshot to look at."""
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: scripts/setup.sh installs it"
    bundle = _dual_build_bundle(tmp_path / "b", met=True)
    bundle.finalize(KeySigner.from_secret(3))
    page = (bundle.root / "summary.html").as_uri()
    args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    dom = subprocess.run(
        [*args, "--dump-dom", page], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert '<strong>PASS</strong>' in dom
    assert dom.index('id="verdict"') < dom.index("<table>")  # the verdict comes first
    shot = tmp_path / "summary.png"
    subprocess.run(
        [*args, f"--screenshot={shot}", "--window-size=1200,900", page],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
