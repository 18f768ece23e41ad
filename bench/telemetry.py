"""Throughput of pipeline_run validation and of evidence verification, against peers.

Prints, in one run:
  - pipeline_run records validated per second with jsonschema-rs (the validator cihub uses),
    on parsed records and on NDJSON lines (parse + validate, what `cihub schema validate`
    does), against plain `jsonschema.Draft202012Validator` on the same records.
    Target: >= 100,000 records/s.
  - `verify` throughput in MB/s on a bundle of `--size` bytes, against `sha256sum` of the
    same files (one process, one core). Target: >= 80% of sha256sum. The bundle is signed
    keylessly by default (`--signer keyless`: a DSSE envelope through sigstore-python, against
    the lab's Sigstore roles run in-process, logged in Rekor v2 with a TSA timestamp), and
    verify runs everything an auditor's does: the signature against the pinned trust root
    and identity, the inclusion proof against a checkpoint signed by a pinned log key, every
    digest. `--signer key` signs with a local key (manifest.dsse.json) instead.
Each timing is the best of `--rounds` after a warm-up, with the files in the page cache for
both contenders.

Usage: python bench/telemetry.py [--size 1G] [--records 50000] [--rounds 3]
                                [--signer keyless|key]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema

from harness import telemetry
from harness.evidence import (
    EvidenceBundle,
    KeySigner,
    Redactor,
    Signer,
    TrustPins,
)
from harness.evidence.manifest import StepEntry
from harness.evidence.verify import verify_folder

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def parse_size(text: str) -> int:
    """`1G`, `256M`, `4096K` or a number of bytes."""
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = text[-1] if text and text[-1] in _UNITS else ""
    return int(float(text[: len(text) - len(unit)]) * _UNITS[unit])


def best(rounds: int, run: Callable[[], object]) -> float:
    """Fastest wall-clock seconds of `rounds` runs of `run`."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def make_records(count: int) -> list[dict[str, Any]]:
    """`count` realistic, valid records (steps, subject, lab and runner facts)."""
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    runner = telemetry.runner_facts()
    lab = {
        "lab_id": "bench",
        "image_mode": "offline",
        "images": {
            n: {"tag": f"cihub/{n}:lab", "id": "sha256:" + "1" * 64}
            for n in ("registry", "rekor", "fulcio", "tsa", "faultproxy")
        },
        "services": {
            n: {"version": "1.0.0"} for n in ("registry", "rekor", "fulcio", "tsa", "faultproxy")
        },
        "startup_seconds": 4.2,
    }
    records = []
    for i in range(count):
        records.append(
            telemetry.build_record(
                run_id=f"bench-{i:08d}",
                pipeline="cihub-nightly",
                scenario="release",
                scenario_kind="release",
                started_at=t0 + timedelta(seconds=i),
                finished_at=t0 + timedelta(seconds=i + 90),
                result="success" if i % 7 else "failure",
                bundle_path=f"bench-{i:08d}",
                manifest_digest=f"sha256:{i:064x}",
                complete=True,
                steps=[
                    StepEntry(name, "success", 1.25 + n)
                    for n, name in enumerate(
                        ("build", "compare", "sign", "log", "push", "policy", "chaos", "dr")
                    )
                ],
                errors=[]
                if i % 7
                else [{"message": "builds differ", "type": "StepFailed", "step": "compare"}],
                vcs={
                    "revision": f"{i:040x}",
                    "ref_name": "main",
                    "ref_type": "branch",
                    "repository_url": "https://example.org/r.git",
                },
                artifacts=[{"name": "app", "digest": f"sha256:{i + 1:064x}"}],
                lab=lab,
                runner=runner,
                session_id="bench",
            )
        )
    return records


