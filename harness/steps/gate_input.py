"""The gate's input document: everything the policies judge, built once per run.

Its `vulns` part is the seed's `build_vuln_input` shape: findings per severity after VEX, the
remaining findings, and those a VEX statement suppressed (with the statement's status and
justification).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.steps.vex import VexResult
from harness.steps.vuln import counts


@dataclass(frozen=True)
class AttestationCheck:
    """One signature of the release, as verification found it."""

    name: str
    identity: str | None
    issuer: str | None
    verified: bool
    inclusion_verified: bool
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "name": self.name,
            "verified": self.verified,
            "inclusion_verified": self.inclusion_verified,
            "reason": self.reason,
        }
        if self.identity is not None:
            value["signer"] = {"identity": self.identity, "issuer": self.issuer}
        return value


@dataclass(frozen=True)
class GateInput:
    """What the policies are asked about."""

    determinism_verdict: str
    diff_empty: bool
    vex: VexResult
    attestations: Sequence[AttestationCheck]
    referrers: Sequence[Mapping[str, Any]]
    workflows: Mapping[str, Any] = field(default_factory=dict)
    artifact: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "artifact": dict(self.artifact),
            "determinism": {"verdict": self.determinism_verdict, "diff_empty": self.diff_empty},
            "vulns": build_vuln_input(self.vex),
            "attestations": [a.to_json() for a in self.attestations],
            "referrers": [dict(r) for r in self.referrers],
            "workflows": {"files": [], "zizmor": [], **dict(self.workflows)},
        }


def build_vuln_input(vex: VexResult) -> dict[str, Any]:
    """Findings per severity, minus those a VEX statement suppresses."""
    return {
        "counts": counts(vex.remaining),
        "findings": [f.to_json() for f in vex.remaining],
        "suppressed": [
            {
                **finding.to_json(),
                "status": statement.status,
                "justification": statement.justification,
            }
            for finding, statement in vex.suppressed
        ],
        "vex_reports": list(vex.reports),
    }
