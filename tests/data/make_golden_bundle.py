"""Regenerate the golden evidence bundle and the sample pipeline_run NDJSON.

    python tests/data/make_golden_bundle.py

writes `tests/data/golden_bundle/` (a bundle in which every check is `ok`) and
`tests/data/pipeline_run.sample.ndjson`. The bundle is signed with the key signer (a standard
DSSE envelope, `manifest.dsse.json`); its public key is `golden_bundle.pub.pem` beside it, which
a verifier pins with `--key`. The output is deterministic: a fixed key (RFC 6979 ECDSA), fixed
clocks and fixed tool versions, so running it twice gives the same bytes and
`tests/unit/harness/evidence/test_golden.py` can compare.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path
from unittest import mock

from harness import telemetry
from harness.evidence import EvidenceBundle, KeySigner, Redactor
from harness.evidence.manifest import StepEntry

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden_bundle"
SAMPLE = HERE / "pipeline_run.sample.ndjson"
PUBLIC_KEY = HERE / "golden_bundle.pub.pem"
SIGNER_SECRET = 0x5EED_0F_C1_40B
"""The golden bundle's key (`KeySigner.from_secret(SIGNER_SECRET)`)."""
CLOCK = "2025-01-01T12:00:00.000Z"
CLOCK_END = "2025-01-01T12:03:20.000Z"
TOOLS = {"cihub": "0.1.0", "python": "3.11", "diffoscope": "272", "opa": "0.68.0"}
IMAGE_DIGEST = "sha256:" + hashlib.sha256(b"golden image").hexdigest()


def signer() -> KeySigner:
    return KeySigner.from_secret(SIGNER_SECRET)


def build(root: Path) -> EvidenceBundle:
    """Write the golden bundle at `root` (which must not exist) and return it, finalized."""
    with mock.patch("harness.evidence.bundle.now_rfc3339", return_value=CLOCK):
        bundle = EvidenceBundle.create(
            root,
            run_id="golden-run-0001",
            scenario="release",
            required=["sbom.json", "vex.json", "determinism/", "policy/"],
            redactor=Redactor.from_environ({}, patterns=[r"ghp_[A-Za-z0-9]+"]),
            tool_versions=TOOLS,
        )
        bundle.write_json(
            "sbom.json",
            {
                "bomFormat": "CycloneDX",
                "specVersion": "1.5",
                "version": 1,
                "components": [{"type": "application", "name": "hello", "version": "1.0"}],
            },
        )
        bundle.write_json(
            "vex.json",
            {
                "@context": "https://openvex.dev/ns/v0.2.0",
                "@id": "https://cihub.dev/vex/golden",
                "author": "cihub golden data",
                "timestamp": CLOCK,
                "version": 1,
                "statements": [
                    {
                        "vulnerability": {"name": "CVE-2024-0001"},
                        "products": [{"@id": "pkg:oci/hello@" + IMAGE_DIGEST}],
                        "status": "not_affected",
                        "justification": "vulnerable_code_not_present",
                    }
                ],
            },
        )
        bundle.write_json(
            "slsa-provenance.json",
            {
                "_type": "https://in-toto.io/Statement/v1",
                "subject": [{"name": "hello", "digest": {"sha256": IMAGE_DIGEST.split(":")[1]}}],
                "predicateType": "https://slsa.dev/provenance/v1",
                "predicate": {
                    "buildDefinition": {"buildType": "https://cihub.dev/build/v1"},
                    "runDetails": {"builder": {"id": "https://cihub.dev/lab"}},
                },
            },
        )
        for side in ("A", "B"):
            bundle.write_text(f"determinism/build-{side}/hello.txt", "hello, reproducible world\n")
        bundle.write_text("determinism/diff.txt", "")
        cache = bundle.write_json("cache/manifest.json", {"entries": {"hello.o": "sha256:00"}})
        bundle.write_bytes("cache/signature.sig", signer().sign(cache.read_bytes()))
        bundle.write_json(
            "policy/decisions.json",
            {
                "decisions": [
                    {"policy": "cihub.release.sbom_present", "allow": True},
                    {"policy": "cihub.release.signed", "allow": True},
                    {"policy": "cihub.release.no_critical_vulns", "allow": True},
                ]
            },
        )
        bundle.write_json(
            "chaos/journal.json",
            {
                "chaoslib-version": "1.44.0",
                "status": "completed",
                "deviated": False,
                "steady_states": {
                    "before": {"steady_state_met": True},
                    "after": {"steady_state_met": True},
                },
                "run": [{"activity": {"name": "add-latency"}, "status": "succeeded"}],
                "rollbacks": [{"activity": {"name": "remove-latency"}, "status": "succeeded"}],
            },
        )
        bundle.write_json(
            "dr/report.json",
            {
                "passed": True,
                "checks": [
                    {"name": "every-digest-resolves", "ok": True},
                    {"name": "log-consistent", "ok": True},
                    {"name": "log-rollback-detected", "ok": True},
                ],
            },
        )
        for argv, code, seconds in (
            (["docker", "build", "--network=none", "-t", "hello:A", "."], 0, 12.5),
            (["docker", "build", "--network=none", "-t", "hello:B", "."], 0, 12.25),
            (["oras", "push", "--password", "ghp_golden0token", "registry.lab/hello"], 0, 1.5),
        ):
            bundle.audit.record(
                argv,
                exit_code=code,
                duration_s=seconds,
                stdout=b"ok\n",
                cwd="/work/subject",
                started_at=CLOCK,
            )
        for name, seconds in (
            ("build", 24.75),
            ("compare", 0.5),
            ("sign", 1.0),
            ("log", 0.25),
            ("push", 1.5),
            ("policy", 0.5),
            ("chaos", 30.0),
            ("dr", 45.0),
        ):
            bundle.record_step(name, "success", seconds, started_at=CLOCK)
        for check in ("determinism", "policy", "chaos", "dr"):
            bundle.set_verdict(check, "pass")
        bundle.add_artifact("hello", IMAGE_DIGEST)
        bundle.set_policy_digest("sha256:" + hashlib.sha256(b"golden policies").hexdigest())
    with mock.patch("harness.evidence.bundle.now_rfc3339", return_value=CLOCK_END):
        bundle.finalize(signer())
    return bundle


