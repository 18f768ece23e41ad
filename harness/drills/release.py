"""The release drill as a `Drill`: dual build, SBOM, vulnerabilities + VEX, provenance, signing,
OCI referrers and the policy gate; the runner keeps the evidence.

Steps, in the order they run (each recorded in the bundle with its result and time):
1. `dual-build`: the determinism drill (`harness.determinism.run_determinism`);
2. `sbom`: CycloneDX 1.6 of build A's artifacts (`harness.steps.sbom`);
3. `vulns`: OSV matching, then the VEX applied (`harness.steps.vuln`, `harness.steps.vex`);
4. `provenance`: SLSA provenance v1 (`harness.steps.provenance`);
5. `sign`: the artifact signed, SBOM/VEX/provenance attested (DSSE), each logged and verified;
6. `push`: the artifact pushed by digest, SBOM, VEX, provenance and the signature bundles
   attached as OCI referrers, then read back;
7. `policy`: every signature re-verified from the bundle's files, then the Rego gate
   (`harness.steps.policy`); decisions and a signed SLSA verification summary written.
The runner then finalizes (signs) the bundle. `DrillFinding.met` only when the gate allows.

Bad input (no artifacts, an invalid SBOM or VEX, a broken policy or OSV record, a registry that
refuses a manifest) raises with the step named; the runner keeps the partial bundle incomplete.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import rfc8785
import yaml

from harness._internal.schemas import validator_for
from harness.determinism import (
    DeterminismResult,
    DeterminismScenario,
    DrillOptions,
    scenario_from_mapping,
)
from harness.drills._session import DualBuildDrill
from harness.drills._steps import DUAL_BUILD, DUAL_BUILD_STEPS, StepBoard
from harness.drills.runner import DrillFinding, Progress
from harness.errors import CihubError, ConfigError, InfraError
from harness.evidence import EvidenceBundle, IdentityPin
from harness.evidence.sigstore_verify import KeylessVerifier, PinnedRoot
from harness.sign import SignedArtifact, SigningSetup, sign_artifact, sign_payload
from harness.steps.gate_input import AttestationCheck, GateInput, build_vuln_input
from harness.steps.policy import GateDecision, PolicySet, default_policy_dir
from harness.steps.provenance import ProvenanceInput, provenance_statement, sha256_hex
from harness.steps.sbom import SBOM_MEDIA_TYPE, SbomInput, generate_sbom
from harness.steps.vex import VEX_MEDIA_TYPE, VexStatement, apply_vex, load_vex
from harness.steps.vuln import load_osv_db, match
from harness.steps.workflows import workflow_facts
from harness.telemetry import ScenarioKind
from lab.errors import LabError
from lab.oci import OCI_MANIFEST, Blob, Descriptor, OciClient, digest_of

_logger = logging.getLogger(__name__)

CHECK = "release"
SCENARIO_KIND: ScenarioKind = "release"
REQUIRED_EVIDENCE = (
    "determinism/",
    "sbom.json",
    "vex.json",
    "slsa-provenance.json",
    "attestations/",
    "referrers/",
    "policy/decisions.json",
)
IN_TOTO_MEDIA_TYPE = "application/vnd.in-toto+json"
SIGSTORE_BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
ARTIFACT_TYPE = "application/vnd.cihub.release.artifact.v1"
CYCLONEDX_PREDICATE = "https://cyclonedx.org/bom"
OPENVEX_PREDICATE = "https://openvex.dev/ns/v0.2.0"
VSA_PREDICATE = "https://slsa.dev/verification_summary/v1"
VERIFIER_ID = "https://cihub.dev/release-gate/v1"
REFERRER_TYPES = {
    "sbom": SBOM_MEDIA_TYPE,
    "vex": VEX_MEDIA_TYPE,
    "provenance": IN_TOTO_MEDIA_TYPE,
    "signatures": SIGSTORE_BUNDLE_MEDIA_TYPE,
}
_RELEASE_KEYS = ("vuln_db", "vex", "policy", "repository")
RELEASE_SCHEMA = "scenario.release.v1.json"
STEPS = (DUAL_BUILD, "sbom", "vulns", "provenance", "sign", "push", "policy")


@dataclass(frozen=True)
class ReleaseScenario:
    """A release: what to build (a determinism scenario) and what to release it with.

    Attributes:
        build: the subject, build command, artifacts, image (as `cihub run determinism`).
        vuln_db: a folder of OSV records (None: no vulnerability database, no findings).
        vex: OpenVEX v0.2 documents supplied with the subject.
        policy_dir: the Rego policies (default: the project's `policies/`).
        repository: the registry repository the artifact is pushed to.
    """

    build: DeterminismScenario
    vuln_db: Path | None = None
    vex: tuple[Path, ...] = ()
    policy_dir: Path | None = None
    repository: str = ""

    @property
    def name(self) -> str:
        return self.build.name

    @property
    def repo(self) -> str:
        return self.repository or "cihub/release/" + _repo_part(self.build.name)


@dataclass(frozen=True)
class ReleaseServices:
    """The lab services a release uses.

    Attributes:
        registry_url: the OCI registry (the lab's, through its fault proxy).
        signing: returns a fresh `SigningSetup` (identity tokens are short-lived).
    """

    registry_url: str
    signing: Callable[[], SigningSetup]


@dataclass(frozen=True)
class ReleaseResult:
    """What the release drill found (for `--json` and the bench)."""

    determinism: DeterminismResult
    gate: GateDecision | None
    artifact: str
    artifact_digest: str
    referrers: tuple[Mapping[str, Any], ...]
    step_seconds: Mapping[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "artifact": self.artifact,
            "artifact_digest": self.artifact_digest,
            "determinism": self.determinism.verdict,
            "gate": self.gate.to_json() if self.gate is not None else None,
            "referrers": [dict(r) for r in self.referrers],
            "step_seconds": dict(self.step_seconds),
        }


def load_release_scenario(path: Path) -> ReleaseScenario:
    """A release scenario file: the determinism scenario's keys plus `vuln_db`, `vex`,
    `policy` and `repository` (paths relative to the file).

    Raises:
        ConfigError: unreadable, not YAML, or a field is invalid (the file and field named).
    """
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the release scenario ({exc})") from exc
    return release_scenario_from_mapping(doc, base_dir=path.parent, source=path)


def release_scenario_from_mapping(
    doc: Any, *, base_dir: Path, source: Path | None = None
) -> ReleaseScenario:
    """See `load_release_scenario`."""
    where = str(source) if source is not None else "scenario"
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: a release scenario must be a mapping")
    doc = dict(doc)
    extra = {k: doc.pop(k) for k in _RELEASE_KEYS if k in doc}
    errors = validator_for(RELEASE_SCHEMA).errors(extra)
    if errors:
        raise ConfigError(f"{where}: {errors[0]}")
    build = scenario_from_mapping(doc, base_dir=base_dir, source=source)
    vex = extra.get("vex", [])
    if isinstance(vex, str):
        vex = [vex]
    return ReleaseScenario(
        build=build,
        vuln_db=(base_dir / extra["vuln_db"]).resolve() if "vuln_db" in extra else None,
        vex=tuple((base_dir / v).resolve() for v in vex),
        policy_dir=(base_dir / extra["policy"]).resolve() if "policy" in extra else None,
        repository=str(extra.get("repository", "")),
    )


class ReleaseDrill(DualBuildDrill):
    """The release drill; see the module docstring.

    Args:
        scenario: what to build and release.
        services: the registry and the signing setup.
        options: how to build (image mode, ...).
        client: the Docker client (default: from the environment).

    Example:
        >>> run = run_drill(ReleaseDrill(load_release_scenario(path), services), settings)
        >>> run.finding.observed
        'allowed'
    """

    check = CHECK

    def __init__(
        self,
        scenario: ReleaseScenario,
        services: ReleaseServices,
        options: DrillOptions | None = None,
        client: docker.DockerClient | None = None,
    ) -> None:
        super().__init__(options, client)
        self.scenario = scenario
        self._services = services
        self.result: ReleaseResult | None = None
        self.steps = StepBoard(STEPS, {DUAL_BUILD: DUAL_BUILD_STEPS})
        """Each step's state and time as the drill runs (the live table reads it)."""
        self._seconds: dict[str, float] = {}

    @property
    def kind(self) -> ScenarioKind:
        return SCENARIO_KIND

    @property
    def name(self) -> str:
        return self.scenario.name

    @property
    def subject(self) -> Path | None:
        return self.scenario.build.subject

    @property
    def required(self) -> Sequence[str]:
        return REQUIRED_EVIDENCE

    @contextmanager
    def _step(self, bundle: EvidenceBundle, name: str, progress: Progress | None) -> Iterator[None]:
        """Time and record a step; name it in any error that leaves it."""
        self.steps.start(name)
        if progress:
            progress(f"release: {name}")
        start = time.perf_counter()
        try:
            with bundle.step(name):
                try:
                    yield
                except CihubError as exc:
                    raise type(exc)(f"{name}: {exc.diagnostics()}") from exc
                except LabError as exc:
                    raise InfraError(f"{name}: {exc.diagnostics()}") from exc
        finally:
            self._seconds[name] = time.perf_counter() - start
            done = [e for e in bundle.predicate.steps if e.name == name]
            self.steps.finish(name, done[-1].result if done else "error", self._seconds[name])

    def run(self, bundle: EvidenceBundle, progress: Progress | None) -> DrillFinding:
        s = self.scenario
        start = time.perf_counter()
        self.steps.start(DUAL_BUILD)

        def dual_build_progress(message: str) -> None:
            self.steps.dual_build_said(message)
            if progress:
                progress(message)

        try:
            det = self._dual_build(s.build, bundle, dual_build_progress)
        finally:
            self._seconds[DUAL_BUILD] = time.perf_counter() - start
        self.steps.dual_build_done(bundle.predicate.steps, det.builds)
        self.steps.finish(DUAL_BUILD, det.verdict, self._seconds[DUAL_BUILD])
        if det.verdict == "build-failed":
            return DrillFinding(
                observed="build-failed",
                expected="reproducible, and every release policy allows",
                met=False,
                judged=False,
                detail=f"release: the build failed: {det.detail}",
            )
        artifacts = _artifacts_of(bundle)
        with self._step(bundle, "sbom", progress):
            if not artifacts:
                raise ConfigError(f"{s.build.subject}: the subject has no artifacts to release")
            sbom = generate_sbom(
                SbomInput(s.build.subject, tuple(artifacts.values()), det.source_date_epoch)
            )
            bundle.write_bytes("sbom.json", sbom.data)
        with self._step(bundle, "vulns", progress):
            records = load_osv_db(s.vuln_db) if s.vuln_db is not None else ()
            findings = match(sbom.purls, records)
            statements: list[VexStatement] = []
            documents: list[Any] = []
            for path in s.vex:
                statements += load_vex(path)
                documents.append(json.loads(path.read_bytes()))
            vex = apply_vex(findings, statements, sbom.purls)
            vex_doc = _merged_vex(documents, bundle.run_id, det.source_date_epoch)
            vex_bytes = _json_bytes(vex_doc)
            bundle.write_bytes("vex.json", vex_bytes)
            bundle.write_json("vulns/findings.json", build_vuln_input(vex))
        name, path = next(iter(sorted(artifacts.items())))
        data = path.read_bytes()
        subjects = {n: sha256_hex(p.read_bytes()) for n, p in artifacts.items()}
        with self._step(bundle, "provenance", progress):
            statement = provenance_statement(
                ProvenanceInput(
                    subjects=subjects,
                    source_uri=_source_uri(s.build.subject),
                    source_commit=_git_commit(s.build.subject),
                    build_command=s.build.build,
                    source_date_epoch=det.source_date_epoch,
                    builder_image=_image_digest(det.image.image_id),
                    invocation_id=bundle.run_id,
                    byproducts=_byproducts(bundle),
                )
            )
            provenance_bytes = _json_bytes(statement)
            bundle.write_bytes("slsa-provenance.json", provenance_bytes)
        with self._step(bundle, "sign", progress):
            attestations = {
                "sbom": _statement(subjects, CYCLONEDX_PREDICATE, sbom.document),
                "vex": _statement(subjects, OPENVEX_PREDICATE, vex_doc),
                "provenance": provenance_bytes,
            }
            signed: dict[str, SignedArtifact] = {}
            signed["artifact"] = sign_artifact(data, self._services.signing())
            bundle.write_bytes("attestations/artifact.sigstore.json", _b(signed["artifact"]))
            for what, payload in attestations.items():
                bundle.write_bytes(f"attestations/{what}.intoto.json", payload)
                signed[what] = sign_payload(payload, self._services.signing())
                bundle.write_bytes(f"attestations/{what}.sigstore.json", _b(signed[what]))
        with self._step(bundle, "push", progress):
            artifact_digest, listed = self._push(bundle, name, data, sbom.data, vex_bytes)
        with self._step(bundle, "policy", progress):
            checks = _verify_attestations(bundle, name, self._services.signing().trust_config)
            facts = workflow_facts(s.build.subject)
            gate_input = GateInput(
                determinism_verdict=det.verdict,
                diff_empty=_diff_empty(bundle),
                vex=vex,
                attestations=checks,
                referrers=listed,
                workflows=facts.to_json(),
                artifact={"name": name, "digest": artifact_digest},
            ).to_json()
            policies = PolicySet.load(s.policy_dir or default_policy_dir())
            gate = policies.evaluate(gate_input)
            bundle.write_json("policy/input.json", gate_input)
            bundle.write_json("policy/decisions.json", decisions_json(gate))
            bundle.set_policy_digest(policies.digest)
            summary = verification_summary(gate, name, subjects, bundle.run_id)
            summary_bytes = _json_bytes(summary)
            bundle.write_bytes("policy/verification-summary.intoto.json", summary_bytes)
            vsa = sign_payload(summary_bytes, self._services.signing())
            bundle.write_bytes("policy/verification-summary.sigstore.json", _b(vsa))
        bundle.add_artifact(name, "sha256:" + subjects[name])
        self.result = ReleaseResult(
            det, gate, name, artifact_digest, tuple(listed), dict(self._seconds)
        )
        bundle.set_verdict(
            CHECK, "pass" if gate.allow else "fail", "; ".join(gate.reasons) or "gate allows"
        )
        return finding_of(gate, det, vex.reports)

    def _push(
        self, bundle: EvidenceBundle, name: str, data: bytes, sbom: bytes, vex: bytes
    ) -> tuple[str, list[dict[str, Any]]]:
        repo = self.scenario.repo
        with OciClient(self._services.registry_url) as oci:
            oci.push_blob(repo, b"{}")
            layer = Blob("application/octet-stream", data)
            oci.push_blob(repo, data)
            manifest: dict[str, Any] = {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": ARTIFACT_TYPE,
                "config": {
                    "mediaType": "application/vnd.oci.empty.v1+json",
                    "digest": digest_of(b"{}"),
                    "size": 2,
                },
                "layers": [
                    {
                        **layer.descriptor().to_json(),
                        "annotations": {"org.opencontainers.image.title": Path(name).name},
                    }
                ],
            }
            manifest_bytes = rfc8785.dumps(manifest)
            digest = oci.push_manifest(repo, manifest_bytes, OCI_MANIFEST)
            size = len(manifest_bytes)
            signatures = [
                Blob(SIGSTORE_BUNDLE_MEDIA_TYPE, bundle.path_for(f"attestations/{w}").read_bytes())
                for w in (
                    "artifact.sigstore.json",
                    "sbom.sigstore.json",
                    "vex.sigstore.json",
                    "provenance.sigstore.json",
                )
            ]
            contents: dict[str, list[Blob]] = {
                "sbom": [Blob(SBOM_MEDIA_TYPE, sbom)],
                "vex": [Blob(VEX_MEDIA_TYPE, vex)],
                "provenance": [
                    Blob(IN_TOTO_MEDIA_TYPE, bundle.path_for("slsa-provenance.json").read_bytes())
                ],
                "signatures": signatures,
            }
            for what, layers in contents.items():
                oci.attach_referrer(
                    repo,
                    digest,
                    OCI_MANIFEST,
                    size,
                    REFERRER_TYPES[what],
                    layers,
                    annotations={"org.cihub.release.attachment": what},
                )
            listed = [_descriptor_json(d) for d in oci.list_referrers(repo, digest)]
        listing = {
            "registry": self._services.registry_url,
            "repository": repo,
            "subject": {"digest": digest, "mediaType": OCI_MANIFEST, "size": size},
            "referrers": listed,
        }
        bundle.write_json("referrers/listing.json", listing)
        bundle.write_bytes("referrers/artifact-manifest.json", manifest_bytes)
        return digest, listed


def finding_of(
    gate: GateDecision, det: DeterminismResult, vex_reports: Sequence[str] = ()
) -> DrillFinding:
    """Met only when the gate allows.

    `observed` is the dual build's verdict, not `allowed`/`denied`: `cihub evidence verify`
    cross-checks the manifest's outcome against `determinism/diff.txt` whatever the drill, so
    the release's own verdict lives in the `release` verdict, `policy/decisions.json` and the
    record's `release.gate`.
    """
    allowing = sum(d.allow for d in gate.decisions)
    detail = (
        f"release gate {'allows' if gate.allow else 'denies'}: {allowing} of "
        f"{len(gate.decisions)} policies allow ({det.verdict})"
    )
    return DrillFinding(
        observed=det.verdict,
        expected="reproducible, and every release policy allows",
        met=gate.allow,
        detail=detail,
        lines=(
            *(f"reason: {r}" for r in gate.reasons),
            *(() if gate.reasons else ("reasons: none (every policy allows)",)),
            *(f"vex: {r}" for r in vex_reports),
        ),
        record={"release": {"gate": {"allow": gate.allow, "reasons": list(gate.reasons)}}},
        problems=gate.reasons,
    )


def decisions_json(gate: GateDecision) -> dict[str, Any]:
    """`policy/decisions.json`: one entry per policy (`verify` reads `decisions[].allow`)."""
    return {
        "allow": gate.allow,
        "decisions": [
            {"policy": d.name, "allow": d.allow, "reasons": list(d.reasons)} for d in gate.decisions
        ],
        "input_digest": gate.input_digest,
        "policy_digest": gate.policy_digest,
    }


def verification_summary(
    gate: GateDecision, name: str, subjects: Mapping[str, str], run_id: str
) -> dict[str, Any]:
    """An SLSA verification summary (VSA v1) of the gate's decision; no level is claimed."""
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": n, "digest": {"sha256": d}} for n, d in sorted(subjects.items())],
        "predicateType": VSA_PREDICATE,
        "predicate": {
            "verifier": {"id": VERIFIER_ID},
            "timeVerified": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "resourceUri": name,
            "policy": {"uri": "policies/", "digest": _digest_map(gate.policy_digest)},
            "inputAttestations": [],
            "verificationResult": "PASSED" if gate.allow else "FAILED",
            "verifiedLevels": [],
            "slsaVersion": "1.0",
            "cihub": {"run_id": run_id, "reasons": list(gate.reasons)},
        },
    }


def _verify_attestations(
    bundle: EvidenceBundle, artifact: str, trust_config: Path
) -> list[AttestationCheck]:
    """Re-verify every signature from the files in the bundle (a tampered file fails)."""
    verifier = KeylessVerifier(PinnedRoot.load(trust_config), IdentityPin())
    checks: list[AttestationCheck] = []
    # Unpinned on purpose (the signer policy judges the identity): sigstore warns about its
    # no-op identity policy once per signature; that warning says nothing here.
    quiet = _DropNoOpWarning()
    logging.getLogger("sigstore.verify.policy").addFilter(quiet)
    try:
        _verify_each(verifier, bundle, artifact, checks)
    finally:
        logging.getLogger("sigstore.verify.policy").removeFilter(quiet)
    return checks


class _DropNoOpWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "no-op" not in record.getMessage()


def _verify_each(
    verifier: KeylessVerifier, bundle: EvidenceBundle, artifact: str, checks: list[AttestationCheck]
) -> None:
    for what in ("artifact", "sbom", "vex", "provenance"):
        data_file = artifact if what == "artifact" else f"attestations/{what}.intoto.json"
        path = _artifacts_of(bundle)[artifact] if what == "artifact" else bundle.path_for(data_file)
        try:
            signature = verifier.verify_blob(
                path.read_bytes(),
                bundle.path_for(f"attestations/{what}.sigstore.json").read_bytes(),
            )
        except (CihubError, OSError) as exc:
            checks.append(AttestationCheck(what, None, None, False, False, _one_line(exc)))
            continue
        proof = signature.log_entry.get("inclusionProof")
        checks.append(
            AttestationCheck(
                what,
                signature.identity,
                signature.issuer,
                True,
                isinstance(proof, dict) and bool(proof.get("checkpoint")),
            )
        )


def _artifacts_of(bundle: EvidenceBundle) -> dict[str, Path]:
    """Build A's artifacts in the bundle, by their path relative to the build output."""
    root = bundle.path_for("determinism/build-A")
    if not root.is_dir():
        return {}
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def _diff_empty(bundle: EvidenceBundle) -> bool:
    diff = bundle.path_for("determinism/diff.txt")
    return diff.is_file() and diff.stat().st_size == 0


def _byproducts(bundle: EvidenceBundle) -> dict[str, str]:
    out = {}
    for rel in ("determinism/diff.txt", "audit/commands.log"):
        path = bundle.path_for(rel)
        if path.is_file():
            out[rel] = "sha256:" + sha256_hex(path.read_bytes())
    return out


def _statement(subjects: Mapping[str, str], predicate_type: str, predicate: Any) -> bytes:
    return _json_bytes(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": n, "digest": {"sha256": d}} for n, d in sorted(subjects.items())],
            "predicateType": predicate_type,
            "predicate": predicate,
        }
    )


