"""File names as bytes (issue 13 #3), strict manifests (#8) and add_tree collisions (#9)."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest
import rfc8785

from harness._cli import main
from harness.errors import ConfigError
from harness.evidence import (
    MANIFEST,
    EvidenceBundle,
    KeySigner,
    Manifest,
    ManifestInvalid,
    Redactor,
    TrustPins,
    escape_name,
    load_summary_data,
    pack_bundle,
    unescape_name,
    verify_bundle,
)
from harness.evidence.names import NameInvalid

NAMES = {
    b"caf\xe9.bin": "caf%E9.bin",  # Latin-1, not UTF-8
    b"back\\slash.txt": "back%5Cslash.txt",
    b"per%41cent.txt": "per%2541cent.txt",
    b"new\nline\t.txt": "new%0Aline%09.txt",
    "δοκιμή-✓.txt".encode(): "δοκιμή-✓.txt",  # valid UTF-8 stays as it is
    b"\xed\xa0\x80surrogate.txt": "%ED%A0%80surrogate.txt",  # UTF-8 of a surrogate: invalid
    b"del\x7f.txt": "del%7F.txt",
}


@pytest.mark.parametrize(("raw", "escaped"), NAMES.items(), ids=[repr(k) for k in NAMES])
def test_escaping_is_lossless_and_has_one_spelling(raw: bytes, escaped: str) -> None:
    path = os.fsdecode(raw)
    assert escape_name(path) == escaped
    assert os.fsencode(unescape_name(escaped)) == raw
    escaped.encode("utf-8")  # always valid Unicode text: RFC 8785 can write it


@pytest.mark.parametrize("bad", ["%61", "%e9", "%4", "a%", "a\\b", "a\nb", "%2F", "\udc80"])
def test_other_spellings_are_refused(bad: str) -> None:
    with pytest.raises(NameInvalid):
        unescape_name(bad)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "artifacts"
    (src / "sub").mkdir(parents=True)
    for raw in NAMES:
        (src / os.fsdecode(raw)).write_bytes(b"content of " + raw)
    (src / "sub" / os.fsdecode(b"link-\xff")).symlink_to(os.fsdecode(b"../caf\xe9.bin"))
    return src


def test_a_tree_with_any_names_goes_through_bundle_manifest_summary_and_verify(
    tree: Path, tmp_path: Path, signer: KeySigner, pins: TrustPins
) -> None:
    bundle = EvidenceBundle.create(tmp_path / "b", run_id="names", redactor=Redactor())
    bundle.add_tree("determinism/build-A", tree)
    bundle.write_text("determinism/diff.txt", "")
    bundle.set_verdict("determinism", "pass")
    bundle.finalize(signer)  # summary.md/html and RFC 8785 manifest: no UnicodeEncodeError

    manifest = Manifest.from_bytes((bundle.root / MANIFEST).read_bytes())
    listed = {os.fsencode(f.path) for f in manifest.files}
    for raw in NAMES:
        assert b"determinism/build-A/" + raw in listed
    assert b"determinism/build-A/sub/link-\xff.symlink" in listed
    link = bundle.root / os.fsdecode(b"determinism/build-A/sub/link-\xff.symlink")
    assert link.read_bytes() == b"../caf\xe9.bin\n"
    names = [s["name"] for s in json.loads((bundle.root / MANIFEST).read_bytes())["subject"]]
    assert "determinism/build-A/caf%E9.bin" in names and names == sorted(names)
    assert "caf%E9.bin" in (bundle.root / "summary.md").read_text(encoding="utf-8")
    assert "caf%E9.bin" in (bundle.root / "summary.html").read_text(encoding="utf-8")

    assert verify_bundle(bundle.root, pins=pins).passed
    tarball = pack_bundle(bundle.root, tmp_path / "names.tar.gz")
    with tarfile.open(tarball) as tar:
        members = {os.fsencode(m.name) for m in tar.getmembers()}
    assert b"b/determinism/build-A/caf\xe9.bin" in members
    assert verify_bundle(tarball, pins=pins).passed
    data = load_summary_data(bundle.root)
    assert any(f.name == "determinism/build-A/back%5Cslash.txt" for f in data.files)

    (bundle.root / os.fsdecode(b"determinism/build-A/caf\xe9.bin")).write_bytes(b"tampered")
    report = verify_bundle(bundle.root, pins=pins)
    assert report.files.modified == (os.fsdecode(b"determinism/build-A/caf\xe9.bin"),)
    assert "caf%E9.bin" in report.check("files").detail
    assert report.to_json()["files"]["modified"] == ["determinism/build-A/caf%E9.bin"]


def test_the_cli_prints_escaped_names(
    tree: Path, tmp_path: Path, signer: KeySigner, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = EvidenceBundle.create(tmp_path / "b", run_id="names", redactor=Redactor())
    bundle.add_tree("inputs", tree)
    bundle.finalize(signer)
    (bundle.root / os.fsdecode(b"inputs/caf\xe9.bin")).unlink()
    key = tmp_path / "key.pem"
    key.write_bytes(signer.public_key_pem)
    assert main(["evidence", "verify", str(bundle.root), "--key", str(key), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["files"]["removed"] == ["inputs/caf%E9.bin"]
    assert main(["evidence", "show", str(bundle.root), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert "inputs/caf%E9.bin" in [f["name"] for f in shown["files"]]


# -- strict manifests (issue 13 #8) --------------------------------------------------------------


def _resign(root: Path, signer: KeySigner, change: object) -> None:
    statement = json.loads((root / MANIFEST).read_bytes())
    change(statement)  # type: ignore[operator]
    data = rfc8785.dumps(statement)
    (root / MANIFEST).write_bytes(data)
    (root / signer.signature_file).write_bytes(signer.sign(data))


def test_a_path_listed_twice_fails_even_when_signed(
    make_bundle: object, signer: KeySigner, pins: TrustPins
) -> None:
    root = make_bundle()  # type: ignore[operator]

    def duplicate(statement: dict[str, list[dict[str, object]]]) -> None:
        first = statement["subject"][0]
        twin = {**first, "digest": {"sha256": "0" * 64}}
        statement["subject"].insert(1, twin)

    _resign(root, signer, duplicate)
    report = verify_bundle(root, pins=pins)
    assert report.check("manifest").status == "fail"
    assert "listed twice" in report.check("manifest").detail
    assert not report.passed


def test_an_unsorted_subject_fails_even_when_signed(
    make_bundle: object, signer: KeySigner, pins: TrustPins
) -> None:
    root = make_bundle()  # type: ignore[operator]
    _resign(root, signer, lambda s: s["subject"].reverse())
    detail = verify_bundle(root, pins=pins).check("manifest").detail
    assert "not sorted" in detail


def test_a_non_canonical_name_fails(
    make_bundle: object, signer: KeySigner, pins: TrustPins
) -> None:
    root = make_bundle()  # type: ignore[operator]

    def respell(statement: dict[str, list[dict[str, str]]]) -> None:
        for subject in statement["subject"]:
            if subject["name"] == "blob.bin":
                subject["name"] = "%62lob.bin"
        statement["subject"].sort(key=lambda s: s["name"])

    _resign(root, signer, respell)
    assert "canonical" in verify_bundle(root, pins=pins).check("manifest").detail
    with pytest.raises(ManifestInvalid):
        Manifest.from_path(root / MANIFEST)


# -- add_tree collisions (issue 13 #9) -----------------------------------------------------------


def test_a_link_and_a_file_that_map_to_one_name_are_an_error(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "foo").symlink_to("target")
    (src / "foo.symlink").write_text("a real file\n")
    bundle = EvidenceBundle.create(tmp_path / "b", run_id="r", redactor=Redactor())
    with pytest.raises(ConfigError, match=r"'foo'.*'foo\.symlink'|'foo\.symlink'.*'foo'"):
        bundle.add_tree("inputs", src)
    assert not (bundle.root / "inputs").exists()  # nothing half-copied


def test_add_tree_never_overwrites_what_the_bundle_holds(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "notes.txt").write_text("from the tree\n")
    bundle = EvidenceBundle.create(tmp_path / "b", run_id="r", redactor=Redactor())
    bundle.write_text("inputs/notes.txt", "written first\n")
    with pytest.raises(ConfigError, match="already in the evidence bundle"):
        bundle.add_tree("inputs", src)
    assert (bundle.root / "inputs/notes.txt").read_text() == "written first\n"
