from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from harness import _exit
from harness._cli import main
from harness.evidence import EvidenceBundle, KeySigner, Redactor

Capsys = pytest.CaptureFixture[str]


@pytest.fixture(autouse=True)
def _no_local_trust_domain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIHUB_TRUST_DOMAIN", str(tmp_path / "no-trust-domain"))


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "signer.pub.pem"
    path.write_bytes(KeySigner.from_secret(7).public_key_pem)
    return path


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    b = EvidenceBundle.create(
        tmp_path / "run-7", run_id="run-7", required=["determinism/"], redactor=Redactor()
    )
    b.write_text("determinism/diff.txt", "")
    b.audit.record(["make"], exit_code=0, duration_s=1.0)
    b.set_verdict("determinism", "pass")
    b.finalize(KeySigner.from_secret(7))
    return b.root


def test_verify_passes_with_exit_0_and_a_table(bundle: Path, key: Path, capsys: Capsys) -> None:
    assert main(["evidence", "verify", str(bundle), "--key", str(key)]) == _exit.SUCCESS
    err = capsys.readouterr().err
    assert "determinism" in err and "PASS" in err and "missing" in err


def test_verify_json_on_stdout(bundle: Path, key: Path, capsys: Capsys) -> None:
    assert main(["evidence", "verify", str(bundle), "--key", str(key), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is True and report["run_id"] == "run-7"
    assert report["signed_by"] == "key " + KeySigner.from_secret(7).keyid


def test_verify_of_a_tampered_bundle_exits_1_and_names_the_file(
    bundle: Path, key: Path, capsys: Capsys
) -> None:
    (bundle / "determinism" / "extra.o").write_text("x")
    assert main(["evidence", "verify", str(bundle), "--key", str(key), "--json"]) == _exit.FAILED
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is False
    assert report["files"]["added"] == ["determinism/extra.o"]


def test_verify_needs_the_pinned_key(bundle: Path, tmp_path: Path, capsys: Capsys) -> None:
    assert main(["evidence", "verify", str(bundle), "--json"]) == _exit.FAILED
    report = json.loads(capsys.readouterr().out)
    (signature,) = [c for c in report["checks"] if c["name"] == "signature"]
    assert "signed with a local key: pin it with --key" in signature["detail"]
    other = tmp_path / "other.pem"
    other.write_bytes(KeySigner.from_secret(8).public_key_pem)
    assert main(["evidence", "verify", str(bundle), "--key", str(other)]) == _exit.FAILED
    capsys.readouterr()
    missing = tmp_path / "nope.pem"
    assert main(["evidence", "verify", str(bundle), "--key", str(missing)]) == _exit.ERROR
    err = capsys.readouterr().err.strip()
    assert "nope.pem" in err and len(err.splitlines()) == 1
    junk = tmp_path / "junk.pem"
    junk.write_text("junk")
    assert main(["evidence", "verify", str(bundle), "--key", str(junk)]) == _exit.ERROR
    assert "junk.pem" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--identity", "lab@cihub.test"], "--cert-identity"),
        (["--trusted-key", "k.pem"], "--key"),
        (["--cert-identity-regexp", "("], "not a regular expression"),
        (["--trust-config", "/nonexistent/trust.json"], "/nonexistent/trust.json"),
    ],
)
def test_retired_or_bad_trust_flags_are_one_line_errors(
    bundle: Path, capsys: Capsys, flags: list[str], says: str
) -> None:
    assert main(["evidence", "verify", str(bundle), *flags]) == _exit.ERROR
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1, err


def test_exact_and_regexp_forms_exclude_each_other(bundle: Path, capsys: Capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "evidence",
                "verify",
                str(bundle),
                "--cert-identity",
                "a",
                "--cert-identity-regexp",
                "b",
            ]
        )
    assert exit_info.value.code == 2


@pytest.mark.parametrize("kind", ["absent", "empty-dir", "junk-file"])
def test_bad_input_exits_2_with_one_line_naming_the_file(
    tmp_path: Path, capsys: Capsys, kind: str
) -> None:
    target = tmp_path / "target.tar.gz"
    if kind == "empty-dir":
        target.mkdir()
    elif kind == "junk-file":
        target.write_text("junk")
    for action in ("verify", "show", "pack"):
        assert main(["evidence", action, str(target)]) == _exit.ERROR
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert str(target) in err


