"""The release drill without Docker: a fake dual build and an in-memory registry, but real
signing and verification (an in-process Sigstore stack: the lab's Fulcio, Rekor and TSA roles,
sigstore-python unmodified) and the real Rego gate.

Genuine input is allowed; each of the issue's deny paths denies with its own reason; each bad
input stops the drill with the step named and the partial bundle kept incomplete.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.drills import ReleaseDrill, ReleaseServices, RunSettings, run_drill
from harness.drills import _session as session_module
from harness.drills import release as release_module
from harness.drills.release import REFERRER_TYPES, ReleaseScenario, load_release_scenario
from harness.errors import ConfigError, InfraError
from harness.evidence import KeySigner
from harness.evidence.manifest import MARKER
from lab.errors import RegistryError
from lab.oci import Blob, Descriptor, digest_of
from tests.support.sigstack import LAB_IDENTITY, SigStack

ROOT = Path(__file__).resolve().parents[4]
SCENARIO = ROOT / "scenarios" / "release" / "sample.yaml"
WHEEL = "dist/cihub_release_sample-1.0.0-py3-none-any.whl"

pytest_plugins = ("tests.support.sigstack_plugin",)


@pytest.fixture(autouse=True)
def _no_local_trust_domain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIHUB_TRUST_DOMAIN", str(tmp_path / "no-trust-domain"))


@pytest.fixture
def stack(sigstack: SigStack) -> SigStack:
    """The session's in-process Sigstore stack (`tests.support.sigstack_plugin`)."""
    return sigstack


class FakeRegistry:
    """An in-memory registry with the slice of `OciClient` the drill uses."""

    def __init__(self) -> None:
        self.referrers: list[Descriptor] = []
        self.drop: set[str] = set()
        self.refuse_manifests = False

    def client(self, url: str) -> FakeRegistry:
        return self

    def __enter__(self) -> FakeRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def push_blob(self, repo: str, data: bytes) -> str:
        return digest_of(data)

    def push_manifest(self, repo: str, manifest: bytes, media_type: str) -> str:
        if self.refuse_manifests:
            raise RegistryError(f"the registry refused manifest {digest_of(manifest)} (400)")
        return digest_of(manifest)

    def attach_referrer(
        self,
        repo: str,
        subject_digest: str,
        subject_media_type: str,
        subject_size: int,
        artifact_type: str,
        layers: list[Blob],
        annotations: dict[str, str] | None = None,
    ) -> str:
        data = json.dumps([b.digest for b in layers]).encode()
        descriptor = Descriptor(
            "application/vnd.oci.image.manifest.v1+json", digest_of(data), len(data), artifact_type
        )
        if artifact_type not in self.drop:
            self.referrers.append(descriptor)
        return descriptor.digest

    def list_referrers(self, repo: str, digest: str) -> list[Descriptor]:
        return list(self.referrers)


def fake_dual_build(verdict: str = "reproducible", artifacts: bool = True) -> Callable[..., Any]:
    def run(scenario: Any, bundle: Any, **kwargs: Any) -> Any:
        if artifacts:
            bundle.write_bytes(f"determinism/build-A/{WHEEL}", b"PK wheel bytes")
            bundle.write_bytes(f"determinism/build-B/{WHEEL}", b"PK wheel bytes")
        diff = "" if verdict == "reproducible" else "--- a\n+++ b\n-1\n+2\n"
        bundle.write_text("determinism/diff.txt", diff)
        say = kwargs.get("progress") or (lambda _message: None)
        say("preparing builder image builder-python (built once, then cached)")
        bundle.record_step("prepare", "success", 0.5)
        say("building A (control) and B (experiment) in parallel; clock")
        bundle.record_step("build", "success", 2.0)
        say("comparing the artifacts (tree digests; diffoscope only if they differ)")
        bundle.record_step("compare", "success", 0.25)
        return SimpleNamespace(
            verdict=verdict,
            detail=f"fake dual build: {verdict}",
            source_date_epoch=1_700_000_000,
            image=SimpleNamespace(image_id="sha256:" + "c" * 64),
            builds=(
                SimpleNamespace(label="A", ok=True, timed_out=False, duration_s=1.75),
                SimpleNamespace(
                    label="B", ok=verdict != "build-failed", timed_out=False, duration_s=2.0
                ),
            ),
        )

    return run


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> FakeRegistry:
    fake = FakeRegistry()
    monkeypatch.setattr(release_module, "OciClient", fake.client)
    return fake


