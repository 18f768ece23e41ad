from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from harness import _exit
from harness._cli import main
from harness.evidence import EvidenceBundle, Redactor, TestKeySigner

Capsys = pytest.CaptureFixture[str]


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    b = EvidenceBundle.create(
        tmp_path / "run-7", run_id="run-7", required=["determinism/"], redactor=Redactor()
    )
    b.write_text("determinism/diff.txt", "")
    b.audit.record(["make"], exit_code=0, duration_s=1.0)
    b.set_verdict("determinism", "pass")
    b.finalize(TestKeySigner.from_secret(7))
    return b.root


def test_verify_passes_with_exit_0_and_a_table(bundle: Path, capsys: Capsys) -> None:
    assert main(["evidence", "verify", str(bundle)]) == _exit.SUCCESS
    err = capsys.readouterr().err
    assert "determinism" in err and "PASS" in err and "missing" in err


def test_verify_json_on_stdout(bundle: Path, capsys: Capsys) -> None:
    assert main(["evidence", "verify", str(bundle), "--json"]) == _exit.SUCCESS
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is True and report["run_id"] == "run-7"


def test_verify_of_a_tampered_bundle_exits_1_and_names_the_file(
    bundle: Path, capsys: Capsys
) -> None:
    (bundle / "determinism" / "extra.o").write_text("x")
    assert main(["evidence", "verify", str(bundle), "--json"]) == _exit.FAILED
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is False
    assert report["files"]["added"] == ["determinism/extra.o"]


def test_verify_with_a_pinned_key(bundle: Path, tmp_path: Path, capsys: Capsys) -> None:
    good = tmp_path / "good.pem"
    good.write_bytes(TestKeySigner.from_secret(7).public_key_pem)
    other = tmp_path / "other.pem"
    other.write_bytes(TestKeySigner.from_secret(8).public_key_pem)
    assert main(["evidence", "verify", str(bundle), "--trusted-key", str(good)]) == _exit.SUCCESS
    assert main(["evidence", "verify", str(bundle), "--trusted-key", str(other)]) == _exit.FAILED
    assert (
        main(["evidence", "verify", str(bundle), "--trusted-key", str(tmp_path / "nope.pem")])
        == _exit.ERROR
    )
    assert "nope.pem" in capsys.readouterr().err


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


def test_pack_twice_gives_the_same_archive(bundle: Path, tmp_path: Path, capsys: Capsys) -> None:
    one, two = tmp_path / "one.tar.gz", tmp_path / "two.tar.gz"
    assert main(["evidence", "pack", str(bundle), "-o", str(one)]) == _exit.SUCCESS
    assert main(["evidence", "pack", str(bundle), "--output", str(two)]) == _exit.SUCCESS
    assert capsys.readouterr().out.split() == [str(one.resolve()), str(two.resolve())]
    assert hashlib.sha256(one.read_bytes()).digest() == hashlib.sha256(two.read_bytes()).digest()
    assert main(["evidence", "verify", str(one)]) == _exit.SUCCESS


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
