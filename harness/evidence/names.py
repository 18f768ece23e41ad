"""File names in manifests and summaries: Linux names are bytes, JSON strings are Unicode.

The escaping rule (also written in `schema/evidence_manifest.v1.json`): a `subject[].name`
is the file's path as bytes, `/`-separated, written as UTF-8 text except that these bytes are
written as `%XX` (two upper-case hex digits):

- every byte that is not part of a well-formed UTF-8 sequence,
- the control bytes 0x01-0x1F and 0x7F,
- `%` (0x25) itself and the backslash `\\` (0x5C).

Every other character is written as itself. The rule is lossless and has exactly one
spelling per name: a verifier reads a name back to bytes with `unescape_name` and rejects a
name that `escape_name` would not have written (e.g. `%61` for `a`), so two spellings can't
name one file. Python's own path strings carry undecodable bytes as lone surrogates
(`os.fsdecode`, surrogateescape), which is what `escape_name` takes and `unescape_name` returns.
"""

from __future__ import annotations

import os
import re

_ESCAPED_ASCII = frozenset({0x25, 0x5C, 0x7F, *range(0x01, 0x20)})
_ESCAPE = re.compile(r"%([0-9A-F]{2})")


class NameInvalid(ValueError):
    """A manifest name is not in the escaped form `escape_name` writes."""


def escape_name(path: str) -> str:
    """The manifest spelling of the path `path` (a `str` as `os` returns it).

    Example:
        >>> escape_name(os.fsdecode(b"caf\\xe9/a%b\\\\c.txt"))
        'caf%E9/a%25b%5Cc.txt'
    """
    out = []
    for char in os.fsencode(path).decode("utf-8", errors="surrogateescape"):
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that is not valid UTF-8
            out.append(f"%{code - 0xDC00:02X}")
        elif code in _ESCAPED_ASCII:
            out.append(f"%{code:02X}")
        else:
            out.append(char)
    return "".join(out)


def unescape_name(name: str) -> str:
    """The path (a `str` as `os` takes it) that the manifest name `name` spells.

    Raises:
        NameInvalid: `name` has a `%` not followed by two upper-case hex digits, a character
            that must be escaped, or is not the one spelling `escape_name` gives.
    """
    raw = bytearray()
    position = 0
    for match in _ESCAPE.finditer(name):
        raw += name[position : match.start()].encode("utf-8", errors="surrogatepass")
        raw.append(int(match.group(1), 16))
        position = match.end()
    raw += name[position:].encode("utf-8", errors="surrogatepass")
    path = os.fsdecode(bytes(raw))
    if escape_name(path) != name:
        raise NameInvalid(f"{name!r}: not the canonical escaped spelling of a file name")
    return path
