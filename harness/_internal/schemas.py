"""Loading and applying the project's JSON Schemas (Draft 2020-12).

`jsonschema_rs` answers "valid or not" fast; only for an invalid instance does
`jsonschema.Draft202012Validator` run, because its errors carry a JSON path (`$.steps[0].name`)
and readable messages. `jsonschema` is imported only then: its import costs over a second of CPU
(`rfc3987_syntax` builds a grammar), which every cihub command would otherwise pay.
`fastjsonschema` is not used: it ignores 2020-12 keywords.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jsonschema_rs

from harness.errors import ConfigError
from lab.errors import LabError
from lab.resources import resource_path

if TYPE_CHECKING:
    import jsonschema


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
        """The reasons `instance` does not match, most relevant first; empty when valid.

        Not for tight loops (it walks `instance` once): check with `fast_is_valid` first.
        """
        # A lone surrogate (JSON "\ud800") can't be UTF-8: jsonschema_rs raises on it where a
        # keyword reads the string and passes it elsewhere; either way the record is unusable.
        where = _surrogate_path(instance)
        if where is not None:
            return [SchemaError(where, "a string that is not valid Unicode (a lone surrogate)")]
        if self._fast.is_valid(instance):
            return []
        import jsonschema  # slow to import: see the module docstring

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


def _surrogate_path(instance: Any, path: str = "$") -> str | None:
    """The JSONPath of the first string (value or key) in `instance` that UTF-8 can't encode."""
    if isinstance(instance, str):
        return None if _encodes(instance) else path
    items: Any = ()
    if isinstance(instance, dict):
        bad_key = next((k for k in instance if isinstance(k, str) and not _encodes(k)), None)
        if bad_key is not None:
            return path
        items = ((f"{path}.{k}", v) for k, v in instance.items())
    elif isinstance(instance, list):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(instance))
    for where, value in items:
        found = _surrogate_path(value, where)
        if found is not None:
            return found
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_path(parts: Any) -> str:
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


@functools.cache
def validator_for(filename: str) -> SchemaValidator:
    """A cached `SchemaValidator` for `schema/<filename>`."""
    return SchemaValidator(load_schema(filename))