@pytest.fixture
def scenario(tmp_path: Path) -> ReleaseScenario:
    folder = tmp_path / "scen"
    shutil.copytree(SCENARIO.parent, folder)
    shutil.copytree(ROOT / "tests" / "data" / "osv", tmp_path / "osv")
    text = (folder / "sample.yaml").read_text().replace("../../tests/data/osv", "../osv")
    (folder / "sample.yaml").write_text(text)
    return load_release_scenario(folder / "sample.yaml")


def services(stack: SigStack, identity: str = LAB_IDENTITY) -> ReleaseServices:
    return ReleaseServices("http://registry.invalid", lambda: stack.signing_setup(identity))


def release(
    scenario: ReleaseScenario,
    stack: SigStack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    identity: str = LAB_IDENTITY,
    verdict: str = "reproducible",
    artifacts: bool = True,
) -> tuple[Any, ReleaseDrill]:
    monkeypatch.setattr(session_module, "run_determinism", fake_dual_build(verdict, artifacts))
    drill = ReleaseDrill(scenario, services(stack, identity))
    settings = RunSettings(tmp_path / "evidence", KeySigner.from_secret(7))
    return run_drill(drill, settings), drill


def test_a_genuine_release_is_allowed(
    scenario: ReleaseScenario, stack: Any, registry: FakeRegistry, tmp_path: Path, monkeypatch: Any
) -> None:
    run, drill = release(scenario, stack, tmp_path, monkeypatch)
    assert run.passed, run.lines()
    assert run.exit_code == 0
    decisions = json.loads((run.bundle / "policy" / "decisions.json").read_text())
    assert decisions["allow"] is True
    assert {d["policy"] for d in decisions["decisions"]} == {
        "determinism",
        "referrers",
        "rekor",
        "signer",
        "vulns",
        "workflows",
    }
    findings = json.loads((run.bundle / "vulns" / "findings.json").read_text())
    assert {f["id"] for f in findings["suppressed"]} == {"CIHUB-TEST-0001", "CIHUB-TEST-0002"}
    for name in (
        "sbom.json",
        "vex.json",
        "slsa-provenance.json",
        "attestations/artifact.sigstore.json",
        "attestations/provenance.sigstore.json",
        "policy/verification-summary.sigstore.json",
        "referrers/listing.json",
    ):
        assert (run.bundle / name).is_file(), name
    assert sorted(d["artifactType"] for d in drill.result.referrers) == sorted(  # type: ignore[union-attr]
        REFERRER_TYPES.values()
    )


def test_the_step_board_shows_each_step_and_the_dual_builds_sub_steps(
    scenario: ReleaseScenario, stack: Any, registry: FakeRegistry, tmp_path: Path, monkeypatch: Any
) -> None:
    _, drill = release(scenario, stack, tmp_path, monkeypatch)
    rows = {(r.parent, r.name): r for r in drill.steps.rows()}
    assert [(r.parent, r.name) for r in drill.steps.rows()] == [
        (None, "dual-build"),
        *(
            ("dual-build", n)
            for n in ("prepare", "build A", "build B", "compare", "culprit search")
        ),
        *((None, n) for n in ("sbom", "vulns", "provenance", "sign", "push", "policy")),
    ]
    assert rows[(None, "dual-build")].state == "reproducible"
    assert (rows[("dual-build", "build A")].state, rows[("dual-build", "build A")].seconds) == (
        "success",
        1.75,
    )
    assert rows[("dual-build", "compare")].seconds == 0.25
    assert rows[("dual-build", "culprit search")].state == "skipped"
    for name in ("sbom", "vulns", "provenance", "sign", "push", "policy"):
        assert rows[(None, name)].state == "success", name
        assert (rows[(None, name)].seconds or 0) > 0, name


def test_the_step_board_names_the_step_that_stopped(
    scenario: ReleaseScenario, stack: Any, registry: FakeRegistry, tmp_path: Path, monkeypatch: Any
) -> None:
    registry.refuse_manifests = True
    monkeypatch.setattr(session_module, "run_determinism", fake_dual_build())
    drill = ReleaseDrill(scenario, services(stack))
    with pytest.raises(InfraError):
        run_drill(drill, RunSettings(tmp_path / "evidence", KeySigner.from_secret(7)))
    states = {r.name: r.state for r in drill.steps.rows() if r.parent is None}
    assert states["sign"] == "success"
    assert states["push"] == "error"
    assert states["policy"] == "waiting"


