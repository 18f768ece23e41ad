"""RFC 8785 JSON Canonicalization Scheme (JCS), standard library only.

Rekor stores every entry body as canonical JSON and signs the RFC 8785 form of
{body, integratedTime, logID, logIndex} as the Signed Entry Timestamp, so both sides of the
wire must produce the same bytes. The rules: object members sorted by the UTF-16 code units
of their names, no insignificant whitespace, strings with only the mandatory escapes (quote,
backslash and control characters, using the short forms where JSON has them), and numbers
written as ECMAScript writes a double. Integers outside +-(2**53 - 1) are refused, as they
cannot round-trip through a double.
"""

from __future__ import annotations

import json.encoder
import math
from collections.abc import Mapping, Sequence
from typing import Any

MAX_SAFE_INTEGER = 2**53 - 1

_encode_string = json.encoder.encode_basestring  # C-accelerated when available


class CanonicalError(ValueError):
    """The value has no RFC 8785 form (NaN, infinity, a huge integer, a non-string key...)."""


def dumps(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON-like value.

    Example:
        >>> dumps({"b": 1, "a": [True, None, "x"]})
        b'{"a":[true,null,"x"],"b":1}'
    """
    parts: list[str] = []
    _write(value, parts)
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate in a string
        raise CanonicalError("string is not valid Unicode") from exc


def _write(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise CanonicalError(f"integer {value} is outside the safe JSON range")
        out.append(str(value))
    elif isinstance(value, float):
        out.append(format_number(value))
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, Mapping):
        items = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalError(f"object key {key!r} is not a string")
            items.append((key.encode("utf-16-be", "surrogatepass"), key, item))
        items.sort(key=lambda entry: entry[0])
        out.append("{")
        for i, (_, key, item) in enumerate(items):
            if i:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _write(item, out)
        out.append("}")
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise CanonicalError(f"{type(value).__name__} is not a JSON value")


def _string(text: str) -> str:
    # The standard library's JSON string encoder (ensure_ascii off) escapes exactly what
    # RFC 8785 requires: quote, backslash, \b \f \n \r \t, other controls as \u00xx.
    return _encode_string(text)


def format_number(number: float) -> str:
    """ECMAScript's Number.prototype.toString for a finite double (RFC 8785 section 3.2.2.3)."""
    if math.isnan(number) or math.isinf(number):
        raise CanonicalError(f"{number} has no JSON form")
    if number == 0:
        return "0"  # also for -0
    sign = "-" if number < 0 else ""
    # repr() gives the shortest digits that round-trip, as ECMAScript requires.
    mantissa, _, exp_text = repr(abs(number)).partition("e")
    exponent = int(exp_text) if exp_text else 0
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    # value = 0.digits * 10**point, with point counted from the first significant digit
    point = len(whole) + exponent if whole != "0" else exponent - (len(fraction) - len(digits))
    digits = digits.rstrip("0") or "0"
    k = len(digits)
    if k <= point <= 21:
        body = digits + "0" * (point - k)
    elif 0 < point <= 21:
        body = digits[:point] + "." + digits[point:]
    elif -6 < point <= 0:
        body = "0." + "0" * -point + digits
    else:
        e = point - 1
        exp = f"e{'+' if e >= 0 else '-'}{abs(e)}"
        body = digits[0] + ("." + digits[1:] if k > 1 else "") + exp
    return sign + body
