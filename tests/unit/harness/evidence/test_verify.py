from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.errors import ConfigError, VerificationFailed
from harness.evidence import (
    DSSE_SIGNATURE,
    MANIFEST,
    MARKER,
    SIGSTORE_SIGNATURE,
    DrillOutcome,
    EvidenceBundle,
    KeySigner,
    Redactor,
    TrustPins,
    pack_bundle,
    verify_bundle,
)

SIGNATURE = DSSE_SIGNATURE  # the key signer's file


def _flip(path: Path, offset: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_good_bundle_passes(make_bundle: Callable[..., Path], pins: TrustPins) -> None:
    report = verify_bundle(make_bundle(), pins=pins)
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
    make_bundle: Callable[..., Path], victim: str, pins: TrustPins
) -> None:
    root = make_bundle()
    _flip(root / victim, offset=7)
    report = verify_bundle(root, pins=pins)
    assert not report.passed
    assert report.files.modified == (victim,)
    assert victim in report.check("files").detail


def test_flipping_the_last_byte_of_a_large_file_fails(
    make_bundle: Callable[..., Path], pins: TrustPins
) -> None:
    root = make_bundle()
    _flip(root / "blob.bin", offset=-1)
    assert verify_bundle(root, pins=pins).files.modified == ("blob.bin",)


def test_an_emptied_file_fails_on_size(make_bundle: Callable[..., Path], pins: TrustPins) -> None:
    root = make_bundle()
    (root / "determinism/build-B/hello.txt").write_bytes(b"")
    assert verify_bundle(root, pins=pins).files.modified == ("determinism/build-B/hello.txt",)


@pytest.mark.parametrize("offset", [0, 40, 200, -3])
def test_flipping_a_byte_of_the_manifest_fails_and_names_it(
    make_bundle: Callable[..., Path], offset: int, pins: TrustPins
) -> None:
    root = make_bundle()
    _flip(root / MANIFEST, offset)
    report = verify_bundle(root, pins=pins)
    assert not report.passed
    failing = " ".join(c.detail for c in report.failures)
    assert MANIFEST in failing


def test_changing_a_digest_in_the_manifest_breaks_the_signature(
    make_bundle: Callable[..., Path], pins: TrustPins
) -> None:
    root = make_bundle()
    text = (root / MANIFEST).read_text()
    statement = json.loads(text)
    sha = statement["subject"][0]["digest"]["sha256"]
    (root / MANIFEST).write_text(text.replace(sha, "0" * 64))
    report = verify_bundle(root, pins=pins)
    assert report.check("signature").status == "fail"
    assert MANIFEST in report.check("signature").detail
    assert report.files.modified == (statement["subject"][0]["name"],)


@pytest.mark.parametrize("field", ["sig", "payload", "payloadType", "keyid"])
def test_tampering_with_the_signature_file_fails_and_names_it(
    make_bundle: Callable[..., Path], field: str, pins: TrustPins
) -> None:
    root = make_bundle()
    envelope = json.loads((root / SIGNATURE).read_text())
    holder = envelope["signatures"][0] if field in ("sig", "keyid") else envelope
    value = holder[field]
    holder[field] = ("A" if value[0] != "A" else "B") + value[1:]
    (root / SIGNATURE).write_text(json.dumps(envelope))
    report = verify_bundle(root, pins=pins)
    assert report.check("signature").status == "fail"
    assert report.check("files").status == "ok"
    assert SIGNATURE in report.check("signature").detail


def test_a_flipped_byte_in_the_signature_file_fails(
    make_bundle: Callable[..., Path], pins: TrustPins
) -> None:
    root = make_bundle()
    _flip(root / SIGNATURE, offset=5)
    report = verify_bundle(root, pins=pins)
    assert report.check("signature").status == "fail"
    assert SIGNATURE in report.check("signature").detail


def test_a_resigned_manifest_fails_against_the_pinned_key(
    make_bundle: Callable[..., Path], signer: KeySigner, pins: TrustPins
) -> None:
    root = make_bundle()
    other = KeySigner.from_secret(12345)
    (root / SIGNATURE).write_bytes(other.sign((root / MANIFEST).read_bytes()))
    pinned = verify_bundle(root, pins=pins).check("signature")
    assert pinned.status == "fail"
    assert other.keyid in pinned.detail and "not by a pinned key" in pinned.detail
    assert verify_bundle(root, pins=TrustPins(keys=(other.public_key_pem,))).passed


