"""Keyless evidence against pinned roots: genuine bundles pass, forged ones fail with a reason.

Three real Sigstore stacks (the lab's sigstack roles run in-process: Fulcio, Rekor v2, TSA),
each with its own trust root: A is the auditor's pinned root, B is another lab, C a self-made
CA. sigstore-python signs (DSSE over `manifest.json`) and verifies, unmodified.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness._cli import main
from harness.evidence import (
    LOG_ENTRY,
    MANIFEST,
    SIGSTORE_SIGNATURE,
    EvidenceBundle,
    IdentityPin,
    Redactor,
    TrustPins,
    pack_bundle,
    verify_bundle,
)
from harness.evidence.manifest import SIGSTORE_TRUST_CONFIG
from tests.support.sigstack import LAB_IDENTITY, LAB_ISSUER, SigStack, SigStackPool

pytest_plugins = ("tests.support.sigstack_plugin",)


@pytest.fixture(scope="module")
def stacks(sigstacks: SigStackPool) -> dict[str, SigStack]:
    """A: the session's shared lab stack (the auditor's pinned root); B another lab; C a
    self-made CA (each its own trust root, started once per session)."""
    return {"A": sigstacks.get("lab"), "B": sigstacks.get("B"), "C": sigstacks.get("C")}


@pytest.fixture
def pinned_a(stacks: dict[str, SigStack]) -> TrustPins:
    return TrustPins(trust_config=stacks["A"].trust_config)


def _bundle(root: Path, signer: Any, *, diff: str = "", verdict: str = "pass") -> Path:
    bundle = EvidenceBundle.create(
        root,
        run_id="release-42",
        scenario="dual-build",
        required=["determinism/"],
        redactor=Redactor.from_environ({}),
    )
    bundle.write_text("determinism/diff.txt", diff)
    bundle.write_text("determinism/build-A/out.txt", "out\n")
    bundle.write_json("cache/manifest.json", {"entries": {}})
    cache = (root / "cache/manifest.json").read_bytes()
    bundle.write_bytes("cache/signature.sig", signer.sign_blob(cache))
    bundle.audit.record(["make"], exit_code=0, duration_s=0.1)
    bundle.set_verdict("determinism", verdict)  # type: ignore[arg-type]
    bundle.finalize(signer)
    return root


@pytest.fixture(scope="module")
def genuine(stacks: dict[str, SigStack], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle of a non-reproducible build, signed under root A: it fails on its verdict."""
    root = tmp_path_factory.mktemp("genuine") / "bundle"
    return _bundle(root, stacks["A"].signer(), diff="--- a\n+++ b\n", verdict="fail")


@pytest.fixture(scope="module")
def passing(stacks: dict[str, SigStack], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("passing") / "bundle"
    return _bundle(root, stacks["A"].signer())


@pytest.fixture
def copy_of(tmp_path: Path) -> Callable[[Path], Path]:
    def make(source: Path) -> Path:
        target = tmp_path / f"copy-{len(list(tmp_path.iterdir()))}" / source.name
        shutil.copytree(source, target)
        return target

    return make


# -- genuine bundles ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pin",
    [
        IdentityPin(),
        IdentityPin(identity=LAB_IDENTITY, issuer=LAB_ISSUER),
        IdentityPin(identity=LAB_IDENTITY),
        IdentityPin(identity_regexp=r"[a-z]+@cihub\.test", issuer_regexp=r"https://oidc\..*"),
    ],
    ids=["unpinned", "exact", "identity-only", "regexp"],
)
def test_a_genuine_bundle_passes_with_and_without_identity_pinning(
    passing: Path, stacks: dict[str, SigStack], pin: IdentityPin
) -> None:
    report = verify_bundle(
        passing, pins=TrustPins(trust_config=stacks["A"].trust_config, identity=pin)
    )
    assert report.passed, report.failures
    assert report.signed_by == f"{LAB_IDENTITY} ({LAB_ISSUER})"
    signature = report.check("signature").detail
    assert str(stacks["A"].trust_config) in signature
    assert ("not pinned" in signature) is (not pin.pinned)
    assert "another root" not in signature
    rekor = report.check("rekor-inclusion")
    assert rekor.status == "ok" and "included in tree" in rekor.detail, rekor.detail
    assert report.check("cache-signature").status == "ok"


