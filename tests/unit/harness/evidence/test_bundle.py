from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.errors import ConfigError, InfraError, StepFailed
from harness.evidence import (
    DSSE_SIGNATURE,
    MANIFEST,
    MARKER,
    EvidenceBundle,
    KeySigner,
    Manifest,
    Redactor,
    TrustPins,
    verify_bundle,
)


def _new(tmp_path: Path, **kw: object) -> EvidenceBundle:
    return EvidenceBundle.create(
        tmp_path / "b",
        run_id="r-1",
        redactor=Redactor.from_environ({}),
        **kw,  # type: ignore[arg-type]
    )


def test_create_marks_the_bundle_incomplete_until_finalized(
    tmp_path: Path, signer: KeySigner
) -> None:
    bundle = _new(tmp_path)
    assert (bundle.root / MARKER).is_file()
    bundle.write_json("x.json", {"b": 1, "a": [1, 2]})
    result = bundle.finalize(signer)
    assert not (bundle.root / MARKER).exists()
    assert (bundle.root / DSSE_SIGNATURE).is_file()
    assert result.digest == Manifest.from_path(bundle.root / MANIFEST).digest
    assert result.signed_by == signer.identity
    assert result.complete


def test_manifest_is_an_in_toto_statement_listing_every_file_sorted(
    make_bundle: Callable[..., Path],
) -> None:
    root = make_bundle()
    data = (root / MANIFEST).read_bytes()
    statement = json.loads(data)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://cihub.dev/evidence-manifest/v1"
    names = [s["name"] for s in statement["subject"]]
    assert names == sorted(names)
    on_disk = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.name not in (MANIFEST, DSSE_SIGNATURE)
    )
    assert names == on_disk
    assert {"summary.md", "summary.html", "audit/commands.log"} <= set(names)
    blob = next(s for s in statement["subject"] if s["name"] == "blob.bin")
    assert blob["annotations"]["size"] == 256 * 64
    predicate = statement["predicate"]
    assert predicate["runId"] == "run-1"
    assert predicate["requiredPaths"] == ["determinism/"]
    assert predicate["verdicts"]["determinism"]["verdict"] == "pass"
    assert predicate["complete"] is True
    assert "python" in predicate["toolVersions"]
    assert (
        data
        == json.dumps(statement, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
    )


@pytest.mark.parametrize(
    "relpath",
    [
        "/etc/passwd",
        "../escape",
        "a/../../b",
        "a/./b",
        "a\x00b",
        "",
        "manifest.json",
        "manifest.dsse.json",
        "manifest.sigstore.json",
        "rekor/entry.json",
        "INCOMPLETE",
        "summary.html",
    ],
)
def test_paths_outside_the_bundle_or_reserved_are_refused(tmp_path: Path, relpath: str) -> None:
    bundle = _new(tmp_path)
    with pytest.raises(ConfigError):
        bundle.write_text(relpath, "x")


def test_create_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "f").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        _new(tmp_path)


def test_a_finalized_bundle_cannot_change(tmp_path: Path, signer: KeySigner) -> None:
    bundle = _new(tmp_path)
    bundle.finalize(signer)
    with pytest.raises(ConfigError, match="finalized"):
        bundle.write_text("late.txt", "x")
    with pytest.raises(ConfigError, match="finalized"):
        bundle.finalize(signer)
    with pytest.raises(ConfigError, match="finalized"):
        EvidenceBundle.open(bundle.root)


def test_open_continues_from_the_marker(tmp_path: Path, signer: KeySigner) -> None:
    bundle = _new(tmp_path, scenario="s", required=["a.txt"])
    bundle.set_verdict("determinism", "pass", "same")
    bundle.record_step("build", "success", 1.5)
    again = EvidenceBundle.open(bundle.root)
    assert again.predicate.verdicts["determinism"].detail == "same"
    assert again.predicate.required_paths == ("a.txt",)
    assert [s.name for s in again.predicate.steps] == ["build"]
    again.write_text("a.txt", "x")
    assert again.finalize(signer).manifest.predicate.scenario == "s"


