"""Loading and applying the project's JSON Schemas (Draft 2020-12).

`jsonschema_rs` answers "valid or not" fast; only for an invalid instance does
`jsonschema.Draft202012Validator` run, because its errors carry a JSON path (`$.steps[0].name`)
and readable messages. `fastjsonschema` is not used: it ignores 2020-12 keywords.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema
import jsonschema_rs

from harness.errors import ConfigError
from lab.errors import LabError
from lab.resources import resource_path


@dataclass(frozen=True)
class SchemaError:
    """One reason an instance does not match its schema."""

    json_path: str
    """Where in the instance, as a JSONPath such as `$.steps[0].duration_s`."""
    message: str

    def __str__(self) -> str:
        return f"{self.json_path}: {self.message}"


def load_schema(filename: str) -> dict[str, Any]:
    """Return the parsed schema `schema/<filename>`.

    Raises:
        ConfigError: the file is missing or is not JSON.
    """
    try:
        path = resource_path("schema", filename)
        value = json.loads(path.read_text(encoding="utf-8"))
    except (LabError, OSError, ValueError) as exc:
        raise ConfigError(f"schema/{filename}: cannot load the schema") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"schema/{filename}: not a JSON Schema object")
    return value


class SchemaValidator:
    """Validate instances against one schema: fast check first, detailed errors when invalid.

    Args:
        schema: a Draft 2020-12 schema.
        max_errors: how many errors `errors()` returns at most.
    """

    def __init__(self, schema: dict[str, Any], max_errors: int = 10) -> None:
        self.schema = schema
        self.max_errors = max_errors
        self._fast = jsonschema_rs.Draft202012Validator(schema)
        self._slow: jsonschema.Draft202012Validator | None = None
        self.fast_is_valid: Callable[[Any], bool] = self._fast.is_valid
        """`is_valid` without the wrapper call, for tight loops."""

    def is_valid(self, instance: Any) -> bool:
        """Whether `instance` matches (the fast validator alone)."""
        return bool(self._fast.is_valid(instance))

    def errors(self, instance: Any) -> list[SchemaError]:
        """The reasons `instance` does not match, most relevant first; empty when valid."""
        if self._fast.is_valid(instance):
            return []
        if self._slow is None:
            self._slow = jsonschema.Draft202012Validator(self.schema)
        found = sorted(
            self._slow.iter_errors(instance), key=jsonschema.exceptions.relevance, reverse=True
        )
        result = [SchemaError(e.json_path, e.message) for e in found[: self.max_errors]]
        if not result:  # the two validators disagree: fall back to the fast one's messages
            for error in self._fast.iter_errors(instance):
                result.append(SchemaError(_json_path(error.instance_path), error.message))
                if len(result) >= self.max_errors:
                    break
        return result


def _json_path(parts: Any) -> str:
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


@functools.cache
def validator_for(filename: str) -> SchemaValidator:
    """A cached `SchemaValidator` for `schema/<filename>`."""
    return SchemaValidator(load_schema(filename))
