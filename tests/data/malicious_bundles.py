"""A corpus of malicious evidence bundles, built on demand (nothing big is committed).

Each `Case` builds one hostile bundle (a folder or a `.tar.gz`) into a folder it is given,
from a genuine, key-signed bundle. `tests/unit/harness/evidence/test_malicious_corpus.py`
runs `cihub evidence verify` and `show` on every case in a subprocess with a timeout and an
address-space cap, and requires a clean failure: exit 1 or 2, no traceback, no secret leaked,
nothing left in the temporary folder.

    python tests/data/malicious_bundles.py OUT_DIR   # build every case into OUT_DIR to look at
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SECRET = "TOPSECRET-7f3a9c-must-never-be-read"
"""Content of a file outside the bundle that links point at: it must never appear in output."""


@dataclass(frozen=True)
class Case:
    """One hostile bundle: how to build it, extra verify flags, and what the error says."""

    name: str
    build: Callable[[Path, Path], Path]
    """(genuine bundle folder, empty work folder) -> the path to verify."""
    says: str
    """A piece of the one-line reason verify or show must give."""
    args: tuple[str, ...] = field(default=())


# -- helpers ----------------------------------------------------------------------------------


def _copy(genuine: Path, work: Path) -> Path:
    root = work / genuine.name
    shutil.copytree(genuine, root)
    return root


def _secret_file(work: Path) -> Path:
    secret = work / "outside-secret.json"
    secret.write_text(json.dumps({"predicate": {"runId": SECRET, "startedOn": SECRET}}))
    return secret


def _replace_with_link(path: Path, target: Path | str) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    path.symlink_to(target)


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _sparse(path: Path, size: int, head: bytes = b"") -> None:
    with open(path, "wb") as handle:
        handle.write(head)
        handle.truncate(size)


def _tar(work: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], level: int = 6) -> Path:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    out = work / "hostile.tar.gz"
    out.write_bytes(gzip.compress(raw.getvalue(), compresslevel=level, mtime=0))
    return out


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _special(name: str, kind: bytes, **attrs: object) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, None


def _raw_header_tar(work: Path, name: str, size: int, kind: bytes, payload: bytes) -> Path:
    """A tar whose first header claims `size` bytes of type `kind` but holds `payload`."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.type = kind
    header = info.tobuf(format=tarfile.USTAR_FORMAT)
    out = work / "hostile.tar.gz"
    out.write_bytes(gzip.compress(header + payload, mtime=0))
    return out


# -- folder cases -----------------------------------------------------------------------------


def marker_link_to_fifo(genuine: Path, work: Path) -> Path:
    root = _copy(genuine, work)
    _replace_with_link(root / "INCOMPLETE", _fifo(work / "fifo"))
    return root


def marker_link_to_dev_zero(genuine: Path, work: Path) -> Path:
    root = _copy(genuine, work)
    _replace_with_link(root / "INCOMPLETE", "/dev/zero")
    return root


def marker_link_to_a_secret(genuine: Path, work: Path) -> Path:
    root = _copy(genuine, work)
    _replace_with_link(root / "INCOMPLETE", _secret_file(work))
    return root


def marker_is_a_fifo(genuine: Path, work: Path) -> Path:
    root = _copy(genuine, work)
    _fifo(root / "INCOMPLETE")
    return root


def marker_with_junk_types(genuine: Path, work: Path) -> Path:
    root = _copy(genuine, work)
    junk = {
        "runId": "[/]",
        "startedOn": "[/]",
        "requiredPaths": [5, None, {"a": 1}],
        "verdicts": {"x": {"verdict": [], "detail": 7}},
    }
    (root / "INCOMPLETE").write_text(json.dumps({"pid": "[/]", "predicate": junk}))
    (root / "manifest.json").unlink()  # the marker is all verify and show have to go on
    return root


def manifest_link_to_dev_zero(genuine: Path, work: Path) -> Path:
    root = _copy(genuine, work)
    _replace_with_link(root / "manifest.json", "/dev/zero")
    return root


def manifest_is_a_fifo(genuine: Path, work: Path) -> Path:
    root = _copy(genuine, work)
    (root / "manifest.json").unlink()
    _fifo(root / "manifest.json")
    return root


def manifest_huge_sparse(genuine: Path, work: Path) -> Path:
    root = _copy(genuine, work)
    _sparse(root / "manifest.json", 8 * 1024**3, b'{"_type":')
    return root


def manifest_nested_deeply(genuine: Path, work: Path) -> Path:
    root = _copy(genuine, work)
    (root / "manifest.json").write_bytes(b"[" * 200_000 + b"]" * 200_000)
    return root


def manifest_lists_a_path_twice(genuine: Path, work: Path) -> Path:
    root = _copy(genuine, work)
    statement = json.loads((root / "manifest.json").read_bytes())
    statement["subject"].insert(0, dict(statement["subject"][0]))
    import rfc8785

    (root / "manifest.json").write_bytes(rfc8785.dumps(statement))
    return root