def test_the_log_entry_is_written_by_finalize_and_is_the_signatures(passing: Path) -> None:
    entry = json.loads((passing / LOG_ENTRY).read_bytes())
    signature = json.loads((passing / SIGSTORE_SIGNATURE).read_bytes())
    assert entry == signature["verificationMaterial"]["tlogEntries"][0]
    listed = [s["name"] for s in json.loads((passing / MANIFEST).read_bytes())["subject"]]
    assert LOG_ENTRY not in listed and SIGSTORE_TRUST_CONFIG in listed


def test_the_local_trust_domain_is_the_default_pin(
    passing: Path, stacks: dict[str, SigStack], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "no pinned trust root" in verify_bundle(passing).check("signature").detail
    domain = tmp_path / "domain"
    domain.mkdir()
    shutil.copy(stacks["A"].trust_config, domain / "trust_config.json")
    monkeypatch.setenv("CIHUB_TRUST_DOMAIN", str(domain))
    assert verify_bundle(passing).passed
    shutil.copy(stacks["B"].trust_config, domain / "trust_config.json")
    assert (
        "not issued under the pinned trust root" in verify_bundle(passing).check("signature").detail
    )


def test_a_genuine_finding_that_was_not_expected_fails_on_its_verdict(
    genuine: Path, pinned_a: TrustPins
) -> None:
    report = verify_bundle(genuine, pins=pinned_a)
    assert report.check("signature").status == "ok"
    assert {c.name for c in report.failures} == {"determinism", "verdicts"}


# -- forged bundles -----------------------------------------------------------------------------


def test_resigned_under_another_root_with_its_trust_config_fails(
    stacks: dict[str, SigStack], tmp_path: Path, pinned_a: TrustPins
) -> None:
    """Issue 8's forgery: empty diff, verdict pass, re-signed by lab B with B's trust config."""
    forged = _bundle(tmp_path / "forged", stacks["B"].signer())
    assert (forged / SIGSTORE_TRUST_CONFIG).read_bytes() == stacks["B"].trust_config.read_bytes()
    report = verify_bundle(forged, pins=pinned_a)
    assert not report.passed
    detail = report.check("signature").detail
    assert "not issued under the pinned trust root" in detail, detail
    assert report.check("rekor-inclusion").status == "fail"
    assert report.check("cache-signature").status == "fail"
    # the bundle is internally consistent: only the pin tells it apart
    assert verify_bundle(forged, pins=TrustPins(trust_config=stacks["B"].trust_config)).passed


def test_a_self_made_ca_signing_for_a_corporate_identity_fails(
    stacks: dict[str, SigStack], tmp_path: Path, pinned_a: TrustPins
) -> None:
    forged = _bundle(tmp_path / "forged", stacks["C"].signer("release@corp.example"))
    pins = TrustPins(
        trust_config=stacks["A"].trust_config,
        identity=IdentityPin(identity="release@corp.example", issuer=LAB_ISSUER),
    )
    report = verify_bundle(forged, pins=pins)
    assert "not issued under the pinned trust root" in report.check("signature").detail
    assert not report.passed


def test_another_identity_of_the_pinned_root_fails_the_identity_pin(
    stacks: dict[str, SigStack], tmp_path: Path
) -> None:
    """Every lab can mint any identity: the pin, not the root, decides who signed."""
    intruder = _bundle(tmp_path / "intruder", stacks["A"].signer("intruder@cihub.test"))
    for pin in (
        IdentityPin(identity=LAB_IDENTITY, issuer=LAB_ISSUER),
        IdentityPin(identity=LAB_IDENTITY),
        IdentityPin(identity_regexp=r"lab@.*"),
        IdentityPin(identity="intruder@cihub.test", issuer="https://other.issuer"),
    ):
        pins = TrustPins(trust_config=stacks["A"].trust_config, identity=pin)
        detail = verify_bundle(intruder, pins=pins).check("signature").detail
        assert "not the pinned" in detail and "intruder@cihub.test" in detail, detail
    unpinned = verify_bundle(intruder, pins=TrustPins(trust_config=stacks["A"].trust_config))
    assert unpinned.passed and unpinned.signed_by == f"intruder@cihub.test ({LAB_ISSUER})"


@pytest.mark.parametrize("victim", ["determinism/diff.txt", "summary.html", "cache/manifest.json"])
def test_a_tampered_file_fails(
    passing: Path, copy_of: Callable[[Path], Path], pinned_a: TrustPins, victim: str
) -> None:
    root = copy_of(passing)
    (root / victim).write_bytes((root / victim).read_bytes() + b" ")
    report = verify_bundle(root, pins=pinned_a)
    assert report.files.modified == (victim,)
    assert report.check("signature").status == "ok"
    assert not report.passed


def test_a_removed_file_fails(
    passing: Path, copy_of: Callable[[Path], Path], pinned_a: TrustPins
) -> None:
    root = copy_of(passing)
    (root / "determinism/diff.txt").unlink()
    report = verify_bundle(root, pins=pinned_a)
    assert report.files.removed == ("determinism/diff.txt",)
    assert not report.passed


def test_a_manifest_changed_after_signing_fails(
    genuine: Path, copy_of: Callable[[Path], Path], pinned_a: TrustPins
) -> None:
    root = copy_of(genuine)
    manifest = root / MANIFEST
    manifest.write_bytes(manifest.read_bytes().replace(b'"verdict":"fail"', b'"verdict":"pass"'))
    detail = verify_bundle(root, pins=pinned_a).check("signature").detail
    assert "changed after signing" in detail and MANIFEST in detail


def test_a_swapped_trust_config_in_the_bundle_is_never_trusted(
    passing: Path, stacks: dict[str, SigStack], copy_of: Callable[[Path], Path], tmp_path: Path
) -> None:
    # B-signed bundle carrying A's trust config: verified against the pin, not the copy
    forged = _bundle(tmp_path / "forged", stacks["B"].signer())
    (forged / SIGSTORE_TRUST_CONFIG).write_bytes(stacks["A"].trust_config.read_bytes())
    no_pin = verify_bundle(forged, pins=TrustPins(use_local_trust_domain=False))
    assert "no pinned trust root" in no_pin.check("signature").detail
    pinned = verify_bundle(forged, pins=TrustPins(trust_config=stacks["A"].trust_config))
    assert "not issued under the pinned trust root" in pinned.check("signature").detail
    # a genuine bundle whose copy was swapped: the copy is evidence (listed), so it fails files
    root = copy_of(passing)
    (root / SIGSTORE_TRUST_CONFIG).write_bytes(stacks["B"].trust_config.read_bytes())
    report = verify_bundle(root, pins=TrustPins(trust_config=stacks["A"].trust_config))
    assert report.files.modified == (SIGSTORE_TRUST_CONFIG,)
    assert report.check("signature").status == "ok"
    assert "names another root (ignored" in report.check("signature").detail


def test_a_removed_log_entry_fails(
    passing: Path, copy_of: Callable[[Path], Path], pinned_a: TrustPins
) -> None:
    root = copy_of(passing)
    (root / LOG_ENTRY).unlink()
    report = verify_bundle(root, pins=pinned_a)
    rekor = report.check("rekor-inclusion")
    assert (rekor.status, rekor.required, rekor.passed) == ("missing", True, False)
    assert not report.passed


def test_a_log_entry_from_another_log_or_another_entry_fails(
    passing: Path,
    stacks: dict[str, SigStack],
    copy_of: Callable[[Path], Path],
    tmp_path: Path,
    pinned_a: TrustPins,
) -> None:
    other_log = _bundle(tmp_path / "b-signed", stacks["B"].signer())
    same_log = _bundle(tmp_path / "a-signed-again", stacks["A"].signer())
    for source in (other_log, same_log):
        root = copy_of(passing)
        shutil.copy(source / LOG_ENTRY, root / LOG_ENTRY)
        detail = verify_bundle(root, pins=pinned_a).check("rekor-inclusion").detail
        assert f"not the log entry of {SIGSTORE_SIGNATURE}" in detail, detail


def test_an_entry_carrying_its_own_log_key_is_not_trusted(
    passing: Path, stacks: dict[str, SigStack], copy_of: Callable[[Path], Path], pinned_a: TrustPins
) -> None:
    """Issue 13 #7: a `logPublicKey` inside entry.json never vouches for it."""
    from cryptography.hazmat.primitives import serialization

    root = copy_of(passing)
    entry = json.loads((root / LOG_ENTRY).read_bytes())
    evil = (
        stacks["B"]
        .material.rekor_key_v2.public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    wrapped = {"tlogEntry": entry, "logPublicKey": {"rawBytes": base64.b64encode(evil).decode()}}
    (root / LOG_ENTRY).write_text(json.dumps(wrapped))
    detail = verify_bundle(root, pins=pinned_a).check("rekor-inclusion").detail
    assert "not a log key of the pinned trust root" in detail, detail


def test_the_cli_pins_root_and_identity_for_folders_and_tarballs(
    passing: Path, stacks: dict[str, SigStack], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tarball = pack_bundle(passing, tmp_path / "passing.tar.gz")
    a, b = str(stacks["A"].trust_config), str(stacks["B"].trust_config)
    who = ["--cert-identity", LAB_IDENTITY, "--cert-oidc-issuer", LAB_ISSUER]
    for target in (str(passing), str(tarball)):
        assert main(["evidence", "verify", target, "--trust-config", a, *who]) == 0
        assert main(["evidence", "verify", target, "--trust-config", b]) == 1
        assert "not issued under the pinned trust root" in capsys.readouterr().err
        wrong = ["--cert-identity-regexp", "ops@.*", "--cert-oidc-issuer", LAB_ISSUER]
        assert main(["evidence", "verify", target, "--trust-config", a, *wrong]) == 1


def test_the_plain_sigstore_cli_verifies_a_bundle_file_against_the_pinned_root(
    passing: Path, stacks: dict[str, SigStack]
) -> None:
    """Interop: the manifest is an in-toto Statement whose subjects are the bundle's files, so
    `sigstore verify identity --bundle manifest.sigstore.json FILE` checks any listed file."""
    import subprocess
    import sys

    def sigstore(trust: Path, *identity: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable, "-m", "sigstore", "--trust-config", str(trust),
                "verify", "identity", "--bundle", str(passing / SIGSTORE_SIGNATURE),
                *identity, str(passing / "summary.html"),
            ],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    who = ("--cert-identity", LAB_IDENTITY, "--cert-oidc-issuer", LAB_ISSUER)
    done = sigstore(stacks["A"].trust_config, *who)
    assert done.returncode == 0, done.stderr
    assert sigstore(stacks["B"].trust_config, *who).returncode != 0
    other = ("--cert-identity", "ops@cihub.test", "--cert-oidc-issuer", LAB_ISSUER)
    assert sigstore(stacks["A"].trust_config, *other).returncode != 0


def _mutations(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """(path, replacement) pairs: every leaf made wrong, every key removed."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield (*path, key), _REMOVE
            yield from _mutations(inner, (*path, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _mutations(inner, (*path, index))
        yield path, []
    elif isinstance(value, str):
        yield path, value[: len(value) // 2]
        yield path, "A" + value[1:] if value[:1] != "A" else "B" + value[1:]
        yield path, 12345
    else:
        yield path, "not a number"


_REMOVE = object()


def _apply(document: Any, path: tuple[Any, ...], replacement: Any) -> Any:
    copy = json.loads(json.dumps(document))
    holder = copy
    for step in path[:-1]:
        holder = holder[step]
    if not path:
        return replacement
    if replacement is _REMOVE:
        del holder[path[-1]]
    else:
        holder[path[-1]] = replacement
    return copy


def test_no_mutation_of_the_sigstore_bundle_crashes_or_passes(
    passing: Path, copy_of: Callable[[Path], Path], pinned_a: TrustPins
) -> None:
    """Hostile signature files are failed checks, never exceptions out of verify."""
    root = copy_of(passing)
    original = json.loads((root / SIGSTORE_SIGNATURE).read_bytes())
    mutations = list(_mutations(original))
    assert len(mutations) > 40
    critical = ("payload", "sig", "rawBytes", "canonicalizedBody", "rootHash", "envelope")
    failed_critical = 0
    for path, replacement in mutations:
        changed = _apply(original, path, replacement)
        (root / SIGSTORE_SIGNATURE).write_text(json.dumps(changed))
        report = verify_bundle(root, pins=pinned_a)  # never raises
        if str(path[-1]) in critical and replacement is not _REMOVE:
            assert report.check("signature").status == "fail", (path, replacement)
            failed_critical += 1
    assert failed_critical >= 12