def _merged_vex(documents: Sequence[Any], run_id: str, epoch: int) -> dict[str, Any]:
    """One OpenVEX document with every supplied statement (the referrer and `vex.json`)."""
    return {
        "@context": OPENVEX_PREDICATE,
        "@id": f"https://cihub.dev/vex/{run_id}",
        "author": "cihub release drill",
        "timestamp": datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "version": 1,
        "statements": [s for doc in documents for s in doc.get("statements", [])],
    }


def _json_bytes(value: Any) -> bytes:
    data: bytes = rfc8785.dumps(value)
    return data


def _b(signed: SignedArtifact) -> bytes:
    return signed.bundle_json.encode()


def _descriptor_json(descriptor: Descriptor) -> dict[str, Any]:
    value: dict[str, Any] = descriptor.to_json()
    return value


def _digest_map(digest: str) -> dict[str, str]:
    algorithm, _, value = digest.partition(":")
    return {algorithm: value}


def _image_digest(image_id: str) -> str:
    return image_id if image_id.startswith("sha256:") else "sha256:" + image_id


def _source_uri(subject: Path) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(subject), "config", "--get", "remote.origin.url"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return subject.resolve().as_uri()
    url = done.stdout.strip()
    return f"git+{url}" if done.returncode == 0 and url else subject.resolve().as_uri()


def _git_commit(subject: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(subject), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and len(commit) == 40 else None


def _repo_part(name: str) -> str:
    part = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return part or "subject"


def _one_line(exc: BaseException) -> str:
    diagnostics = getattr(exc, "diagnostics", None)
    text = str(diagnostics() if callable(diagnostics) else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
