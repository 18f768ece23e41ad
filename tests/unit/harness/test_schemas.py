from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from lab.resources import resource_path


def _registry() -> list[dict[str, Any]]:
    value = json.loads(resource_path("schema", "registry.json").read_text())
    return list(value["schemas"])


@pytest.mark.parametrize("entry", _registry(), ids=lambda e: str(e["name"]))
def test_every_registered_schema_is_valid_2020_12_with_its_id(entry: dict[str, Any]) -> None:
    schema = json.loads(resource_path("schema", entry["file"]).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == entry["$id"]
    assert entry["status"] in {"current", "supported", "retired"}
    assert schema.get("additionalProperties") is not False


def test_pipeline_run_states_its_mapping_to_cdevents_and_otel() -> None:
    text = resource_path("schema", "pipeline_run.v1.2.json").read_text()
    for name in ("CDEvents", "cicd.pipeline.name", "cicd.pipeline.run.id", "vcs.ref.head.revision"):
        assert name in text
    assert '"additionalProperties":false' not in text.replace(" ", "")


def test_readme_states_the_versioning_rule() -> None:
    text = resource_path("schema", "README.md").read_text()
    assert "minor" in text and "major" in text and "optional fields" in text
