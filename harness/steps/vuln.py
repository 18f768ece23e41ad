"""Vulnerability step: match an SBOM's purls against a folder of OSV records.

Purls are parsed with packageurl-python and versions compared with univers (its range class for
the purl's type); OSV `ranges` events (`introduced`, `fixed`, `last_affected`) become univers
constraints, one interval at a time, and `versions` lists are matched exactly. No range logic is
written here. Users point `--vuln-db` at a mirror of OSV data (one JSON record per file, any
depth); `tests/data/osv/` is a tiny fixture database.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packageurl import PackageURL
from univers.version_constraint import VersionConstraint
from univers.version_range import RANGE_CLASS_BY_SCHEMES, VersionRange
from univers.versions import InvalidVersion, Version

from harness.errors import ConfigError

_logger = logging.getLogger(__name__)

SEVERITIES = ("critical", "high", "medium", "low", "unknown")
# OSV ecosystems and the purl types they name.
_PURL_TYPE_BY_ECOSYSTEM = {
    "pypi": "pypi",
    "npm": "npm",
    "maven": "maven",
    "go": "golang",
    "crates.io": "cargo",
    "rubygems": "gem",
    "nuget": "nuget",
    "packagist": "composer",
    "debian": "deb",
    "alpine": "apk",
    "hex": "hex",
}
_SEVERITY_WORDS = {"critical": "critical", "high": "high", "moderate": "medium", "medium": "medium"}
_SEVERITY_WORDS["low"] = "low"


@dataclass(frozen=True)
class AffectedPackage:
    """One `affected[]` entry of an OSV record."""

    purl_type: str
    name: str
    ranges: tuple[VersionRange, ...]
    versions: frozenset[str]


@dataclass(frozen=True)
class OsvRecord:
    """An OSV record, reduced to what matching needs."""

    id: str
    aliases: tuple[str, ...]
    severity: str
    summary: str
    affected: tuple[AffectedPackage, ...]
    source: Path


@dataclass(frozen=True)
class VulnFinding:
    """A vulnerability of one SBOM component."""

    id: str
    aliases: tuple[str, ...]
    purl: str
    severity: str
    summary: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "aliases": list(self.aliases),
            "purl": self.purl,
            "severity": self.severity,
            "summary": self.summary,
        }


def load_osv_db(folder: Path) -> tuple[OsvRecord, ...]:
    """Read every `*.json` OSV record under `folder`.

    Raises:
        ConfigError: the folder is missing, or a record does not parse (the file and field named).
    """
    if not folder.is_dir():
        raise ConfigError(f"{folder}: vulns: the vulnerability database folder does not exist")
    return tuple(parse_osv_record(path) for path in sorted(folder.rglob("*.json")))


def parse_osv_record(path: Path) -> OsvRecord:
    """One OSV record.

    Raises:
        ConfigError: not JSON, no `id`, a malformed `affected` entry or an invalid version.
    """
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: vulns: not a JSON OSV record ({exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("id"), str):
        raise ConfigError(f"{path}: vulns: $.id: an OSV record needs a string id")
    affected = doc.get("affected", [])
    if not isinstance(affected, list):
        raise ConfigError(f"{path}: vulns: $.affected: must be a list")
    return OsvRecord(
        id=doc["id"],
        aliases=tuple(str(a) for a in doc.get("aliases", []) if isinstance(a, str)),
        severity=_severity(doc),
        summary=str(doc.get("summary", "")),
        affected=tuple(_affected(path, i, entry) for i, entry in enumerate(affected)),
        source=path,
    )


def match(purls: Iterable[str], records: Sequence[OsvRecord]) -> tuple[VulnFinding, ...]:
    """The findings: each (record, purl) pair whose version an affected entry covers.

    Raises:
        ConfigError: a purl does not parse.
    """
    findings: dict[tuple[str, str], VulnFinding] = {}
    for text in purls:
        try:
            purl = PackageURL.from_string(text)
        except ValueError as exc:
            raise ConfigError(f"vulns: {text!r}: not a package URL ({exc})") from exc
        if purl.version is None:
            continue
        name = _name_of(purl.type, purl.namespace, purl.name)
        for record in records:
            for affected in record.affected:
                if affected.purl_type != purl.type or affected.name != name:
                    continue
                if _is_affected(affected, purl.version):
                    findings[(record.id, text)] = VulnFinding(
                        record.id, record.aliases, text, record.severity, record.summary
                    )
    return tuple(findings[k] for k in sorted(findings))


def counts(findings: Iterable[VulnFinding]) -> dict[str, int]:
    """Findings per severity (every severity present, zero when none)."""
    out = dict.fromkeys(SEVERITIES, 0)
    for finding in findings:
        out[finding.severity] += 1
    return out


def _is_affected(affected: AffectedPackage, version: str) -> bool:
    if version in affected.versions:
        return True
    range_class = RANGE_CLASS_BY_SCHEMES.get(affected.purl_type)
    if range_class is None or not affected.ranges:
        return False
    try:
        parsed = _version(range_class, version)
    except (InvalidVersion, ValueError):
        _logger.debug("%s: not a %s version; only exact matches apply", version, range_class)
        return False
    return any(parsed in interval for interval in affected.ranges)


def _name_of(purl_type: str, namespace: str | None, name: str) -> str:
    full = f"{namespace}/{name}" if namespace else name
    if purl_type == "pypi":
        return full.lower().replace("_", "-").replace(".", "-")
    if purl_type == "maven" and namespace:
        return f"{namespace}:{name}"
    return full


def _severity(doc: Mapping[str, Any]) -> str:
    specific = doc.get("database_specific")
    if isinstance(specific, Mapping) and isinstance(specific.get("severity"), str):
        return _SEVERITY_WORDS.get(specific["severity"].lower(), "unknown")
    for entry in doc.get("affected", []) or []:
        eco = entry.get("ecosystem_specific") if isinstance(entry, Mapping) else None
        if isinstance(eco, Mapping) and isinstance(eco.get("severity"), str):
            return _SEVERITY_WORDS.get(eco["severity"].lower(), "unknown")
    return "unknown"


def _affected(path: Path, index: int, entry: Any) -> AffectedPackage:
    where = f"{path}: vulns: $.affected[{index}]"
    if not isinstance(entry, Mapping) or not isinstance(entry.get("package"), Mapping):
        raise ConfigError(f"{where}.package: missing")
    package = entry["package"]
    if isinstance(package.get("purl"), str):
        try:
            purl = PackageURL.from_string(package["purl"])
        except ValueError as exc:
            raise ConfigError(f"{where}.package.purl: not a package URL") from exc
        purl_type, name = purl.type, _name_of(purl.type, purl.namespace, purl.name)
    else:
        ecosystem = str(package.get("ecosystem", "")).split(":")[0].lower()
        if ecosystem not in _PURL_TYPE_BY_ECOSYSTEM or not isinstance(package.get("name"), str):
            raise ConfigError(f"{where}.package: needs a purl, or a known ecosystem and a name")
        purl_type = _PURL_TYPE_BY_ECOSYSTEM[ecosystem]
        namespace, _, bare = package["name"].rpartition("/")
        name = _name_of(purl_type, namespace or None, bare)
        if purl_type == "maven":
            name = package["name"]
    versions = entry.get("versions", [])
    if not isinstance(versions, list):
        raise ConfigError(f"{where}.versions: must be a list")
    ranges = tuple(_ranges(where, purl_type, entry.get("ranges", [])))
    return AffectedPackage(purl_type, name, ranges, frozenset(str(v) for v in versions))


def _ranges(where: str, purl_type: str, ranges: Any) -> list[VersionRange]:
    if not isinstance(ranges, list):
        raise ConfigError(f"{where}.ranges: must be a list")
    range_class = RANGE_CLASS_BY_SCHEMES.get(purl_type)
    out: list[VersionRange] = []
    for r_index, item in enumerate(ranges):
        here = f"{where}.ranges[{r_index}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("events"), list):
            raise ConfigError(f"{here}.events: missing")
        if item.get("type") == "GIT" or range_class is None:
            continue  # commit ranges and unknown schemes: only `versions` lists match
        try:
            out += _intervals(range_class, item["events"])
        except (InvalidVersion, ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"{here}.events: {exc}") from exc
    return out


def _intervals(range_class: type[VersionRange], events: list[Any]) -> list[VersionRange]:
    """OSV events in order: `introduced` opens an interval, `fixed`/`last_affected` close it."""
    intervals: list[VersionRange] = []
    lower: Version | None = None
    opened = False
    for event in events:
        if not isinstance(event, Mapping) or len(event) != 1:
            raise ValueError(f"not a single-key event: {event!r}")
        ((kind, value),) = event.items()
        if kind == "introduced":
            opened = True
            lower = None if value == "0" else _version(range_class, str(value))
        elif kind in ("fixed", "last_affected", "limit") and opened:
            upper = _version(range_class, str(value))
            comparator = "<=" if kind == "last_affected" else "<"
            constraints = [VersionConstraint(comparator=comparator, version=upper)]
            if lower is not None:
                constraints.insert(0, VersionConstraint(comparator=">=", version=lower))
            intervals.append(range_class(constraints=tuple(constraints)))
            opened, lower = False, None
        elif kind not in ("fixed", "last_affected", "limit"):
            raise ValueError(f"unknown event {kind!r}")
    if opened:
        if lower is None:
            last = VersionConstraint(comparator="*", version_class=_version_class(range_class))
        else:
            last = VersionConstraint(comparator=">=", version=lower)
        intervals.append(range_class(constraints=(last,)))
    return intervals


def _version_class(range_class: type[VersionRange]) -> Any:
    # univers annotates `version_class` as None on the base class; each scheme sets its own.
    return range_class.version_class


def _version(range_class: type[VersionRange], text: str) -> Version:
    version: Version = _version_class(range_class)(text)
    return version