def bench_validation(count: int, rounds: int) -> None:
    records = make_records(count)
    lines = [json.dumps(r).encode() + b"\n" for r in records]
    fast = telemetry.validator()
    assert all(fast.is_valid(r) for r in records[:100])

    def rs_objects() -> None:
        for record in records:
            fast.is_valid(record)

    def rs_lines() -> None:
        _count, invalid = telemetry.validate_lines(lines, schema_validator=fast)
        assert not invalid

    plain = jsonschema.Draft202012Validator(fast.schema)
    few = records[: max(1, count // 10)]

    def plain_objects() -> None:
        for record in few:
            plain.is_valid(record)

    rs_rate = count / best(rounds, rs_objects)
    line_rate = count / best(rounds, rs_lines)
    plain_rate = len(few) / best(rounds, plain_objects)
    size = sum(len(line) for line in lines) / count
    print(f"validation of pipeline_run v1.4 records ({count} records, {size:.0f} bytes each)")
    print(f"  jsonschema-rs, parsed records      : {rs_rate:12,.0f} records/s")
    print(f"  jsonschema-rs, NDJSON parse+validate: {line_rate:12,.0f} records/s")
    print(f"  jsonschema Draft202012Validator     : {plain_rate:12,.0f} records/s")
    print(f"  ratio jsonschema-rs / jsonschema    : {rs_rate / plain_rate:12.1f}x")
    print(f"  ratio NDJSON path / jsonschema      : {line_rate / plain_rate:12.1f}x")
    print(f"  target >= 100,000 records/s         : {'met' if line_rate >= 100_000 else 'NOT met'}")


@contextlib.contextmanager
def keyless_setup(folder: Path) -> Iterator[tuple[Signer, TrustPins]]:
    """The lab's Fulcio, Rekor (v2) and TSA roles in this process, a signer and its pins."""
    # The in-process stack lives with the tests (not in the installed package).
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.support.sigstack import running_sigstack

    with running_sigstack(folder) as stack:
        yield stack.signer(), stack.pins()


def make_bundle(root: Path, size: int, signer: Signer) -> list[Path]:
    """A signed bundle of about `size` bytes in 16 large and 64 small files."""
    bundle = EvidenceBundle.create(root, run_id="bench", redactor=Redactor())
    block = os.urandom(4 * 1024 * 1024)
    big, small = 16, 64
    small_size = 16 * 1024
    per_file = max(0, (size - small * small_size) // big)
    for i in range(big):
        with bundle.open_write(f"determinism/build-A/blob-{i:02d}.bin") as out:
            left = per_file
            while left > 0:
                out.write(block[: min(left, len(block))])
                left -= len(block)
    for i in range(small):
        bundle.write_bytes(f"determinism/build-B/small-{i:02d}.bin", block[i : i + small_size])
    bundle.write_text("determinism/diff.txt", "")
    bundle.finalize(signer)
    return sorted(p for p in root.rglob("*") if p.is_file())


def bench_verify(size: int, rounds: int, signer_kind: str) -> None:
    if shutil.which("sha256sum") is None:
        print("sha256sum not found: skipping the verify benchmark")
        return
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cihub-bench-")))
        if signer_kind == "keyless":
            (tmp / "stack").mkdir()
            signer, pins = stack.enter_context(keyless_setup(tmp / "stack"))
        else:
            key = KeySigner.generate()
            signer, pins = key, TrustPins(keys=(key.public_key_pem,))
        root = tmp / "bundle"
        files = make_bundle(root, size, signer)
        total = sum(p.stat().st_size for p in files)
        args = ["sha256sum", "--", *(str(p) for p in files)]

        def sha256sum() -> None:
            subprocess.run(args, check=True, stdout=subprocess.DEVNULL)

        checks: list[str] = []

        def verify() -> None:
            report = verify_folder(root, pins=pins)
            assert report.passed, report.failures
            checks[:] = [f"{c.name}={c.status}" for c in report.checks if c.status == "ok"]

        sha256sum()  # warm the page cache for both
        verify()
        peer = best(rounds, sha256sum)
        ours = best(rounds, verify)
    mb = total / 1e6
    print(f"verify of a {total / 2**30:.2f} GiB bundle ({len(files)} files), page cache warm")
    print(f"  signed {signer_kind}; checks ok: {', '.join(checks)}")
    print(f"  cihub evidence verify : {mb / ours:10,.0f} MB/s ({ours:.2f} s)")
    print(f"  sha256sum (1 process) : {mb / peer:10,.0f} MB/s ({peer:.2f} s)")
    print(f"  ratio verify / sha256sum : {peer / ours:7.2f}")
    print(f"  target >= 0.80           : {'met' if peer / ours >= 0.8 else 'NOT met'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--size", type=parse_size, default=parse_size("1G"), help="bundle size (default 1G)"
    )
    parser.add_argument(
        "--records", type=int, default=50_000, help="records to validate (default 50000)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="timed rounds; the best counts (default 3)"
    )
    parser.add_argument(
        "--signer",
        choices=("keyless", "key"),
        default="keyless",
        help="how the bundle is signed (default keyless: DSSE + Rekor inclusion)",
    )
    parser.add_argument("--skip-validation", action="store_true", help="only the verify benchmark")
    args = parser.parse_args()
    if not args.skip_validation:
        bench_validation(args.records, args.rounds)
        print()
    bench_verify(args.size, args.rounds, args.signer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
