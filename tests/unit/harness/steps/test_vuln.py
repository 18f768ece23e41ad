from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.steps.vuln import counts, load_osv_db, match, parse_osv_record

PURLS = ("pkg:pypi/requests@2.19.0", "pkg:pypi/urllib3@1.24.1", "pkg:pypi/jinja2@3.1.4")


def test_fixture_db_matches_by_range(data_dir: Path) -> None:
    found = match(PURLS, load_osv_db(data_dir / "osv"))
    assert [(f.id, f.purl, f.severity) for f in found] == [
        ("CIHUB-TEST-0001", "pkg:pypi/urllib3@1.24.1", "critical"),
        ("CIHUB-TEST-0002", "pkg:pypi/requests@2.19.0", "high"),
    ]
    assert counts(found) == {"critical": 1, "high": 1, "medium": 0, "low": 0, "unknown": 0}


def test_fixed_versions_do_not_match(data_dir: Path) -> None:
    db = load_osv_db(data_dir / "osv")
    assert match(["pkg:pypi/urllib3@1.24.2", "pkg:pypi/requests@2.20.0"], db) == ()
    assert match(["pkg:pypi/requests@1.9"], db) == ()  # before `introduced`


def test_last_affected_is_inclusive_and_versions_lists_match(data_dir: Path) -> None:
    db = load_osv_db(data_dir / "osv")
    assert [f.id for f in match(["pkg:pypi/cihub-release-sample@0.9"], db)] == ["CIHUB-TEST-0004"]
    assert match(["pkg:pypi/cihub-release-sample@1.0.0"], db) == ()
    assert [f.severity for f in match(["pkg:pypi/jinja2@2.10.1"], db)] == ["medium"]


def test_pypi_names_are_normalised(data_dir: Path) -> None:
    db = load_osv_db(data_dir / "osv")
    assert [f.id for f in match(["pkg:pypi/URLLib3@1.0"], db)] == ["CIHUB-TEST-0001"]


def test_a_record_that_does_not_parse_is_named(data_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"BROKEN-0001\.json: vulns: .*ranges\[0\]\.events"):
        load_osv_db(data_dir / "osv-bad")


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"summary": "no id"}, r"\$\.id"),
        ({"id": "X", "affected": {}}, r"\$\.affected"),
        ({"id": "X", "affected": [{"ranges": []}]}, r"affected\[0\]\.package"),
        ({"id": "X", "affected": [{"package": {"ecosystem": "Nope", "name": "a"}}]}, "ecosystem"),
        ({"id": "X", "affected": [{"package": {"purl": "::"}}]}, r"package\.purl"),
    ],
)
def test_hostile_records_are_refused(tmp_path: Path, doc: dict[str, object], field: str) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=field):
        parse_osv_record(path)


def test_not_json_and_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{")
    with pytest.raises(ConfigError, match="not a JSON OSV record"):
        load_osv_db(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_osv_db(tmp_path / "missing")


def test_a_bad_purl_is_named(data_dir: Path) -> None:
    with pytest.raises(ConfigError, match="not a package URL"):
        match(["requests==2.19"], load_osv_db(data_dir / "osv"))
