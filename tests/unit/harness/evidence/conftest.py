from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness.evidence import EvidenceBundle, Redactor, TestKeySigner


@pytest.fixture(scope="session")
def signer() -> TestKeySigner:
    return TestKeySigner.from_secret(0xC1_4B)


@pytest.fixture
def make_bundle(tmp_path: Path, signer: TestKeySigner) -> Callable[..., Path]:
    """Factory: a finalized, signed bundle that passes `verify` (determinism drill evidence)."""

    def make(name: str = "run-1", *, finalize: bool = True, **create: object) -> Path:
        bundle = EvidenceBundle.create(
            tmp_path / name,
            run_id=name,
            scenario="dual-build",
            required=create.pop("required", ["determinism/"]),  # type: ignore[arg-type]
            redactor=Redactor.from_environ({}),
        )
        bundle.write_text("determinism/build-A/hello.txt", "hello\n")
        bundle.write_text("determinism/build-B/hello.txt", "hello\n")
        bundle.write_text("determinism/diff.txt", "")
        bundle.write_bytes("blob.bin", bytes(range(256)) * 64)
        bundle.audit.record(["true"], exit_code=0, duration_s=0.01)
        bundle.set_verdict("determinism", "pass")
        if finalize:
            bundle.finalize(signer)
        return bundle.root

    return make