def test_pack_to_an_existing_folder_or_a_missing_folder_is_a_one_line_error(
    bundle: Path, tmp_path: Path, capsys: Capsys
) -> None:
    """Issue 8's tracebacks: `-o EXISTING_DIR` and `-o /missing/dir/x.tar.gz` (no folder made)."""
    existing = tmp_path / "out"
    existing.mkdir()
    missing = tmp_path / "missing" / "dir" / "x.tar.gz"
    for out in (existing, missing):
        assert main(["evidence", "pack", str(bundle), "-o", str(out)]) == _exit.ERROR
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "missing").exists()
    assert list(existing.iterdir()) == []


def test_pack_twice_gives_the_same_archive(
    bundle: Path, key: Path, tmp_path: Path, capsys: Capsys
) -> None:
    one, two = tmp_path / "one.tar.gz", tmp_path / "two.tar.gz"
    assert main(["evidence", "pack", str(bundle), "-o", str(one)]) == _exit.SUCCESS
    assert main(["evidence", "pack", str(bundle), "--output", str(two)]) == _exit.SUCCESS
    captured = capsys.readouterr()
    assert captured.out.split() == [str(one.resolve()), str(two.resolve())]
    assert "inner tar sha256:" in captured.err
    assert hashlib.sha256(one.read_bytes()).digest() == hashlib.sha256(two.read_bytes()).digest()
    assert main(["evidence", "verify", str(one), "--key", str(key)]) == _exit.SUCCESS


def test_limits_have_flags_that_raise_them(
    bundle: Path, key: Path, tmp_path: Path, capsys: Capsys
) -> None:
    tarball = tmp_path / "b.tar.gz"
    assert main(["evidence", "pack", str(bundle), "-o", str(tarball)]) == _exit.SUCCESS
    capsys.readouterr()
    tight = ["--max-members", "3"]
    assert main(["evidence", "verify", str(tarball), "--key", str(key), *tight]) == _exit.FAILED
    err = capsys.readouterr().err.strip()
    assert "--max-members 3" in err and len(err.splitlines()) == 1
    assert main(["evidence", "show", str(tarball), "--max-member-size", "10"]) == _exit.FAILED
    assert "--max-member-size" in capsys.readouterr().err
    with pytest.raises(SystemExit) as bad:
        main(["evidence", "verify", str(tarball), "--max-total-size", "lots"])
    assert bad.value.code == _exit.ERROR


def test_show_prints_a_summary(bundle: Path, capsys: Capsys) -> None:
    assert main(["evidence", "show", str(bundle)]) == _exit.SUCCESS
    err = capsys.readouterr().err
    assert "run-7" in err and "determinism" in err and "make" in err
    assert main(["evidence", "show", str(bundle), "--json"]) == _exit.SUCCESS
    value = json.loads(capsys.readouterr().out)
    assert value["complete"] is True and value["predicate"]["runId"] == "run-7"


def test_show_of_an_incomplete_bundle(tmp_path: Path, capsys: Capsys) -> None:
    EvidenceBundle.create(tmp_path / "b", run_id="crashed-run", redactor=Redactor())
    assert main(["evidence", "show", str(tmp_path / "b")]) == _exit.SUCCESS
    assert "NO" in capsys.readouterr().err
    assert main(["evidence", "verify", str(tmp_path / "b")]) == _exit.FAILED


def test_show_opens_with_the_verified_verdict_and_the_signer(
    bundle: Path, key: Path, capsys: Capsys
) -> None:
    assert main(["evidence", "show", str(bundle), "--key", str(key)]) == _exit.SUCCESS
    first, signer = capsys.readouterr().err.splitlines()[:2]
    assert first == "PASS: 1 verdict(s), none failed"
    assert signer.strip().startswith("signed by: key sha256:")


def test_show_never_reads_pass_when_the_bundle_does_not_verify(
    bundle: Path, capsys: Capsys
) -> None:
    assert main(["evidence", "show", str(bundle), "--json"]) == _exit.SUCCESS
    value = json.loads(capsys.readouterr().out)
    assert value["verified"] is False
    assert value["headline"]["verdict"] == "FAIL"
    assert "does not verify: signature" in value["headline"]["why"]