def test_step_records_success_failure_and_error(tmp_path: Path) -> None:
    bundle = _new(tmp_path)
    with bundle.step("build") as step:
        step.detail = "ok"
    with pytest.raises(StepFailed), bundle.step("compare"):
        raise StepFailed("2 files differ")
    with pytest.raises(RuntimeError), bundle.step("push"):
        raise RuntimeError("boom")
    with pytest.raises(InfraError), bundle.step("log"):
        raise InfraError("rekor timed out after 5 s")
    steps = {s.name: s for s in bundle.predicate.steps}
    assert (steps["build"].result, steps["build"].detail) == ("success", "ok")
    assert steps["compare"].result == "failure"
    assert "2 files differ" in steps["compare"].detail
    assert steps["push"].result == "error"
    assert steps["log"].result == "timeout"
    assert all(s.duration_s >= 0 for s in steps.values())


def test_invalid_claims_are_refused(tmp_path: Path) -> None:
    bundle = _new(tmp_path)
    with pytest.raises(ConfigError):
        bundle.set_verdict("x", "maybe")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        bundle.add_artifact("img", "latest")
    with pytest.raises(ConfigError):
        bundle.record_step("x", "fine", 1.0)  # type: ignore[arg-type]


def test_add_tree_copies_files_and_records_links(
    tmp_path: Path, signer: KeySigner, pins: TrustPins
) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "tool").write_text("#!/bin/sh\n")
    (src / "sub" / "tool").chmod(0o755)
    (src / "link").symlink_to("sub/tool")
    bundle = _new(tmp_path)
    bundle.add_tree("inputs/src", src)
    assert (bundle.root / "inputs/src/sub/tool").stat().st_mode & 0o111
    assert (bundle.root / "inputs/src/link.symlink").read_text() == "sub/tool\n"
    bundle.finalize(signer)
    assert verify_bundle(bundle.root, pins=pins).passed


def test_unsigned_bundle_fails_verify(tmp_path: Path, pins: TrustPins) -> None:
    bundle = _new(tmp_path)
    bundle.finalize(None)
    report = verify_bundle(bundle.root, pins=pins)
    assert not report.passed
    assert report.check("signature").status == "missing"


def test_finalize_incomplete_keeps_the_marker(
    tmp_path: Path, signer: KeySigner, pins: TrustPins
) -> None:
    bundle = _new(tmp_path)
    bundle.finalize(signer, complete=False)
    assert (bundle.root / MARKER).is_file()
    report = verify_bundle(bundle.root, pins=pins)
    assert report.check("complete").status == "fail"
    assert report.check("files").status == "ok"
    assert not report.passed


_CRASHER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from harness.evidence import EvidenceBundle, Redactor
    bundle = EvidenceBundle.create(Path(sys.argv[1]), run_id="crash", redactor=Redactor())
    bundle.write_text("before.txt", "written whole\\n")
    bundle.set_verdict("determinism", "pass")
    with bundle.open_write("big.bin") as out:
        out.write(b"x" * 1_000_000)
        out.flush()
        print("mid-write", flush=True)
        time.sleep(60)
        out.write(b"never")
    """
)


def test_crash_mid_write_leaves_an_incomplete_bundle(
    tmp_path: Path, signer: KeySigner, pins: TrustPins
) -> None:
    root = tmp_path / "crashed"
    proc = subprocess.Popen(
        [sys.executable, "-c", _CRASHER, str(root)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "mid-write"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    assert not (root / "big.bin").exists()  # the torn file never got its final name
    assert (root / "before.txt").read_text() == "written whole\n"
    report = verify_bundle(root, pins=pins)
    assert not report.passed
    complete = report.check("complete")
    assert complete.status == "fail"
    assert "INCOMPLETE" in complete.detail and "big.bin" in complete.detail
    assert report.check("manifest").status == "missing"
    assert report.run_id == "crash"

    # the evidence is not lost: the bundle can be reopened and finalized
    bundle = EvidenceBundle.open(root)
    assert bundle.predicate.verdicts["determinism"].verdict == "pass"
    bundle.finalize(signer)
    assert verify_bundle(root, pins=pins).passed


def test_open_refuses_a_marker_that_is_a_link(tmp_path: Path) -> None:
    bundle = _new(tmp_path)
    secret = tmp_path / "secret.json"
    secret.write_text('{"predicate": {"runId": "stolen", "startedOn": "2025-01-01T00:00:00Z"}}')
    (bundle.root / MARKER).unlink()
    (bundle.root / MARKER).symlink_to(secret)
    with pytest.raises(ConfigError, match="symbolic link"):
        EvidenceBundle.open(bundle.root)
