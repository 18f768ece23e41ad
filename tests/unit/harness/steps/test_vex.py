from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness._internal.schemas import load_schema, validator_for
from harness.errors import ConfigError
from harness.steps.vex import SPEC_SCHEMA, apply_vex, load_vex, parse_vex
from harness.steps.vuln import load_osv_db, match

PURLS = ("pkg:pypi/requests@2.19.0", "pkg:pypi/urllib3@1.24.1")


def test_vex_suppresses_what_it_justifies(data_dir: Path) -> None:
    findings = match(PURLS, load_osv_db(data_dir / "osv"))
    statements = load_vex(data_dir / "vex" / "urllib3-not-affected.openvex.json")
    result = apply_vex(findings, statements, PURLS)
    assert result.remaining == ()
    assert {f.id for f, _ in result.suppressed} == {"CIHUB-TEST-0001", "CIHUB-TEST-0002"}
    assert result.reports == ()


def test_without_vex_everything_remains(data_dir: Path) -> None:
    findings = match(PURLS, load_osv_db(data_dir / "osv"))
    assert apply_vex(findings, (), PURLS).remaining == findings


def test_not_affected_without_justification_is_refused(data_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"statements\[0\]\.justification"):
        load_vex(data_dir / "vex" / "no-justification.openvex.json")


def test_statements_about_unknown_products_and_vulns_are_reported(data_dir: Path) -> None:
    findings = match(PURLS, load_osv_db(data_dir / "osv"))
    statements = load_vex(data_dir / "vex" / "unknown-product.openvex.json")
    result = apply_vex(findings, statements, PURLS)
    assert len(result.remaining) == 2
    assert any("pkg:pypi/left-pad@1.0.0 is not in the SBOM" in r for r in result.reports)
    assert any("CIHUB-TEST-9999: no such vulnerability" in r for r in result.reports)


def test_a_statement_for_another_product_does_not_suppress(data_dir: Path) -> None:
    doc = json.loads((data_dir / "vex" / "urllib3-not-affected.openvex.json").read_text())
    doc["statements"][0]["products"] = [{"@id": "pkg:pypi/urllib3@9.9.9"}]
    findings = match(PURLS, load_osv_db(data_dir / "osv"))
    result = apply_vex(findings, parse_vex(doc, "x"), PURLS)
    assert [f.id for f in result.remaining] == ["CIHUB-TEST-0001"]


SAMPLE_VEX = Path(__file__).resolve().parents[4] / "scenarios" / "release" / "vex"


def test_the_spec_schema_is_the_published_one() -> None:
    schema = load_schema(SPEC_SCHEMA)
    # The OpenVEX spec's own $id and its if/then rules, not a hand-written subset.
    assert schema["$id"] == "https://github.com/openvex/spec/openvex_json_schema_0.2.0.json"
    assert "allOf" in schema["properties"]["statements"]["items"]


@pytest.mark.parametrize("path", sorted(SAMPLE_VEX.glob("*.json")), ids=lambda p: p.name)
def test_genuine_sample_vex_passes_the_spec_schema(path: Path) -> None:
    statements = load_vex(path)
    assert statements and all(s.justification for s in statements)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda d: d.update({"@context": "https://openvex.dev/ns/v0.1.0"}), r"\$\.@context"),
        (lambda d: d["statements"][0].update({"status": "fine"}), r"\$\.statements\[0\]\.status"),
        (
            lambda d: d["statements"][0].update({"justification": "because"}),
            r"\$\.statements\[0\]\.justification",
        ),
        (lambda d: d.pop("author"), r"\$: 'author' is a required property"),
        (lambda d: d.update({"statements": []}), r"\$\.statements"),
        (lambda d: d["statements"][0].update({"evil": True}), r"\$\.statements\[0\]"),
        (lambda d: d.update({"version": 0}), r"\$\.version"),
        (lambda d: d["statements"][0].pop("vulnerability"), r"\$\.statements\[0\]"),
        (
            lambda d: d["statements"][0].update({"products": [{"identifiers": {}}]}),
            r"\$\.statements\[0\]\.products\[0\]",
        ),
        (
            # The spec's own if/then: an affected statement needs an action statement.
            lambda d: d["statements"][0].update({"status": "affected"}),
            r"\$\.statements\[0\]",
        ),
        (
            # ... and not_affected needs a justification or an impact statement.
            lambda d: [d["statements"][0].pop(k) for k in ("justification", "impact_statement")],
            r"\$\.statements\[0\]",
        ),
    ],
)
def test_documents_the_spec_schema_rejects_are_refused_with_file_and_path(
    data_dir: Path, change: object, where: str
) -> None:
    doc = json.loads((data_dir / "vex" / "urllib3-not-affected.openvex.json").read_text())
    change(doc)  # type: ignore[operator]
    with pytest.raises(ConfigError, match=r"^x\.json: vex: not OpenVEX v0\.2: " + where):
        parse_vex(doc, "x.json")


def test_impact_statement_alone_passes_the_spec_but_not_our_rule(data_dir: Path) -> None:
    doc = json.loads((data_dir / "vex" / "no-justification.openvex.json").read_text())
    assert validator_for(SPEC_SCHEMA).errors(doc) == []
    with pytest.raises(ConfigError, match=r"no-justification\.openvex\.json: vex: \$\.statements"):
        load_vex(data_dir / "vex" / "no-justification.openvex.json")


def test_unreadable_document(tmp_path: Path) -> None:
    (tmp_path / "v.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a readable JSON"):
        load_vex(tmp_path / "v.json")


def test_the_gate_denies_a_suppression_without_justification_on_its_own() -> None:
    from harness.steps.policy import PolicySet, default_policy_dir

    gate_input = json.loads(
        (Path(__file__).resolve().parents[3] / "data" / "release" / "gate-allow.json").read_text()
    )
    policies = PolicySet.load(default_policy_dir())
    assert policies.evaluate(gate_input).allow
    gate_input["vulns"]["suppressed"][0]["justification"] = None
    decision = policies.evaluate(gate_input)
    assert not decision.allow
    assert decision.reasons == (
        "vulns: CIHUB-TEST-0001 in pkg:pypi/urllib3@1.24.1 is suppressed by a VEX statement "
        "without a justification",
    )
