"""Provenance step: an in-toto Statement v1 with the SLSA provenance v1 predicate.

`buildType` names the drill; `externalParameters` hold the source URI and commit and the build
command; `internalParameters` SOURCE_DATE_EPOCH and `network: none`; `resolvedDependencies` the
builder image digest and pinned inputs; `byproducts` the digests of the determinism diff and the
commands log. The run exercises SLSA Build L3 controls (hermetic, isolated builds, provenance
signed by the platform's identity); this module never claims the level itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from harness.errors import ConfigError

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://cihub.dev/drills/release/v1"
BUILDER_ID = "https://cihub.dev/lab/builder/v1"
SLSA_NOTE = "SLSA Build L3 controls exercised"


@dataclass(frozen=True)
class ProvenanceInput:
    """What the provenance says.

    Attributes:
        subjects: artifact name to `sha256` hex digest.
        source_uri: where the source came from (a git URL, or a `file:` URI).
        source_commit: the commit built (None when the subject is not a git checkout).
        build_command: the command the builder ran.
        source_date_epoch: the SOURCE_DATE_EPOCH of both builds.
        builder_image: the builder image's digest (`sha256:…`).
        pinned_inputs: other pinned inputs: name to `sha256:…` digest.
        byproducts: name to `sha256:…` digest (determinism diff, commands log).
        invocation_id: the run id.
        started_on, finished_on: UTC times of the build.
    """

    subjects: Mapping[str, str]
    source_uri: str
    source_commit: str | None
    build_command: str
    source_date_epoch: int
    builder_image: str
    invocation_id: str
    pinned_inputs: Mapping[str, str] = field(default_factory=dict)
    byproducts: Mapping[str, str] = field(default_factory=dict)
    started_on: datetime | None = None
    finished_on: datetime | None = None


def provenance_statement(spec: ProvenanceInput) -> dict[str, Any]:
    """The in-toto Statement v1 with an SLSA provenance v1 predicate.

    Raises:
        ConfigError: no subjects, or a digest that is not hex SHA-256.
    """
    if not spec.subjects:
        raise ConfigError("provenance: no artifacts to attest")
    for name, digest in spec.subjects.items():
        _check_hex(f"provenance: subject {name}", digest)
    source: dict[str, Any] = {"uri": spec.source_uri}
    if spec.source_commit:
        source["digest"] = {"gitCommit": spec.source_commit}
    resolved: list[dict[str, Any]] = [
        {"uri": "oci://cihub/builder", "digest": _digest_map(spec.builder_image)},
        {"uri": spec.source_uri, **({"digest": source["digest"]} if "digest" in source else {})},
    ]
    resolved += [
        {"uri": name, "digest": _digest_map(d)} for name, d in sorted(spec.pinned_inputs.items())
    ]
    metadata: dict[str, Any] = {"invocationId": spec.invocation_id}
    if spec.started_on is not None:
        metadata["startedOn"] = _time(spec.started_on)
    if spec.finished_on is not None:
        metadata["finishedOn"] = _time(spec.finished_on)
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": name, "digest": {"sha256": digest}}
            for name, digest in sorted(spec.subjects.items())
        ],
        "predicateType": SLSA_PROVENANCE_V1,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "source": source,
                    "buildCommand": spec.build_command,
                },
                "internalParameters": {
                    "SOURCE_DATE_EPOCH": spec.source_date_epoch,
                    "network": "none",
                    "slsa": SLSA_NOTE,
                },
                "resolvedDependencies": resolved,
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID},
                "metadata": metadata,
                "byproducts": [
                    {"name": name, "digest": _digest_map(d)}
                    for name, d in sorted(spec.byproducts.items())
                ],
            },
        },
    }


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def subjects_of(statement: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    subjects = statement.get("subject")
    return subjects if isinstance(subjects, list) else []


def _digest_map(digest: str) -> dict[str, str]:
    algorithm, sep, value = digest.partition(":")
    if not sep:
        algorithm, value = "sha256", digest
    _check_hex(f"provenance: digest {digest}", value)
    return {algorithm: value}


def _check_hex(where: str, value: str) -> None:
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ConfigError(f"{where}: not a lowercase hex SHA-256")


def _time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
