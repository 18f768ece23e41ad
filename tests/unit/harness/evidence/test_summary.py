from __future__ import annotations

import re
from pathlib import Path

from harness.evidence import (
    EvidenceBundle,
    KeySigner,
    Redactor,
    TrustPins,
    load_summary_data,
    verify_bundle,
)


def test_summaries_are_escaped_self_contained_and_covered_by_the_manifest(
    tmp_path: Path, signer: KeySigner, pins: TrustPins
) -> None:
    bundle = EvidenceBundle.create(
        tmp_path / "b", run_id="<script>alert(1)</script>", redactor=Redactor(), scenario="a|b"
    )
    bundle.set_verdict("policy", "fail", 'denied by "<img src=x onerror=alert(1)>"')
    bundle.record_step("build", "success", 2.0, detail="<b>bold</b>")
    bundle.audit.record(["echo", "<iframe>"], exit_code=0, duration_s=0.5)
    bundle.add_artifact("img", "sha256:" + "a" * 64)
    finalized = bundle.finalize(signer)

    page = (bundle.root / "summary.html").read_text()
    assert "<script>" not in page and "<iframe>" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # no external assets
    assert "<link" not in page and "@import" not in page
    assert page.startswith("<!DOCTYPE html>")

    text = (bundle.root / "summary.md").read_text()
    assert "a\\|b" in text and "sha256:" + "a" * 64 in text and "denied by" in text

    listed = {f.path for f in finalized.manifest.files}
    assert {"summary.md", "summary.html"} <= listed
    assert verify_bundle(bundle.root, pins=pins).check("files").status == "ok"

    data = load_summary_data(bundle.root)
    assert data.complete and data.digest == finalized.digest
    assert data.total_commands == 1


def test_summary_data_of_an_unfinished_bundle(tmp_path: Path) -> None:
    bundle = EvidenceBundle.create(tmp_path / "b", run_id="r", redactor=Redactor())
    bundle.write_text("a.txt", "x")
    data = load_summary_data(bundle.root)
    assert not data.complete and data.digest is None
    assert [f.path for f in data.files] == ["a.txt"]