def test_a_key_signed_bundle_without_a_pinned_key_fails(
    make_bundle: Callable[..., Path],
) -> None:
    report = verify_bundle(make_bundle())
    assert not report.passed
    assert "signed with a local key: pin it with --key" in report.check("signature").detail


def test_a_key_signed_bundle_names_no_identity(
    make_bundle: Callable[..., Path], signer: KeySigner
) -> None:
    from harness.evidence import IdentityPin

    pins = TrustPins(keys=(signer.public_key_pem,), identity=IdentityPin("ci@example.com"))
    detail = verify_bundle(make_bundle(), pins=pins).check("signature").detail
    assert "names no identity" in detail


def test_two_signature_files_fail(make_bundle: Callable[..., Path], pins: TrustPins) -> None:
    root = make_bundle()
    (root / SIGSTORE_SIGNATURE).write_text("{}")
    report = verify_bundle(root, pins=pins)
    assert "exactly one signature" in report.check("signature").detail
    assert not report.passed


@pytest.mark.parametrize("added", ["extra.txt", "determinism/build-A/new.o", "audit/.hidden"])
def test_an_added_file_fails_and_is_named(
    make_bundle: Callable[..., Path], added: str, pins: TrustPins
) -> None:
    root = make_bundle()
    (root / added).parent.mkdir(parents=True, exist_ok=True)
    (root / added).write_text("smuggled")
    report = verify_bundle(root, pins=pins)
    assert not report.passed
    assert report.files.added == (added,)
    assert added in report.check("files").detail


@pytest.mark.parametrize("removed", ["blob.bin", "summary.md", "determinism/diff.txt"])
def test_a_removed_file_fails_and_is_named(
    make_bundle: Callable[..., Path], removed: str, pins: TrustPins
) -> None:
    root = make_bundle()
    (root / removed).unlink()
    report = verify_bundle(root, pins=pins)
    assert not report.passed
    assert report.files.removed == (removed,)
    assert removed in report.check("files").detail


def test_removed_manifest_or_signature_fails(
    make_bundle: Callable[..., Path], pins: TrustPins
) -> None:
    root = make_bundle()
    (root / SIGNATURE).unlink()
    assert verify_bundle(root, pins=pins).check("signature").status == "missing"
    assert not verify_bundle(root, pins=pins).passed
    (root / MANIFEST).unlink()
    with pytest.raises(ConfigError, match="not an evidence bundle"):
        verify_bundle(root, pins=pins)


def test_a_symlink_fails(make_bundle: Callable[..., Path], pins: TrustPins) -> None:
    root = make_bundle()
    (root / "link").symlink_to("/etc/passwd")
    report = verify_bundle(root, pins=pins)
    assert report.files.unsafe == ("link",)
    assert not report.passed


def test_an_added_marker_makes_it_incomplete(
    make_bundle: Callable[..., Path], pins: TrustPins
) -> None:
    root = make_bundle()
    (root / MARKER).write_text("{}")
    report = verify_bundle(root, pins=pins)
    assert report.check("complete").status == "fail"
    assert not report.passed


def test_missing_required_evidence_fails_but_optional_is_only_missing(
    tmp_path: Path, signer: KeySigner, pins: TrustPins
) -> None:
    bundle = EvidenceBundle.create(
        tmp_path / "b", run_id="r", required=["sbom.json", "chaos/"], redactor=Redactor()
    )
    bundle.write_json("sbom.json", {"bomFormat": "CycloneDX"})
    bundle.finalize(signer)
    report = verify_bundle(bundle.root, pins=pins)
    assert report.check("required").status == "fail"
    assert "chaos/" in report.check("required").detail
    chaos = report.check("chaos")
    assert (chaos.status, chaos.required, chaos.passed) == ("missing", True, False)
    sbom_vex = report.check("sbom-vex")  # half the evidence is a failure, not "missing"
    assert sbom_vex.status == "fail" and "vex.json" in sbom_vex.detail
    dr = report.check("dr")
    assert (dr.status, dr.required, dr.passed) == ("missing", False, True)


def _bundle_with(tmp_path: Path, signer: KeySigner, files: dict[str, object]) -> Path:
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
        (
            "cache-signature",
            {"cache/manifest.json": "{}", "cache/signature.sig": "junk"},
            "cache/signature.sig",
        ),
        ("provenance", {"slsa-provenance.json": {"predicateType": "x"}}, "predicateType"),
    ],
)
def test_pass_criteria_failures(
    tmp_path: Path,
    signer: KeySigner,
    check: str,
    files: dict[str, object],
    reason: str,
    pins: TrustPins,
) -> None:
    report = verify_bundle(_bundle_with(tmp_path, signer, files), pins=pins)
    result = report.check(check)
    assert result.status == "fail", result
    assert reason in result.detail
    assert not report.passed


