"""`cihub cache record PATH` and `cihub cache verify PATH --manifest FILE`: the cache sentinel
(`harness.cache`).

`record` writes a signed manifest of a folder (every file's sha256 and size): by default into
the bundle layout's `cache/manifest.json` and `cache/signature.sig` below `--bundle` (default:
`$CIHUB_BUNDLE`, else the current folder), signed keylessly through the lab or with `--sign
key:PATH`. `verify` checks the signature against what the verifier pins, then names every
added, removed and changed file. Exit codes: 0 intact (verify) or recorded; 1 poisoned or the
signature does not verify; 2 bad input (a link or special file in the folder when recording,
a malformed manifest, an unreadable file).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from harness import _exit
from harness._commands.evidence import _add_trust, _pins
from harness._internal.lab_signer import caller_lab_signer
from harness._internal.signing import SIGN_HELP, SignSpec, signer_for
from harness.cache import (
    MANIFEST_FILE,
    MAX_MANIFEST_BYTES,
    MAX_SIGNATURE_BYTES,
    read_bounded,
    record_cache,
    signature_path_for,
    verify_cache,
)
from harness.evidence import Signer
from lab.images import IMAGE_MODES

BUNDLE_ENV = "CIHUB_BUNDLE"


def _err() -> Console:
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("cache", help="record and verify signed manifests of caches")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    rec = actions.add_parser(
        "record",
        help="write a signed manifest of a folder (pip wheels or any folder)",
        description="List every regular file of PATH (sha256 and size) in an in-toto "
        "Statement and sign it. Links, FIFOs and devices are refused (exit 2).",
    )
    rec.add_argument("path", type=Path, metavar="PATH")
    rec.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help=f"the manifest to write (default: BUNDLE/{MANIFEST_FILE}); the signature goes "
        "beside it (signature.sig, or FILE.sig)",
    )
    rec.add_argument(
        "--bundle",
        type=Path,
        metavar="DIR",
        help=f"the drill's evidence bundle (default: ${BUNDLE_ENV}, else the current folder)",
    )
    rec.add_argument("--sign", default="keyless", metavar="keyless|key:PATH", help=SIGN_HELP)
    rec.add_argument("--lab", metavar="ID", help="the running lab to sign through")
    rec.add_argument("--images", choices=IMAGE_MODES, default="offline")
    rec.add_argument("--evidence-dir", type=Path, default=Path("evidence"), metavar="DIR")
    rec.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    rec.set_defaults(handler=_record)

    ver = actions.add_parser(
        "verify",
        help="check a folder against its signed manifest",
        description="Verify the manifest's signature against the pinned trust root (or "
        "--key), then compare PATH with it. Exit 0 intact, 1 any file added, removed or "
        "changed (each named) or the signature does not verify, 2 bad input.",
    )
    ver.add_argument("path", type=Path, metavar="PATH")
    ver.add_argument("--manifest", type=Path, required=True, metavar="FILE")
    ver.add_argument("--signature", type=Path, metavar="FILE", help="default: beside the manifest")
    ver.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    _add_trust(ver)
    ver.set_defaults(handler=_verify)


def _progress(message: str) -> None:
    _err().print(f"[dim]cihub:[/] {escape(message)}")


def _record(args: argparse.Namespace) -> int:
    spec = SignSpec.parse(args.sign)
    output: Path | None = args.output
    if output is None:
        bundle = args.bundle or Path(os.environ.get(BUNDLE_ENV) or ".")
        output = bundle / MANIFEST_FILE

    def keyless() -> contextlib.AbstractContextManager[Signer]:
        return caller_lab_signer(
            lab_id=args.lab, evidence_dir=args.evidence_dir, images=args.images, progress=_progress
        )

    with signer_for(spec, keyless) as signer:
        recorded = record_cache(args.path, output, signer)
    if args.json:
        print(
            json.dumps(
                {
                    "manifest": str(recorded.manifest),
                    "signature": str(recorded.signature),
                    "files": recorded.files,
                    "manifest_digest": recorded.digest,
                    "signed_by": recorded.signed_by,
                },
                indent=2,
                sort_keys=True,
            )
        )
    else:
        print(f"recorded {recorded.files} files of {args.path}: {recorded.manifest}")
        print(f"signature: {recorded.signature} (signed by {recorded.signed_by})")
    return _exit.SUCCESS


def _verify(args: argparse.Namespace) -> int:
    pins = _pins(args)
    manifest = read_bounded(args.manifest, MAX_MANIFEST_BYTES, "cache manifest")
    signature_path: Path = args.signature or signature_path_for(args.manifest)
    signature: bytes | None
    if args.signature is None and not signature_path.exists():
        signature = None
    else:
        signature = read_bounded(signature_path, MAX_SIGNATURE_BYTES, "signature")
    check = verify_cache(args.path, manifest, signature, pins, source=str(args.manifest))
    if args.json:
        print(json.dumps(check.record_json() | {"problems": list(check.problems)}, indent=2))
    else:
        for line in check.lines():
            print(line)
    return _exit.SUCCESS if check.verdict == "intact" else _exit.FAILED