def test_deny_a_referrer_removed(
    scenario: ReleaseScenario, stack: Any, registry: FakeRegistry, tmp_path: Path, monkeypatch: Any
) -> None:
    registry.drop.add("application/openvex+json")
    run, _ = release(scenario, stack, tmp_path, monkeypatch)
    assert run.exit_code == 1
    assert run.finding.problems == (  # type: ignore[union-attr]
        "referrers: no application/openvex+json referrer attached to the artifact",
    )


def test_deny_a_critical_vulnerability_with_no_vex(
    scenario: ReleaseScenario, stack: Any, registry: FakeRegistry, tmp_path: Path, monkeypatch: Any
) -> None:
    import dataclasses

    run, _ = release(dataclasses.replace(scenario, vex=()), stack, tmp_path, monkeypatch)
    assert run.exit_code == 1
    problems = run.finding.problems  # type: ignore[union-attr]
    assert (
        "vulns: CIHUB-TEST-0001 (critical) in pkg:pypi/urllib3@1.24.1 has no VEX statement"
        in problems
    )
    assert all(p.startswith("vulns:") for p in problems)


def test_deny_a_wrong_signer_identity(
    scenario: ReleaseScenario, stack: Any, registry: FakeRegistry, tmp_path: Path, monkeypatch: Any
) -> None:
    run, _ = release(scenario, stack, tmp_path, monkeypatch, identity="mallory@evil.test")
    assert run.exit_code == 1
    problems = run.finding.problems  # type: ignore[union-attr]
    assert problems and all(p.startswith("signer:") for p in problems)
    assert any("signed by mallory@evil.test" in p for p in problems)


def test_deny_a_non_reproducible_subject(
    scenario: ReleaseScenario, stack: Any, registry: FakeRegistry, tmp_path: Path, monkeypatch: Any
) -> None:
    run, _ = release(scenario, stack, tmp_path, monkeypatch, verdict="not-reproducible")
    assert run.exit_code == 1
    assert run.finding.problems == (  # type: ignore[union-attr]
        "determinism: the diff of the two builds is not empty",
        "determinism: the dual build found not-reproducible",
    )


def test_deny_a_tampered_attestation(
    scenario: ReleaseScenario, stack: Any, registry: FakeRegistry, tmp_path: Path, monkeypatch: Any
) -> None:
    original = ReleaseDrill._push

    def push_then_tamper(self: ReleaseDrill, bundle: Any, *args: Any) -> Any:
        pushed = original(self, bundle, *args)
        path = bundle.path_for("attestations/provenance.intoto.json")
        path.write_bytes(path.read_bytes().replace(b"python3", b"curl|sh "))
        return pushed

    monkeypatch.setattr(ReleaseDrill, "_push", push_then_tamper)
    run, _ = release(scenario, stack, tmp_path, monkeypatch)
    assert run.exit_code == 1
    problems = run.finding.problems  # type: ignore[union-attr]
    assert any(p.startswith("rekor: provenance: does not verify:") for p in problems)
    assert all(": provenance: " in p for p in problems)  # only the tampered one is named


def test_deny_a_workflow_with_an_unpinned_action(
    scenario: ReleaseScenario, stack: Any, registry: FakeRegistry, tmp_path: Path, monkeypatch: Any
) -> None:
    workflow = scenario.build.subject / ".github" / "workflows" / "release.yml"
    workflow.write_text(
        workflow.read_text().replace(
            "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683", "actions/checkout@v4", 1
        )
    )
    run, _ = release(scenario, stack, tmp_path, monkeypatch)
    assert run.exit_code == 1
    problems = run.finding.problems  # type: ignore[union-attr]
    assert any("actions/checkout@v4 is not pinned by a full commit SHA" in p for p in problems)
    assert all(p.startswith("workflows:") for p in problems)


def _incomplete(tmp_path: Path) -> Path:
    (bundle,) = [p for p in (tmp_path / "evidence").iterdir() if p.is_dir()]
    assert (bundle / MARKER).is_file()
    return bundle


def test_no_artifacts_stops_at_the_sbom_step(
    scenario: ReleaseScenario, stack: Any, registry: FakeRegistry, tmp_path: Path, monkeypatch: Any
) -> None:
    with pytest.raises(ConfigError, match=r"^sbom: .*no artifacts"):
        release(scenario, stack, tmp_path, monkeypatch, artifacts=False)
    _incomplete(tmp_path)


