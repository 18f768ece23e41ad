"""VEX step: OpenVEX v0.2 documents applied to vulnerability findings.

Each document is checked against the OpenVEX spec's own published JSON schema
(`schema/openvex.v0.2.json`, vendored unchanged from github.com/openvex/spec; see
schema/README.md). Two rules of ours follow in code, because the spec schema is looser: the
`@context` must name v0.2.0, and a `not_affected` statement must carry a `justification` (the
schema also accepts an impact statement alone; the gate wants the reason in the spec's closed
vocabulary). A statement whose product or vulnerability the SBOM and findings do not know is
reported, not silently applied.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packageurl import PackageURL

from harness._internal.schemas import validator_for
from harness.errors import ConfigError
from harness.steps.vuln import VulnFinding

VEX_MEDIA_TYPE = "application/openvex+json"
OPENVEX_CONTEXT = "https://openvex.dev/ns/v0.2.0"
SPEC_SCHEMA = "openvex.v0.2.json"
SUPPRESSING = frozenset({"not_affected", "fixed"})


@dataclass(frozen=True)
class VexStatement:
    """One statement: a vulnerability, the products it speaks of, and the status."""

    vulnerability: str
    aliases: tuple[str, ...]
    products: tuple[str, ...]
    status: str
    justification: str | None
    source: str

    def names(self) -> frozenset[str]:
        return frozenset((self.vulnerability, *self.aliases))


@dataclass(frozen=True)
class VexResult:
    """Findings after VEX: what remains, what a statement suppressed, and what was reported."""

    remaining: tuple[VulnFinding, ...]
    suppressed: tuple[tuple[VulnFinding, VexStatement], ...]
    reports: tuple[str, ...]


def load_vex(path: Path) -> tuple[VexStatement, ...]:
    """Read and check one OpenVEX v0.2 document.

    Raises:
        ConfigError: unreadable, not JSON, not OpenVEX v0.2, or a `not_affected` statement
            without a justification (the file and the JSON path named).
    """
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: vex: not a readable JSON document ({exc})") from exc
    return parse_vex(doc, str(path))


def parse_vex(doc: Any, source: str) -> tuple[VexStatement, ...]:
    """Check a parsed OpenVEX v0.2 document; see `load_vex`."""
    errors = validator_for(SPEC_SCHEMA).errors(doc)
    if errors:
        raise ConfigError(f"{source}: vex: not OpenVEX v0.2: {errors[0]}")
    if doc["@context"] != OPENVEX_CONTEXT:
        raise ConfigError(
            f"{source}: vex: not OpenVEX v0.2: $.@context: {doc['@context']!r} "
            f"is not {OPENVEX_CONTEXT!r}"
        )
    out: list[VexStatement] = []
    for index, raw in enumerate(doc["statements"]):
        where = f"{source}: vex: $.statements[{index}]"
        if raw["status"] == "not_affected" and not raw.get("justification"):
            raise ConfigError(f"{where}.justification: a not_affected statement needs one")
        vulnerability = raw["vulnerability"]
        out.append(
            VexStatement(
                vulnerability=vulnerability["name"],
                aliases=tuple(vulnerability.get("aliases", ())),
                products=tuple(_product_ids(raw.get("products", []))),
                status=raw["status"],
                justification=raw.get("justification"),
                source=source,
            )
        )
    return tuple(out)


def apply_vex(
    findings: Sequence[VulnFinding],
    statements: Sequence[VexStatement],
    sbom_purls: Iterable[str],
) -> VexResult:
    """Suppress the findings a `not_affected` or `fixed` statement covers; report statements
    about products not in the SBOM or vulnerabilities not among the findings."""
    known_products = {_base(p) for p in sbom_purls}
    known_vulns = {name for f in findings for name in (f.id, *f.aliases)}
    reports: list[str] = []
    for statement in statements:
        for product in statement.products:
            if _base(product) not in known_products:
                reports.append(
                    f"{statement.source}: {statement.vulnerability}: product {product} "
                    "is not in the SBOM"
                )
        if not statement.names() & known_vulns:
            reports.append(
                f"{statement.source}: {statement.vulnerability}: no such vulnerability "
                "among the findings"
            )
    remaining: list[VulnFinding] = []
    suppressed: list[tuple[VulnFinding, VexStatement]] = []
    for finding in findings:
        covering = _covering(finding, statements)
        if covering is not None and covering.status in SUPPRESSING:
            suppressed.append((finding, covering))
        else:
            remaining.append(finding)
    return VexResult(tuple(remaining), tuple(suppressed), tuple(reports))


def _covering(finding: VulnFinding, statements: Sequence[VexStatement]) -> VexStatement | None:
    names = {finding.id, *finding.aliases}
    found: VexStatement | None = None
    for statement in statements:
        if not statement.names() & names:
            continue
        if statement.products and _base(finding.purl) not in {_base(p) for p in statement.products}:
            continue
        found = statement  # the last statement about a pair wins, as in a document's history
    return found


def _product_ids(products: Iterable[Mapping[str, Any]]) -> Iterable[str]:
    for product in products:
        identifiers = product.get("identifiers") or {}
        yield str(identifiers.get("purl") or product.get("@id"))


def _base(purl: str) -> str:
    """A purl without qualifiers and subpath (type, namespace, name, version), or the text."""
    try:
        parsed = PackageURL.from_string(purl)
    except ValueError:
        return purl
    return str(
        PackageURL(
            type=parsed.type, namespace=parsed.namespace, name=parsed.name, version=parsed.version
        ).to_string()
    )
