from __future__ import annotations

import subprocess
import sys

from harness._internal.schemas import SchemaError, SchemaValidator

_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {"name": {"type": "string", "pattern": "^[a-z]+$"}},
    "required": ["name"],
}


def test_a_lone_surrogate_is_named_by_its_path() -> None:
    check = SchemaValidator(_SCHEMA)
    for instance, where in [
        ("\ud800", "$"),
        ({"name": "ab\ud800"}, "$.name"),
        ({"name": "ok", "list": [1, "\udfff"]}, "$.list[1]"),
        ({"\ud800": 1, "name": "ok"}, "$"),
    ]:
        errors = check.errors(instance)
        assert errors, instance
        assert [e.json_path for e in errors] == [where], (instance, errors)
        assert all(isinstance(e, SchemaError) for e in errors)


def test_errors_still_carry_jsonschema_paths_and_valid_is_empty() -> None:
    check = SchemaValidator(_SCHEMA)
    assert check.errors({"name": "abc"}) == []
    (error,) = check.errors({"name": "ABC"})
    assert error.json_path == "$.name" and "does not match" in error.message


def test_importing_the_validator_does_not_import_jsonschema() -> None:
    # jsonschema's import costs over a second of CPU: it must wait for an invalid instance
    code = (
        "import sys, harness._internal.schemas as s, harness.telemetry;"
        "assert 'jsonschema' not in sys.modules, 'imported early';"
        "s.SchemaValidator({'type': 'object'}).errors({});"
        "assert 'jsonschema' not in sys.modules, 'imported for a valid instance';"
        "s.SchemaValidator({'type': 'object'}).errors([]);"
        "assert 'jsonschema' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
