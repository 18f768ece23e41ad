"""DR scenario files (`scenarios/dr/*.yaml`, schema `scenario.dr.v1.json`): typed and checked."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from harness._internal.schemas import validator_for
from harness.determinism import _parse
from harness.errors import ConfigError

_logger = logging.getLogger(__name__)

SCHEMA_FILE = "scenario.dr.v1.json"

DrillName = Literal["registry-restore", "log-rollback", "log-key-rotation", "cache-poisoning"]
Finding = Literal[
    "restored",
    "digests-missing",
    "rollback-detected",
    "rollback-undetected",
    "caught",
    "poison-installed",
    "intact-installed",
    "intact-blocked",
    "rotated",
    "old-entries-unverifiable",
    "new-entries-unverifiable",
]

DEFAULT_EXPECT: Mapping[str, Finding] = {
    "registry-restore": "restored",
    "log-rollback": "rollback-detected",
    "log-key-rotation": "rotated",
    "cache-poisoning": "caught",
}
FINDINGS: Mapping[str, tuple[Finding, ...]] = {
    "registry-restore": ("restored", "digests-missing"),
    "log-rollback": ("rollback-detected", "rollback-undetected"),
    "log-key-rotation": ("rotated", "old-entries-unverifiable", "new-entries-unverifiable"),
    "cache-poisoning": ("caught", "poison-installed", "intact-installed", "intact-blocked"),
}
"""What each drill can observe: a scenario expects one of its own drill's findings."""
TARGETS: Mapping[str, str] = {
    "registry-restore": "registry-storage",
    "log-rollback": "log-state",
    "log-key-rotation": "log-key",
    "cache-poisoning": "pip-cache",
}


@dataclass(frozen=True)
class DrScenario:
    """One DR drill: which steps, their options, and the finding it expects."""

    name: str
    drill: DrillName
    expect: Finding
    repository: str = "cihub/dr-drill"
    items_before_backup: int = 3
    items_after_backup: int = 2
    item_bytes: int = 64 * 1024
    restore: bool = True
    monitor: bool = True
    entries_after_backup: int = 2
    timeout: float = 60.0
    subject: Path | None = None
    poison: bool = True
    sentinel: bool = True
    keep_old_key: bool = True
    source: Path | None = None

    @property
    def target(self) -> str:
        return TARGETS[self.drill]


def scenario_from_mapping(doc: Any, *, name: str, source: Path | None = None) -> DrScenario:
    """The scenario `doc` describes.

    Raises:
        ConfigError: it does not match the schema; one line naming the file and the field.
    """
    where = str(source) if source is not None else "the DR scenario"
    errors = validator_for(SCHEMA_FILE).errors(doc)
    if errors:
        raise ConfigError(f"{where}: {errors[0]}")
    drill: DrillName = doc["drill"]
    known = validator_for(SCHEMA_FILE).schema["properties"]
    for key in sorted(set(doc) - set(known)):
        _logger.warning("%s: $.%s: unknown key, ignored", where, key)
    options = {
        k: v for k, v in doc.items() if k in known and k not in ("version", "description", "drill")
    }
    options.setdefault("name", name)
    if "subject" in options:
        base = source.parent if source is not None else Path.cwd()
        options["subject"] = (base / options["subject"]).resolve()
    elif drill == "cache-poisoning":
        raise ConfigError(f"{where}: $.subject: the cache-poisoning drill needs a subject")
    options.setdefault("expect", DEFAULT_EXPECT[drill])
    if options["expect"] not in FINDINGS[drill]:
        raise ConfigError(
            f"{where}: $.expect: {options['expect']!r} is not a finding of the {drill} drill "
            f"({', '.join(FINDINGS[drill])})"
        )
    return DrScenario(drill=drill, source=source, **options)


def load_scenario(path: Path) -> DrScenario:
    """Read and check a DR scenario file (YAML or JSON).

    Raises:
        ConfigError: unreadable, not YAML/JSON, or not a DR scenario (file and field named).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the DR scenario ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: the DR scenario is not UTF-8 text") from exc
    return scenario_from_mapping(_parse(path, text), name=path.stem, source=path)
