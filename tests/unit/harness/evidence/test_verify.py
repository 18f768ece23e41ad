from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.errors import ConfigError, VerificationFailed
from harness.evidence import (
    MANIFEST,
    MARKER,
    SIGNATURE,
    EvidenceBundle,
    Redactor,
    TestKeySigner,
    TestKeyVerifier,
    pack_bundle,
    verify_bundle,
)


def _flip(path: Path, offset: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_good_bundle_passes(make_bundle: Callable[..., Path]) -> None:
    report = verify_bundle(make_bundle())
    assert report.passed, report.failures
    assert report.complete
    assert report.digest is not None and report.digest.startswith("sha256:")
    assert report.check("determinism").status == "ok"
    # evidence of drills that did not run is missing, which is fine when not required
    assert report.check("chaos").status == "missing" and report.check("chaos").passed


@pytest.mark.parametrize(
    "victim",
    [
        "blob.bin",
        "determinism/build-A/hello.txt",
        "audit/commands.log",
        "summary.html",
        "summary.md",
    ],
)
def test_flipping_a_byte_of_any_listed_file_fails_and_names_it(
    make_bundle: Callable[..., Path], victim: str
) -> None:
    root = make_bundle()
    _flip(root / victim, offset=7)
    report = verify_bundle(root)
    assert not report.passed
    assert report.files.modified == (victim,)
    assert victim in report.check("files").detail


def test_flipping_the_last_byte_of_a_large_file_fails(make_bundle: Callable[..., Path]) -> None:
    root = make_bundle()
    _flip(root / "blob.bin", offset=-1)
    assert verify_bundle(root).files.modified == ("blob.bin",)


def test_an_emptied_file_fails_on_size(make_bundle: Callable[..., Path]) -> None:
    root = make_bundle()
    (root / "determinism/build-B/hello.txt").write_bytes(b"")
    assert verify_bundle(root).files.modified == ("determinism/build-B/hello.txt",)


@pytest.mark.parametrize("offset", [0, 40, 200, -3])
def test_flipping_a_byte_of_the_manifest_fails_and_names_it(
    make_bundle: Callable[..., Path], offset: int
) -> None:
    root = make_bundle()
    _flip(root / MANIFEST, offset)
    report = verify_bundle(root)
    assert not report.passed
    failing = " ".join(c.detail for c in report.failures)
    assert MANIFEST in failing


def test_changing_a_digest_in_the_manifest_breaks_the_signature(
    make_bundle: Callable[..., Path],
) -> None:
    root = make_bundle()
    text = (root / MANIFEST).read_text()
    statement = json.loads(text)
    sha = statement["subject"][0]["digest"]["sha256"]
    (root / MANIFEST).write_text(text.replace(sha, "0" * 64))
    report = verify_bundle(root)
    assert report.check("signature").status == "fail"
    assert MANIFEST in report.check("signature").detail
    assert report.files.modified == (statement["subject"][0]["name"],)


@pytest.mark.parametrize("field", ["signature", "digest"])
def test_tampering_with_the_signature_file_fails_and_names_it(
    make_bundle: Callable[..., Path], field: str
) -> None:
    root = make_bundle()
    bundle = json.loads((root / SIGNATURE).read_text())
    value = (
        bundle["messageSignature"][field]
        if field == "signature"
        else bundle["messageSignature"]["messageDigest"]["digest"]
    )
    changed = ("A" if value[0] != "A" else "B") + value[1:]
    if field == "signature":
        bundle["messageSignature"]["signature"] = changed
    else:
        bundle["messageSignature"]["messageDigest"]["digest"] = changed
    (root / SIGNATURE).write_text(json.dumps(bundle))
    report = verify_bundle(root)
    assert report.check("signature").status == "fail"
    assert report.check("files").status == "ok"
    name = SIGNATURE if field == "signature" else MANIFEST
    assert name in report.check("signature").detail


def test_a_flipped_byte_in_the_signature_file_fails(make_bundle: Callable[..., Path]) -> None:
    root = make_bundle()
    _flip(root / SIGNATURE, offset=5)
    report = verify_bundle(root)
    assert report.check("signature").status == "fail"
    assert SIGNATURE in report.check("signature").detail


def test_a_resigned_manifest_fails_only_with_a_pinned_key(
    make_bundle: Callable[..., Path], signer: TestKeySigner
) -> None:
    root = make_bundle()
    other = TestKeySigner.from_secret(12345)
    (root / SIGNATURE).write_bytes(other.sign((root / MANIFEST).read_bytes()))
    assert verify_bundle(root).passed  # integrity holds with the embedded key...
    pinned = verify_bundle(root, verifier=TestKeyVerifier([signer.public_key_pem]))
    assert pinned.check("signature").status == "fail"  # ...but not the identity
    assert "untrusted test key" in pinned.check("signature").detail
    expected = verify_bundle(root, expected_identity=signer.identity)
    assert expected.check("signature").status == "fail"


@pytest.mark.parametrize("added", ["extra.txt", "determinism/build-A/new.o", "audit/.hidden"])
def test_an_added_file_fails_and_is_named(make_bundle: Callable[..., Path], added: str) -> None:
    root = make_bundle()
    (root / added).parent.mkdir(parents=True, exist_ok=True)
    (root / added).write_text("smuggled")
    report = verify_bundle(root)
    assert not report.passed
    assert report.files.added == (added,)
    assert added in report.check("files").detail


@pytest.mark.parametrize("removed", ["blob.bin", "summary.md", "determinism/diff.txt"])
def test_a_removed_file_fails_and_is_named(make_bundle: Callable[..., Path], removed: str) -> None:
    root = make_bundle()
    (root / removed).unlink()
    report = verify_bundle(root)
    assert not report.passed
    assert report.files.removed == (removed,)
    assert removed in report.check("files").detail


def test_removed_manifest_or_signature_fails(make_bundle: Callable[..., Path]) -> None:
    root = make_bundle()
    (root / SIGNATURE).unlink()
    assert verify_bundle(root).check("signature").status == "missing"
    assert not verify_bundle(root).passed
    (root / MANIFEST).unlink()
    with pytest.raises(ConfigError, match="not an evidence bundle"):
        verify_bundle(root)


def test_a_symlink_fails(make_bundle: Callable[..., Path]) -> None:
    root = make_bundle()
    (root / "link").symlink_to("/etc/passwd")
    report = verify_bundle(root)
    assert report.files.unsafe == ("link",)
    assert not report.passed


def test_an_added_marker_makes_it_incomplete(make_bundle: Callable[..., Path]) -> None:
    root = make_bundle()
    (root / MARKER).write_text("{}")
    report = verify_bundle(root)
    assert report.check("complete").status == "fail"
    assert not report.passed


def test_missing_required_evidence_fails_but_optional_is_only_missing(
    tmp_path: Path, signer: TestKeySigner
) -> None:
    bundle = EvidenceBundle.create(
        tmp_path / "b", run_id="r", required=["sbom.json", "chaos/"], redactor=Redactor()
    )
    bundle.write_json("sbom.json", {"bomFormat": "CycloneDX"})
    bundle.finalize(signer)
    report = verify_bundle(bundle.root)
    assert report.check("required").status == "fail"
    assert "chaos/" in report.check("required").detail
    chaos = report.check("chaos")
    assert (chaos.status, chaos.required, chaos.passed) == ("missing", True, False)
    sbom_vex = report.check("sbom-vex")  # half the evidence is a failure, not "missing"
    assert sbom_vex.status == "fail" and "vex.json" in sbom_vex.detail
    dr = report.check("dr")
    assert (dr.status, dr.required, dr.passed) == ("missing", False, True)


def _bundle_with(tmp_path: Path, signer: TestKeySigner, files: dict[str, object]) -> Path:
    bundle = EvidenceBundle.create(tmp_path / "b", run_id="r", redactor=Redactor())
    for rel, value in files.items():
        if isinstance(value, str):
            bundle.write_text(rel, value)
        else:
            bundle.write_json(rel, value)
    bundle.finalize(signer)
    return bundle.root


@pytest.mark.parametrize(
    ("check", "files", "reason"),
    [
        ("determinism", {"determinism/diff.txt": "--- a\n+++ b\n"}, "differ"),
        ("determinism", {"determinism/build-A/x": "1"}, "diff.txt is missing"),
        ("policy", {"policy/decisions.json": [{"policy": "no-root", "allow": False}]}, "no-root"),
        ("policy", {"policy/decisions.json": []}, "no policy decisions"),
        (
            "chaos",
            {
                "chaos/journal.json": {
                    "status": "completed",
                    "deviated": False,
                    "steady_states": {"before": {"steady_state_met": False}},
                }
            },
            "before",
        ),
        ("chaos", {"chaos/journal.json": {"status": "failed"}}, "failed"),
        (
            "dr",
            {"dr/report.json": {"checks": [{"name": "log-consistent", "ok": False}]}},
            "log-consistent",
        ),
        ("sbom-vex", {"sbom.json": {"x": 1}, "vex.json": {"x": 1}}, "sbom.json"),
        ("rekor-inclusion", {"rekor/entry.json": {"nothing": True}}, "rekor/entry.json"),
        (
            "cache-signature",
            {"cache/manifest.json": "{}", "cache/signature.sig": "junk"},
            "cache/signature.sig",
        ),
        ("provenance", {"slsa-provenance.json": {"predicateType": "x"}}, "predicateType"),
    ],
)
def test_pass_criteria_failures(
    tmp_path: Path, signer: TestKeySigner, check: str, files: dict[str, object], reason: str
) -> None:
    report = verify_bundle(_bundle_with(tmp_path, signer, files))
    result = report.check(check)
    assert result.status == "fail", result
    assert reason in result.detail
    assert not report.passed


def test_a_failed_verdict_of_the_drill_fails(tmp_path: Path, signer: TestKeySigner) -> None:
    bundle = EvidenceBundle.create(tmp_path / "b", run_id="r", redactor=Redactor())
    bundle.set_verdict("test", "fail", "assert 1 == 2")
    bundle.finalize(signer)
    report = verify_bundle(bundle.root)
    assert report.check("verdicts").status == "fail"
    assert "assert 1 == 2" in report.check("verdicts").detail
    assert report.check("files").status == "ok"
    assert not report.passed


def test_a_packed_bundle_verifies_and_a_tampered_one_names_the_file(
    make_bundle: Callable[..., Path], tmp_path: Path
) -> None:
    root = make_bundle()
    tarball = pack_bundle(root, tmp_path / "out.tar.gz")
    assert verify_bundle(tarball).passed
    assert verify_bundle(tarball).source == str(tarball)
    _flip(root / "blob.bin", 100)
    bad = pack_bundle(root, tmp_path / "bad.tar.gz")
    assert verify_bundle(bad).files.modified == ("blob.bin",)


def _tar_with(path: Path, members: list[tarfile.TarInfo]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info in members:
            data = b"x" * info.size if info.isfile() else None
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


@pytest.mark.parametrize("name", ["../evil.txt", "/abs/evil.txt", "b/../../evil.txt"])
def test_path_traversal_in_an_archive_is_refused(tmp_path: Path, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.size = 1
    tarball = _tar_with(tmp_path / "evil.tar.gz", [info])
    with pytest.raises(VerificationFailed, match="unsafe path"):
        verify_bundle(tarball)
    assert not (tmp_path / "evil.txt").exists()


def test_links_in_an_archive_are_refused(tmp_path: Path) -> None:
    link = tarfile.TarInfo("b/link")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    with pytest.raises(VerificationFailed, match="link"):
        verify_bundle(_tar_with(tmp_path / "l.tar.gz", [link]))


def test_bad_input_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        verify_bundle(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not an evidence bundle"):
        verify_bundle(tmp_path / "empty")
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(ConfigError, match=r"junk\.tar\.gz"):
        verify_bundle(tmp_path / "junk.tar.gz")


def test_report_json_shape(make_bundle: Callable[..., Path]) -> None:
    value = verify_bundle(make_bundle()).to_json()
    assert value["passed"] is True
    assert {c["status"] for c in value["checks"]} <= {"ok", "fail", "missing"}
    assert set(value["files"]) == {"modified", "added", "removed", "unsafe"}
    json.dumps(value)
