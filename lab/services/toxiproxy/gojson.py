"""JSON decoding and encoding with the rules of Go's `encoding/json`, which upstream uses.

Go decodes into typed structs: object keys match field names case-insensitively (the last
matching key wins), unknown keys are ignored, `null` leaves a field unchanged, a number with a
fraction or exponent does not fit an integer field, and only the first JSON value of a body
is read. Go encodes compactly, sorts map keys and escapes `<`, `>` and `&`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_FLOAT32_MAX = 3.4028234663852886e38
_WHITESPACE = " \t\r\n"


class JsonFloat(float):
    """A JSON number written with a fraction or an exponent (Go won't put it in an int)."""

    __slots__ = ("literal",)

    literal: str

    def __new__(cls, literal: str) -> JsonFloat:
        value = super().__new__(cls, literal)
        value.literal = literal
        return value


class DecodeError(ValueError):
    """The body is not JSON, or a value has the wrong type for its field."""


def _reject_constant(name: str) -> object:
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")


_DECODER = json.JSONDecoder(parse_float=JsonFloat, parse_constant=_reject_constant)


def decode(body: bytes) -> Any:
    """The first JSON value in `body`; trailing data is ignored, as Go's `Decoder` does.

    Raises:
        DecodeError: the body is empty ("EOF") or not valid JSON.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError("invalid UTF-8 in request body") from exc
    text = text.lstrip(_WHITESPACE)
    if not text:
        raise DecodeError("EOF")
    try:
        value, _ = _DECODER.raw_decode(text)
    except ValueError as exc:
        message = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise DecodeError(message) from exc
    return value


def json_type(value: object) -> str:
    """The JSON type name Go uses in its unmarshal errors."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _mismatch(value: object, where: str, go_type: str) -> DecodeError:
    kind = json_type(value)
    if kind == "number":
        literal = value.literal if isinstance(value, JsonFloat) else str(value)
        kind = f"number {literal}"
    return DecodeError(
        f"json: cannot unmarshal {kind} into Go struct field {where} of type {go_type}"
    )


def expect_object(value: object, go_type: str) -> Mapping[str, Any] | None:
    """`value` as an object, or None for JSON null.

    Raises:
        DecodeError: `value` is neither an object nor null.
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        raise DecodeError(
            f"json: cannot unmarshal {json_type(value)} into Go value of type {go_type}"
        )
    return value


def lookup(obj: Mapping[str, Any], name: str) -> tuple[bool, Any]:
    """The value for field `name`, matched like Go does: case-insensitively, last key wins."""
    found = False
    value: Any = None
    folded = name.casefold()
    for key, item in obj.items():
        if key.casefold() == folded:
            found, value = True, item
    return found, value


def get_str(obj: Mapping[str, Any], name: str, default: str, where: str) -> str:
    """Field `name` as a string; `default` when absent or null.

    Raises:
        DecodeError: the value is not a string.
    """
    found, value = lookup(obj, name)
    if not found or value is None:
        return default
    if not isinstance(value, str):
        raise _mismatch(value, f"{where}.{name}", "string")
    return value


def get_bool(obj: Mapping[str, Any], name: str, default: bool, where: str) -> bool:
    """Field `name` as a bool; `default` when absent or null.

    Raises:
        DecodeError: the value is not a bool.
    """
    found, value = lookup(obj, name)
    if not found or value is None:
        return default
    if not isinstance(value, bool):
        raise _mismatch(value, f"{where}.{name}", "bool")
    return value


def get_int64(obj: Mapping[str, Any], name: str, default: int, where: str) -> int:
    """Field `name` as a Go int64; `default` when absent or null.

    Raises:
        DecodeError: the value is not an integer literal or does not fit 64 bits.
    """
    found, value = lookup(obj, name)
    if not found or value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _mismatch(value, f"{where}.{name}", "int64")
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise _mismatch(value, f"{where}.{name}", "int64")
    return int(value)  # mypy 1.x does not narrow Any through the isinstance checks


def get_float32(obj: Mapping[str, Any], name: str, default: float, where: str) -> float:
    """Field `name` as a Go float32; `default` when absent or null.

    Raises:
        DecodeError: the value is not a number or overflows float32.
    """
    found, value = lookup(obj, name)
    if not found or value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _mismatch(value, f"{where}.{name}", "float32")
    number = float(value)
    if math.isinf(number) or abs(number) > _FLOAT32_MAX:
        raise _mismatch(value, f"{where}.{name}", "float32")
    return number


def go_float(value: float) -> int | float:
    """A float as Go prints it: integral values without a fraction ("1", not "1.0")."""
    if value.is_integer() and abs(value) < 1e21:
        return int(value)
    return value


def encode(value: object) -> bytes:
    """Compact JSON like Go's `json.Marshal`: sorted map keys are the caller's job."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    for char, escape in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escape)
    return text.encode("utf-8")