def signature_link_to_a_secret(genuine: Path, work: Path) -> Path:
    root = _copy(genuine, work)
    _replace_with_link(root / "manifest.dsse.json", _secret_file(work))
    return root


def signature_link_to_dev_zero(genuine: Path, work: Path) -> Path:
    root = _copy(genuine, work)
    _replace_with_link(root / "manifest.dsse.json", "/dev/zero")
    return root


def folder_link_outside(genuine: Path, work: Path) -> Path:
    """`determinism/` points at a folder of the attacker's with an empty diff."""
    root = _copy(genuine, work)
    outside = work / "elsewhere"
    shutil.copytree(root / "determinism", outside)
    (outside / "diff.txt").write_text("")
    _replace_with_link(root / "determinism", outside)
    return root


def audit_log_link_to_dev_zero(genuine: Path, work: Path) -> Path:
    root = _copy(genuine, work)
    _replace_with_link(root / "audit" / "commands.log", "/dev/zero")
    return root


def audit_folder_link_to_a_secret(genuine: Path, work: Path) -> Path:
    root = _copy(genuine, work)
    outside = work / "audit-elsewhere"
    outside.mkdir()
    (outside / "commands.log").write_text(
        json.dumps({"argv": [SECRET], "exit_code": 0, "duration_s": 0}) + "\n"
    )
    _replace_with_link(root / "audit", outside)
    return root


def audit_log_one_endless_line(genuine: Path, work: Path) -> Path:
    root = _copy(genuine, work)
    _sparse(root / "audit" / "commands.log", 1024**3)
    return root


def evidence_file_is_a_fifo(genuine: Path, work: Path) -> Path:
    root = _copy(genuine, work)
    (root / "sbom.json").unlink()
    _fifo(root / "sbom.json")
    return root


def markup_and_junk_values(genuine: Path, work: Path) -> Path:
    """Rich markup in every string a bundle controls, and junk where numbers belong."""
    from harness.evidence import EvidenceBundle, KeySigner, Redactor

    hostile = "[/][bold red]x[/bold red][link=file:///etc/passwd]y[/link]"
    bundle = EvidenceBundle.create(
        work / "markup", run_id=hostile, scenario=hostile, redactor=Redactor()
    )
    bundle.write_text("[bold]x[red]y[link=file:]z.txt", hostile)
    bundle.set_verdict(hostile, "fail", hostile)
    bundle.record_step(hostile, "failure", 1.0, detail=hostile)
    bundle.audit.record(["true"], exit_code=0, duration_s=0.0)
    bundle.finalize(KeySigner.from_secret(1))
    with open(bundle.root / "audit" / "commands.log", "ab") as log:  # after signing: show reads it
        log.write(b'{"argv": 5, "exit_code": "[/]", "duration_s": "NaN-ish"}\n')
        log.write(b'{"argv": ["[/]"], "exit_code": [], "duration_s": {}}\n')
    return bundle.root


# -- tarball cases ----------------------------------------------------------------------------


def tar_declares_a_2gib_member(genuine: Path, work: Path) -> Path:
    return _raw_header_tar(work, "b/blob.bin", 2 * 1024**3, tarfile.REGTYPE, bytes(1024 * 1024))


def tar_member_larger_than_allowed(genuine: Path, work: Path) -> Path:
    return _tar(work, [_file("b/manifest.json", b"{}"), _file("b/big.bin", os.urandom(300_000))])


def tar_ratio_bomb(genuine: Path, work: Path) -> Path:
    return _tar(work, [_file("b/manifest.json", b"{}"), _file("b/zeros.bin", bytes(64 * 1024**2))])


def tar_too_many_members(genuine: Path, work: Path) -> Path:
    return _tar(work, [_file(f"b/f{i:04}.txt") for i in range(300)])


def tar_huge_pax_header(genuine: Path, work: Path) -> Path:
    return _raw_header_tar(
        work, "././@PaxHeader", 512 * 1024**2, tarfile.XHDTYPE, bytes(4 * 1024**2)
    )


def tar_huge_long_name(genuine: Path, work: Path) -> Path:
    return _raw_header_tar(
        work, "././@LongLink", 512 * 1024**2, tarfile.GNUTYPE_LONGNAME, bytes(4 * 1024**2)
    )


def tar_symlink_member(genuine: Path, work: Path) -> Path:
    link = _special("b/INCOMPLETE", tarfile.SYMTYPE, linkname="/dev/zero")
    return _tar(work, [_file("b/manifest.json", b"{}"), link])


def tar_hardlink_member(genuine: Path, work: Path) -> Path:
    link = _special("b/manifest.json", tarfile.LNKTYPE, linkname="/etc/passwd")
    return _tar(work, [link])


def tar_device_member(genuine: Path, work: Path) -> Path:
    dev = _special("b/INCOMPLETE", tarfile.CHRTYPE, devmajor=1, devminor=5)
    return _tar(work, [_file("b/manifest.json", b"{}"), dev])


