"""The cache sentinel: genuine caches pass; added, removed, changed, forged, tampered and
hostile input is named and fails (or is refused)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness._cli import main
from harness.cache import (
    CacheLimits,
    CacheManifestInvalid,
    CacheRefused,
    record_cache,
    scan_cache,
    verify_cache,
)
from harness.evidence import TrustPins
from harness.evidence.signer import KeySigner
from tests.support.sigstack import SigStack, SigStackPool

pytest_plugins = ("tests.support.sigstack_plugin",)


@pytest.fixture(scope="module")
def stacks(sigstacks: SigStackPool) -> dict[str, SigStack]:
    """A: the session's shared lab stack (the pinned root); B: another lab's."""
    return {"A": sigstacks.get("lab"), "B": sigstacks.get("B")}


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    root = tmp_path / "wheels"
    (root / "sub").mkdir(parents=True)
    (root / "a-1.0-py3-none-any.whl").write_bytes(b"wheel a")
    (root / "sub" / "b-2.0-py3-none-any.whl").write_bytes(b"wheel b")
    (root / "sub" / "caf\xe9 %.txt").write_text("odd name")
    return root


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, Path]:
    signer = KeySigner.generate()
    private, public = tmp_path / "key.pem", tmp_path / "key.pub"
    private.write_bytes(signer.private_key_pem)
    public.write_bytes(signer.public_key_pem)
    return private, public


def _record(cache: Path, key: tuple[Path, Path], out: Path) -> int:
    return main(["cache", "record", str(cache), "-o", str(out), "--sign", f"key:{key[0]}"])


def _verify(cache: Path, key: Path, manifest: Path, *extra: str) -> int:
    return main(
        ["cache", "verify", str(cache), "--manifest", str(manifest), "--key", str(key), *extra]
    )


def test_genuine_cache_verifies(
    cache: Path, key: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bundle" / "cache" / "manifest.json"
    assert _record(cache, key, out) == 0
    assert (out.parent / "signature.sig").is_file()
    assert _verify(cache, key[1], out) == 0
    assert "cache intact: 3 files" in capsys.readouterr().out


def test_default_output_is_the_bundles_cache_folder(
    cache: Path, key: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIHUB_BUNDLE", str(tmp_path / "run-1"))
    assert main(["cache", "record", str(cache), "--sign", f"key:{key[0]}"]) == 0
    assert (tmp_path / "run-1/cache/manifest.json").is_file()
    assert (tmp_path / "run-1/cache/signature.sig").is_file()


def test_added_removed_changed_are_each_named(
    cache: Path, key: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.json"
    assert _record(cache, key, out) == 0
    assert (tmp_path / "m.json.sig").is_file()
    (cache / "a-1.0-py3-none-any.whl").write_bytes(b"wheel A")  # same size, other bytes
    (cache / "sub" / "b-2.0-py3-none-any.whl").unlink()
    (cache / "evil-6.6-py3-none-any.whl").write_bytes(b"evil")
    capsys.readouterr()
    assert _verify(cache, key[1], out, "--json") == 1
    result = json.loads(capsys.readouterr().out)
    assert result["verdict"] == "poisoned"
    assert result["changed"] == ["a-1.0-py3-none-any.whl"]
    assert result["removed"] == ["sub/b-2.0-py3-none-any.whl"]
    assert result["added"] == ["evil-6.6-py3-none-any.whl"]
    assert result["signature_verified"] is True


def test_tampered_manifest_is_unverified(
    cache: Path, key: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cache" / "manifest.json"
    assert _record(cache, key, out) == 0
    # The attacker swaps a wheel and rewrites its line in the manifest to match.
    (cache / "a-1.0-py3-none-any.whl").write_bytes(b"evil a!")
    scan = {f.path: f for f in scan_cache(cache).files}
    doc = json.loads(out.read_bytes())
    for subject in doc["subject"]:
        if subject["name"] == "a-1.0-py3-none-any.whl":
            subject["digest"]["sha256"] = scan["a-1.0-py3-none-any.whl"].sha256
    out.write_text(json.dumps(doc))
    capsys.readouterr()
    assert _verify(cache, key[1], out) == 1
    text = capsys.readouterr().out
    assert "UNVERIFIED" in text
    assert "changed after signing" in text


def test_signature_by_another_key_is_unverified(
    cache: Path, key: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cache" / "manifest.json"
    assert _record(cache, key, out) == 0
    other = tmp_path / "other.pub"
    other.write_bytes(KeySigner.generate().public_key_pem)
    assert _verify(cache, other, out) == 1
    assert "not by a pinned key" in capsys.readouterr().out


def test_missing_signature_is_unverified(
    cache: Path, key: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "cache" / "manifest.json"
    assert _record(cache, key, out) == 0
    (out.parent / "signature.sig").unlink()
    assert _verify(cache, key[1], out) == 1


def test_record_refuses_a_symlink_and_verify_names_it(
    cache: Path, key: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cache" / "manifest.json"
    assert _record(cache, key, out) == 0
    (cache / "sub" / "link.whl").symlink_to("/etc/passwd")
    assert _verify(cache, key[1], out) == 1
    assert "added: sub/link.whl" in capsys.readouterr().out
    assert _record(cache, key, tmp_path / "again.json") == 2
    assert "sub/link.whl" in capsys.readouterr().err


def test_a_fifo_is_never_opened(cache: Path, key: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "cache" / "manifest.json"
    assert _record(cache, key, out) == 0
    os.mkfifo(cache / "pipe.whl")  # opening it for reading would block forever
    signer = KeySigner.from_pem_file(key[0])
    with pytest.raises(CacheRefused, match=r"pipe\.whl"):
        record_cache(cache, tmp_path / "x.json", signer)
    check = verify_cache(
        cache,
        out.read_bytes(),
        (out.parent / "signature.sig").read_bytes(),
        TrustPins(keys=(key[1].read_bytes(),)),
    )
    assert check.verdict == "poisoned"
    assert check.diff.added == ("pipe.whl",)


@pytest.mark.parametrize("name", ["../escape.whl", "/etc/passwd", "a/./b", "%61.whl", ""])
def test_manifest_naming_an_unsafe_path_is_bad_input(
    cache: Path,
    key: tuple[Path, Path],
    tmp_path: Path,
    name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "cache" / "manifest.json"
    assert _record(cache, key, out) == 0
    doc = json.loads(out.read_bytes())
    doc["subject"][0]["name"] = name
    out.write_text(json.dumps(doc))
    assert _verify(cache, key[1], out) == 2
    err = capsys.readouterr().err
    assert "subject[0].name" in err
    assert str(out) in err


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ([], "_type"),
        ({"_type": "https://in-toto.io/Statement/v1", "predicateType": "x"}, "predicateType"),
        (
            {
                "_type": "https://in-toto.io/Statement/v1",
                "predicateType": "https://cihub.dev/cache-manifest/v1",
                "subject": [{"name": "a", "digest": {"sha256": "00"}, "annotations": {"size": 1}}],
            },
            "subject[0].digest.sha256",
        ),
    ],
)
def test_malformed_manifest_names_the_field(doc: object, field: str, cache: Path) -> None:
    with pytest.raises(CacheManifestInvalid, match=field.replace("[", r"\[")):
        verify_cache(cache, json.dumps(doc).encode(), None, TrustPins(), source="m.json")


def test_huge_files_are_bounded(cache: Path, key: tuple[Path, Path], tmp_path: Path) -> None:
    with open(cache / "sparse.bin", "wb") as handle:
        handle.truncate(1 << 30)  # sparse: 1 GiB on paper, nothing on disk
    signer = KeySigner.from_pem_file(key[0])
    with pytest.raises(CacheRefused, match=r"sparse\.bin"):
        record_cache(cache, tmp_path / "m.json", signer, CacheLimits(max_file_bytes=1 << 20))
    with pytest.raises(CacheRefused, match="more than 2 files"):
        scan_cache(cache, CacheLimits(max_files=2))


def test_keyless_signature_checked_against_the_pinned_root(
    cache: Path,
    stacks: dict[str, SigStack],
    tmp_path: Path,
) -> None:
    out = tmp_path / "cache" / "manifest.json"
    record_cache(cache, out, stacks["A"].signer())
    signature = (out.parent / "signature.sig").read_bytes()
    assert json.loads(signature)["mediaType"].startswith("application/vnd.dev.sigstore.bundle")
    good = verify_cache(cache, out.read_bytes(), signature, TrustPins(stacks["A"].trust_config))
    assert good.verdict == "intact"
    assert good.signed_by is not None and "lab@cihub.test" in good.signed_by
    other_root = verify_cache(
        cache, out.read_bytes(), signature, TrustPins(stacks["B"].trust_config)
    )
    assert other_root.verdict == "unverified"
    assert other_root.problems and "pinned trust root" in other_root.problems[0]


def test_the_manifest_is_never_written_into_the_folder_it_lists(
    cache: Path, key: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _record(cache, key, cache / "sub" / "manifest.json") == 2
    assert "the folder it lists" in capsys.readouterr().err
    assert not (cache / "sub" / "manifest.json").exists()
