from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.steps.vex import apply_vex, load_vex, parse_vex
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


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.update({"@context": "https://openvex.dev/ns/v0.1.0"}),
        lambda d: d["statements"][0].update({"status": "fine"}),
        lambda d: d["statements"][0].update({"justification": "because"}),
        lambda d: d.pop("author"),
        lambda d: d.update({"statements": []}),
        lambda d: d["statements"][0].update({"evil": True}),
    ],
)
def test_documents_that_are_not_openvex_v02_are_refused(data_dir: Path, change: object) -> None:
    doc = json.loads((data_dir / "vex" / "urllib3-not-affected.openvex.json").read_text())
    change(doc)  # type: ignore[operator]
    with pytest.raises(ConfigError, match=r"not OpenVEX v0\.2"):
        parse_vex(doc, "x.json")


def test_unreadable_document(tmp_path: Path) -> None:
    (tmp_path / "v.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a readable JSON"):
        load_vex(tmp_path / "v.json")