def tar_fifo_member(genuine: Path, work: Path) -> Path:
    return _tar(work, [_file("b/manifest.json", b"{}"), _special("b/INCOMPLETE", tarfile.FIFOTYPE)])


def tar_sparse_member(genuine: Path, work: Path) -> Path:
    return _raw_header_tar(work, "b/manifest.json", 10, tarfile.GNUTYPE_SPARSE, bytes(1024))


def tar_path_traversal(genuine: Path, work: Path) -> Path:
    return _tar(work, [_file("b/manifest.json", b"{}"), _file("b/../../escaped.txt")])


def tar_absolute_path(genuine: Path, work: Path) -> Path:
    return _tar(work, [_file("/tmp/cihub-absolute-escape.txt")])


def tar_two_top_folders(genuine: Path, work: Path) -> Path:
    return _tar(work, [_file("a/manifest.json", b"{}"), _file("b/manifest.json", b"{}")])


def tar_member_twice(genuine: Path, work: Path) -> Path:
    return _tar(work, [_file("b/manifest.json", b"{}"), _file("b/manifest.json", b"[]")])


def tar_not_gzip(genuine: Path, work: Path) -> Path:
    out = work / "junk.tar.gz"
    out.write_bytes(b"this is not a gzip file at all" * 100)
    return out


def tar_truncated(genuine: Path, work: Path) -> Path:
    from harness.evidence import pack_bundle

    packed = pack_bundle(genuine, work / "whole.tar.gz")
    out = work / "truncated.tar.gz"
    out.write_bytes(packed.read_bytes()[: packed.stat().st_size // 2])
    packed.unlink()
    return out


CASES: tuple[Case, ...] = (
    Case("marker-link-to-fifo", marker_link_to_fifo, "INCOMPLETE"),
    Case("marker-link-to-dev-zero", marker_link_to_dev_zero, "INCOMPLETE"),
    Case("marker-link-to-a-secret", marker_link_to_a_secret, "INCOMPLETE"),
    Case("marker-is-a-fifo", marker_is_a_fifo, "INCOMPLETE"),
    Case("marker-with-junk-types", marker_with_junk_types, "INCOMPLETE"),
    Case("manifest-link-to-dev-zero", manifest_link_to_dev_zero, "manifest.json"),
    Case("manifest-is-a-fifo", manifest_is_a_fifo, "manifest.json"),
    Case("manifest-huge-sparse", manifest_huge_sparse, "manifest.json"),
    Case("manifest-nested-deeply", manifest_nested_deeply, "manifest.json"),
    Case("manifest-lists-a-path-twice", manifest_lists_a_path_twice, "listed twice"),
    Case("signature-link-to-a-secret", signature_link_to_a_secret, "manifest.dsse.json"),
    Case("signature-link-to-dev-zero", signature_link_to_dev_zero, "manifest.dsse.json"),
    Case("folder-link-outside", folder_link_outside, "determinism"),
    Case("audit-log-link-to-dev-zero", audit_log_link_to_dev_zero, "audit/commands.log"),
    Case("audit-folder-link-to-a-secret", audit_folder_link_to_a_secret, "audit"),
    Case("audit-log-one-endless-line", audit_log_one_endless_line, "audit/commands.log"),
    Case("evidence-file-is-a-fifo", evidence_file_is_a_fifo, "sbom.json"),
    Case("markup-and-junk-values", markup_and_junk_values, "not by a pinned key"),
    Case("tar-declares-a-2gib-member", tar_declares_a_2gib_member, "--max-ratio"),
    Case(
        "tar-member-larger-than-allowed",
        tar_member_larger_than_allowed,
        "--max-member-size",
        ("--max-member-size", "256K"),
    ),
    Case("tar-ratio-bomb", tar_ratio_bomb, "--max-ratio"),
    Case("tar-too-many-members", tar_too_many_members, "--max-members", ("--max-members", "100")),
    Case("tar-huge-pax-header", tar_huge_pax_header, "header"),
    Case("tar-huge-long-name", tar_huge_long_name, "header"),
    Case("tar-symlink-member", tar_symlink_member, "link"),
    Case("tar-hardlink-member", tar_hardlink_member, "link"),
    Case("tar-device-member", tar_device_member, "device"),
    Case("tar-fifo-member", tar_fifo_member, "FIFO"),
    Case("tar-sparse-member", tar_sparse_member, "sparse"),
    Case("tar-path-traversal", tar_path_traversal, "unsafe path"),
    Case("tar-absolute-path", tar_absolute_path, "unsafe path"),
    Case("tar-two-top-folders", tar_two_top_folders, "top folder"),
    Case("tar-member-twice", tar_member_twice, "twice"),
    Case("tar-not-gzip", tar_not_gzip, "not a readable"),
    Case("tar-truncated", tar_truncated, "not a readable"),
)


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path("malicious-bundles")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from make_golden_bundle import GOLDEN

    for case in CASES:
        work = out / case.name
        work.mkdir(parents=True, exist_ok=True)
        print(f"{case.name}: {case.build(GOLDEN, work)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