def test_a_registry_that_refuses_a_manifest_stops_at_the_push_step(
    scenario: ReleaseScenario, stack: Any, registry: FakeRegistry, tmp_path: Path, monkeypatch: Any
) -> None:
    registry.refuse_manifests = True
    with pytest.raises(InfraError, match=r"^push: the registry refused manifest"):
        release(scenario, stack, tmp_path, monkeypatch)
    bundle = _incomplete(tmp_path)
    assert (bundle / "attestations" / "artifact.sigstore.json").is_file()


def test_vex_without_justification_stops_at_the_vulns_step(
    scenario: ReleaseScenario, stack: Any, registry: FakeRegistry, tmp_path: Path, monkeypatch: Any
) -> None:
    import dataclasses

    bad = ROOT / "tests" / "data" / "vex" / "no-justification.openvex.json"
    with pytest.raises(ConfigError, match=r"^vulns: .*justification"):
        release(dataclasses.replace(scenario, vex=(bad,)), stack, tmp_path, monkeypatch)
    _incomplete(tmp_path)


def test_an_osv_record_that_does_not_parse_stops_at_the_vulns_step(
    scenario: ReleaseScenario, stack: Any, registry: FakeRegistry, tmp_path: Path, monkeypatch: Any
) -> None:
    import dataclasses

    bad = ROOT / "tests" / "data" / "osv-bad"
    with pytest.raises(ConfigError, match=r"^vulns: .*BROKEN-0001"):
        release(dataclasses.replace(scenario, vuln_db=bad), stack, tmp_path, monkeypatch)
    _incomplete(tmp_path)


def test_a_policy_with_a_syntax_error_stops_at_the_policy_step(
    scenario: ReleaseScenario, stack: Any, registry: FakeRegistry, tmp_path: Path, monkeypatch: Any
) -> None:
    import dataclasses

    policies = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", policies)
    (policies / "broken.rego").write_text("package cihub.broken\n\nallow if {\n")
    with pytest.raises(ConfigError, match=r"^policy: .*broken\.rego"):
        release(dataclasses.replace(scenario, policy_dir=policies), stack, tmp_path, monkeypatch)
    _incomplete(tmp_path)


def test_vex_statements_about_unknown_products_are_reported(
    scenario: ReleaseScenario, stack: Any, registry: FakeRegistry, tmp_path: Path, monkeypatch: Any
) -> None:
    import dataclasses

    extra = ROOT / "tests" / "data" / "vex" / "unknown-product.openvex.json"
    changed = dataclasses.replace(scenario, vex=(*scenario.vex, extra))
    run, _ = release(changed, stack, tmp_path, monkeypatch)
    assert run.passed, run.lines()
    assert any("left-pad@1.0.0 is not in the SBOM" in line for line in run.lines())
    findings = json.loads((run.bundle / "vulns" / "findings.json").read_text())
    assert len(findings["vex_reports"]) == 2


def test_an_sbom_that_fails_validation_stops_at_the_sbom_step(
    scenario: ReleaseScenario, stack: Any, registry: FakeRegistry, tmp_path: Path, monkeypatch: Any
) -> None:
    from harness.steps import sbom

    real = sbom.normalise

    def broken(*args: Any) -> Any:
        doc = real(*args)
        doc["components"][0]["type"] = "spaceship"
        return doc

    monkeypatch.setattr(sbom, "normalise", broken)
    with pytest.raises(ConfigError, match=r"^sbom: .*fails CycloneDX 1\.6 validation"):
        release(scenario, stack, tmp_path, monkeypatch)
    _incomplete(tmp_path)


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("allow if no_such_builtin(input)\n", "Function not found: no_such_builtin"),
        ('deny[msg] {\n\tmsg := "x"\n}\n', "Rego v1 only: `contains` keyword is required"),
        ("allow {\n\ttrue\n}\n", "Rego v1 only: `if` keyword is required"),
    ],
)
def test_a_policy_opa_1x_would_refuse_stops_at_the_policy_step(
    scenario: ReleaseScenario,
    stack: Any,
    registry: FakeRegistry,
    tmp_path: Path,
    monkeypatch: Any,
    source: str,
    reason: str,
) -> None:
    import dataclasses

    policies = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", policies)
    (policies / "bad.rego").write_text("package cihub.bad\n\n" + source)
    with pytest.raises(ConfigError, match=r"^policy: .*bad\.rego.*" + re.escape(reason)):
        release(dataclasses.replace(scenario, policy_dir=policies), stack, tmp_path, monkeypatch)
    _incomplete(tmp_path)