def test_a_failed_verdict_of_the_drill_fails(
    tmp_path: Path, signer: KeySigner, pins: TrustPins
) -> None:
    bundle = EvidenceBundle.create(tmp_path / "b", run_id="r", redactor=Redactor())
    bundle.set_verdict("test", "fail", "assert 1 == 2")
    bundle.finalize(signer)
    report = verify_bundle(bundle.root, pins=pins)
    assert report.check("verdicts").status == "fail"
    assert "assert 1 == 2" in report.check("verdicts").detail
    assert report.check("files").status == "ok"
    assert not report.passed


def test_a_packed_bundle_verifies_and_a_tampered_one_names_the_file(
    make_bundle: Callable[..., Path], tmp_path: Path, pins: TrustPins
) -> None:
    root = make_bundle()
    tarball = pack_bundle(root, tmp_path / "out.tar.gz")
    assert verify_bundle(tarball, pins=pins).passed
    assert verify_bundle(tarball, pins=pins).source == str(tarball)
    _flip(root / "blob.bin", 100)
    bad = pack_bundle(root, tmp_path / "bad.tar.gz")
    assert verify_bundle(bad, pins=pins).files.modified == ("blob.bin",)


def _tar_with(path: Path, members: list[tarfile.TarInfo]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info in members:
            data = b"x" * info.size if info.isfile() else None
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


@pytest.mark.parametrize("name", ["../evil.txt", "/abs/evil.txt", "b/../../evil.txt"])
def test_path_traversal_in_an_archive_is_refused(
    tmp_path: Path, name: str, pins: TrustPins
) -> None:
    info = tarfile.TarInfo(name)
    info.size = 1
    tarball = _tar_with(tmp_path / "evil.tar.gz", [info])
    with pytest.raises(VerificationFailed, match="unsafe path"):
        verify_bundle(tarball, pins=pins)
    assert not (tmp_path / "evil.txt").exists()


def test_links_in_an_archive_are_refused(tmp_path: Path, pins: TrustPins) -> None:
    link = tarfile.TarInfo("b/link")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    with pytest.raises(VerificationFailed, match="link"):
        verify_bundle(_tar_with(tmp_path / "l.tar.gz", [link]), pins=pins)


def test_bad_input_is_a_config_error(tmp_path: Path, pins: TrustPins) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        verify_bundle(tmp_path / "absent", pins=pins)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not an evidence bundle"):
        verify_bundle(tmp_path / "empty", pins=pins)
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(ConfigError, match=r"junk\.tar\.gz"):
        verify_bundle(tmp_path / "junk.tar.gz", pins=pins)


def test_report_json_shape(make_bundle: Callable[..., Path], pins: TrustPins) -> None:
    value = verify_bundle(make_bundle(), pins=pins).to_json()
    assert value["passed"] is True
    assert {c["status"] for c in value["checks"]} <= {"ok", "fail", "missing"}
    assert set(value["files"]) == {"modified", "added", "removed", "unsafe"}
    json.dumps(value)


def _evil_log_entry() -> dict[str, object]:
    """A well-formed entry of a made-up log that carries its own key (issue 13 #7)."""
    import base64
    import hashlib

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from harness.evidence import _tlog

    key = ed25519.Ed25519PrivateKey.generate()
    bodies = [b'{"kind":"hashedrekord","n":%d}' % i for i in range(3)]
    leaves = [_tlog.leaf_hash(b) for b in bodies]
    root = _tlog.tree_root(leaves)
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return {
        "tlogEntry": {
            "logIndex": "2",
            "logId": {"keyId": b64(hashlib.sha256(spki).digest())},
            "inclusionProof": {
                "logIndex": "2",
                "rootHash": b64(root),
                "treeSize": "3",
                "hashes": [b64(h) for h in _tlog.inclusion_path(leaves, 2)],
                "checkpoint": {
                    "envelope": _tlog.sign_checkpoint("evil-log", 3, root, "evil-log", key)
                },
            },
            "canonicalizedBody": b64(bodies[2]),
        },
        "logPublicKey": {"rawBytes": b64(spki)},
    }


def test_an_entry_from_a_made_up_log_fails_rekor_inclusion(
    make_bundle: Callable[..., Path], pins: TrustPins
) -> None:
    """On e3ce19b this said `rekor-inclusion ok (evil-log ...)`: the entry's own key vouched."""
    root = make_bundle()
    (root / "rekor").mkdir()
    (root / "rekor" / "entry.json").write_text(json.dumps(_evil_log_entry()))
    report = verify_bundle(root, pins=pins)
    rekor = report.check("rekor-inclusion")
    assert rekor.status == "fail" and "evil-log" not in rekor.detail, rekor.detail
    assert not report.passed


def test_a_folder_that_cannot_be_listed_fails_files_without_a_traceback(
    make_bundle: Callable[..., Path], pins: TrustPins, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    root = make_bundle()
    real_scandir = os.scandir

    def scandir(path: object) -> object:
        if str(path).endswith("build-B"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", scandir)
    report = verify_bundle(root, pins=pins)
    assert "determinism/build-B" in report.check("files").detail
    assert not report.passed


def _twin_journal(
    expect: str | None = "steady-state-fails", **changes: object
) -> dict[str, object]:
    extensions = [{"name": "cihub", "expect": expect}] if expect is not None else []
    journal: dict[str, object] = {
        "status": "completed",
        "deviated": True,
        "experiment": {"title": "twin", "extensions": extensions},
        "steady_states": {
            "before": {"steady_state_met": True},
            "after": {"steady_state_met": False},
        },
        "rollbacks": [{"activity": {"name": "remove-toxic"}, "status": "succeeded"}],
    }
    journal.update(changes)
    return journal


def _chaos_bundle(
    tmp_path: Path,
    signer: KeySigner,
    journal: dict[str, object],
    outcome: DrillOutcome | None,
) -> Path:
    bundle = EvidenceBundle.create(tmp_path / "b", run_id="r", redactor=Redactor())
    bundle.write_json("chaos/journal.json", journal)
    if outcome is not None:
        bundle.set_outcome(outcome)
    bundle.finalize(signer)
    return bundle.root


_TWIN_MET = DrillOutcome("chaos", "steady-state-failed", "steady-state-failed", True, "success")


def test_a_negative_twin_whose_deviation_was_expected_and_signed_passes(
    tmp_path: Path, signer: KeySigner, pins: TrustPins
) -> None:
    root = _chaos_bundle(tmp_path, signer, _twin_journal(), _TWIN_MET)
    report = verify_bundle(root, pins=pins)
    assert report.check("chaos").status == "ok", report.check("chaos")
    assert "negative twin" in report.check("chaos").detail


@pytest.mark.parametrize(
    ("journal", "outcome", "reason"),
    [
        # a deviation with no signed expectation of it
        (_twin_journal(), None, "deviated"),
        # the signed outcome says the expectation was not met
        (
            _twin_journal(),
            DrillOutcome("chaos", "steady-state-failed", "steady-state-held", False, "failure"),
            "deviated",
        ),
        # another drill's outcome says nothing about the journal
        (
            _twin_journal(),
            DrillOutcome("determinism", "steady-state-failed", "x", True, "success"),
            "deviated",
        ),
        # the journal's own experiment does not expect the deviation
        (_twin_journal(expect=None), _TWIN_MET, "does not expect"),
        (_twin_journal(expect="steady-state-holds"), _TWIN_MET, "does not expect"),
        # even a twin must hold before the method and roll back cleanly
        (
            _twin_journal(
                steady_states={
                    "before": {"steady_state_met": False},
                    "after": {"steady_state_met": False},
                }
            ),
            _TWIN_MET,
            "before",
        ),
        (
            _twin_journal(rollbacks=[{"activity": {"name": "unpause"}, "status": "failed"}]),
            _TWIN_MET,
            "unpause",
        ),
        # an experiment that did not complete
        (_twin_journal(status="aborted"), _TWIN_MET, "aborted"),
    ],
)
def test_a_deviation_passes_only_as_a_signed_and_declared_twin(
    tmp_path: Path,
    signer: KeySigner,
    pins: TrustPins,
    journal: dict[str, object],
    outcome: DrillOutcome | None,
    reason: str,
) -> None:
    report = verify_bundle(_chaos_bundle(tmp_path, signer, journal, outcome), pins=pins)
    result = report.check("chaos")
    assert result.status == "fail", result
    assert reason in result.detail
    assert not report.passed