def sample_records(bundle: EvidenceBundle) -> list[dict[str, object]]:
    """Three valid pipeline_run records: the golden run, a failed drill, a chaos run."""
    finalized = bundle.finalized
    assert finalized is not None
    runner = {
        "host_name": "ci-runner-1",
        "os_type": "linux",
        "host_arch": "amd64",
        "python_version": "3.11.7",
        "cihub_version": "0.1.0",
        "pid": 4242,
        "worker_id": "gw0",
        "ci": {"provider": "github", "job_url": "https://github.com/example/cihub/actions/runs/1"},
    }
    vcs = {
        "repository_url": "https://github.com/example/cihub",
        "ref_name": "main",
        "ref_type": "branch",
        "revision": "0123456789abcdef0123456789abcdef01234567",
        "dirty": False,
    }
    lab = {
        "lab_id": "cihub-golden",
        "image_mode": "offline",
        "images": {"registry": {"tag": "cihub/registry:lab", "id": "sha256:" + "1" * 64}},
        "services": {"registry": {"version": "2.8.2"}, "faultproxy": {"version": "2.9.0"}},
        "startup_seconds": 3.5,
    }
    golden = telemetry.record_for_bundle(
        bundle,
        pipeline="cihub-nightly",
        result="success",
        evidence_dir=HERE,
        scenario_kind="release",
        duration_s=200.0,
        vcs=vcs,
        lab=lab,
        runner=runner,
        session_id="golden-session",
    )
    failed = telemetry.build_record(
        run_id="golden-run-0002",
        pipeline="cihub-nightly",
        scenario="dual-build",
        scenario_kind="dual-build",
        started_at="2025-01-01T12:10:00.000Z",
        finished_at="2025-01-01T12:11:00.000Z",
        duration_s=60.0,
        result="failure",
        bundle_path="golden-run-0002",
        manifest_digest="sha256:" + hashlib.sha256(b"another manifest").hexdigest(),
        complete=True,
        steps=[
            StepEntry("build", "success", 40.0),
            StepEntry("compare", "failure", 20.0, detail="2 files differ"),
        ],
        errors=[{"message": "builds differ: bin/hello", "type": "StepFailed", "step": "compare"}],
        vcs=vcs,
        runner=runner,
        session_id="golden-session",
        test={"nodeid": "scenarios/test_dual_build.py::test_hello", "outcome": "failed"},
    )
    chaos = telemetry.build_record(
        run_id="golden-run-0003",
        pipeline="cihub-nightly",
        scenario="registry-latency",
        scenario_kind="chaos",
        started_at="2025-01-01T12:20:00Z",
        finished_at="2025-01-01T12:21:30Z",
        result="success",
        bundle_path="golden-run-0003",
        complete=False,
        status="finished",
        steps=[StepEntry("chaos", "success", 90.0)],
        artifacts=[{"name": "hello", "digest": IMAGE_DIGEST}],
        lab=lab,
        runner=runner,
    )
    return [golden, failed, chaos]


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else GOLDEN
    if root.exists():
        shutil.rmtree(root)
    bundle = build(root)
    (root.parent / PUBLIC_KEY.name).write_bytes(signer().public_key_pem)
    sample = root.parent / SAMPLE.name if argv else SAMPLE
    lines = [json.dumps(r, sort_keys=True, separators=(",", ":")) for r in sample_records(bundle)]
    for record in sample_records(bundle):
        telemetry.validate_record(record)
    sample.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert bundle.finalized is not None
    print(f"{root}: {bundle.finalized.digest}")
    print(f"{sample}: {len(lines)} records")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
