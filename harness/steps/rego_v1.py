"""Rego v1 syntax, enforced: the checks OPA 1.x makes that regopy (rego-cpp) does not.

regopy parses both the pre-1.0 and the 1.0 syntax and exposes neither a v1-only mode nor its
parse tree, so this module tokenizes the module itself (strings, raw strings and comments are
tokens, so a keyword inside them never counts) and reads each top-level rule's head the way
OPA's parser does. Refused, with OPA 1.x's own wording:

- a rule body not introduced by `if` (`allow { ... }`, `f(x) = y { ... }`, `else = v { ... }`);
- a partial set rule without `contains` (`deny[msg] { ... }`, `deny["x"]`);
- the built-ins OPA 1.0 removed (`any`, `all`, `re_match`, `set_diff`, `net.cidr_overlap`,
  `cast_*`);
- a rule named `input` or `data` (OPA 1.x refuses shadowing the root documents).

Everything else is left to regopy's own parser, which runs after this check.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from harness.errors import ConfigError

REMOVED_BUILTINS = frozenset(
    {
        "any",
        "all",
        "re_match",
        "set_diff",
        "net.cidr_overlap",
        "cast_array",
        "cast_set",
        "cast_string",
        "cast_boolean",
        "cast_null",
        "cast_object",
    }
)
_TOKEN = re.compile(
    r"""
    (?P<comment>\#[^\n]*)
    | (?P<string>"(?:[^"\\\n]|\\.)*")
    | (?P<raw>`[^`]*`)
    | (?P<newline>\n)
    | (?P<space>[ \t\r\f]+)
    | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op>:=|==|!=|<=|>=|[-+*/%&|<>=.,;:\[\](){}!])
    """,
    re.VERBOSE,
)
_OPEN = {"[": "]", "(": ")", "{": "}"}
_TERM_END = frozenset({"ident", "number", "string", "raw"})
# A line ending in one of these goes on on the next line (`allow if` + an indented body).
_CONTINUES = frozenset(
    {"if", "else", "contains", "not", "in", "with", "as", "some", "every", "default"}
    | {":=", "=", "==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "%", "&", "|"}
    | {",", ".", ":", ";"}
)


class RegoV1Error(ConfigError):
    """A module uses syntax OPA 1.x rejects (exit 2)."""


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    line: int
    depth: int
    """Bracket depth before this token (0: top level)."""


def tokenize(source: str, where: str = "policy") -> list[Token]:
    """The tokens of a Rego module, comments and blanks dropped, newlines kept.

    Raises:
        RegoV1Error: an unterminated string, an unknown character or unbalanced brackets.
    """
    tokens: list[Token] = []
    stack: list[str] = []
    line, pos = 1, 0
    while pos < len(source):
        found = _TOKEN.match(source, pos)
        if found is None:
            raise RegoV1Error(f"{where}:{line}: unexpected character {source[pos]!r}")
        kind, text = found.lastgroup or "", found.group()
        pos = found.end()
        if kind == "op" and text in _OPEN:
            tokens.append(Token(kind, text, line, len(stack)))
            stack.append(_OPEN[text])
        elif kind == "op" and text in _OPEN.values():
            if not stack or stack[-1] != text:
                raise RegoV1Error(f"{where}:{line}: unbalanced {text!r}")
            stack.pop()
            tokens.append(Token(kind, text, line, len(stack)))
        elif kind not in ("comment", "space"):
            tokens.append(Token(kind, text, line, len(stack)))
        line += text.count("\n")
    if stack:
        raise RegoV1Error(f"{where}:{line}: {stack[-1]!r} expected before the end")
    return tokens


def check_rego_v1(source: str, where: str = "policy") -> None:
    """Refuse the syntax OPA 1.x rejects; see the module docstring.

    Raises:
        RegoV1Error: the first problem, as `<where>:<line>: <OPA's message>`.
    """
    for line, message in _problems(tokenize(source, where)):
        raise RegoV1Error(f"{where}:{line}: Rego v1 only: {message}")


def _problems(tokens: Sequence[Token]) -> Iterator[tuple[int, str]]:
    yield from _removed_builtins(tokens)
    for statement in _statements(tokens):
        first = statement[0]
        if first.kind == "ident" and first.text in ("package", "import", "default"):
            continue
        yield from _rule_problems(statement)


def _statements(tokens: Sequence[Token]) -> Iterator[list[Token]]:
    """Top-level statements: a token at depth 0 that begins a line begins one, except a
    closing bracket or an `else` (both continue the rule above) or a line after one that
    cannot end a statement (`allow if` with the body on the next line)."""
    current: list[Token] = []
    at_line_start = True
    for token in tokens:
        if token.kind == "newline":
            at_line_start = True
            continue
        starts = (
            at_line_start
            and token.depth == 0
            and token.text not in _OPEN.values()
            and token.text != "else"
            and not (current and current[-1].text in _CONTINUES)
        )
        at_line_start = False
        if starts and current:
            yield current
            current = []
        current.append(token)
    if current:
        yield current


def _rule_problems(rule: list[Token]) -> Iterator[tuple[int, str]]:
    head = rule[0]
    if head.kind != "ident":
        return
    if head.text in ("input", "data"):
        yield head.line, f"rules must not shadow `{head.text}` (rule `{head.text}`)"
    i = 1
    ref_bracket = False
    while i < len(rule) and rule[i].depth == 0 and rule[i].text in (".", "["):
        if rule[i].text == ".":
            i += 2
            ref_bracket = False
        else:
            i = _skip_group(rule, i)
            ref_bracket = True
    args = i < len(rule) and rule[i].text == "("
    if args:
        i = _skip_group(rule, i)
    contains = i < len(rule) and rule[i].text == "contains"
    assigned = i < len(rule) and rule[i].text in ("=", ":=")
    if contains or assigned:
        i = _skip_value(rule, i + 1)
    body_if = i < len(rule) and rule[i].text == "if"
    body_brace = i < len(rule) and rule[i].text == "{"
    if ref_bracket and not (contains or assigned or args or body_if):
        yield (
            head.line,
            (f"`contains` keyword is required for partial set rules: {_head_text(rule, i)}"),
        )
    elif body_brace:
        yield head.line, f"`if` keyword is required before rule body: {_head_text(rule, i)}"
    yield from _else_problems(rule, i)


def _else_problems(rule: list[Token], start: int) -> Iterator[tuple[int, str]]:
    for index in range(start, len(rule)):
        token = rule[index]
        if token.depth != 0 or token.text != "else":
            continue
        i = index + 1
        if i < len(rule) and rule[i].text in ("=", ":="):
            i = _skip_value(rule, i + 1)
        if i < len(rule) and rule[i].text == "{":
            yield token.line, "`if` keyword is required before an `else` body"


def _skip_group(rule: Sequence[Token], i: int) -> int:
    """The index after the bracket group opening at `i`."""
    depth = rule[i].depth
    i += 1
    while i < len(rule) and not (rule[i].depth == depth and rule[i].text in _OPEN.values()):
        i += 1
    return i + 1


def _skip_value(rule: Sequence[Token], i: int) -> int:
    """The index after a head's value term: stops at a top-level `if`, `else`, or a `{` that
    follows a complete term (a pre-1.0 body; a `{` after an operator is an object literal)."""
    previous: Token | None = None
    while i < len(rule):
        token = rule[i]
        if token.depth == 0 and token.text in ("if", "else"):
            return i
        if token.text == "{" and previous is not None and _ends_term(previous):
            return i
        if token.text in _OPEN:
            closing = _skip_group(rule, i)
            previous = rule[closing - 1]
            i = closing
            continue
        previous = token
        i += 1
    return i


def _ends_term(token: Token) -> bool:
    if token.kind in _TERM_END:
        return token.text not in ("not", "in", "with", "as", "some", "every")
    return token.text in ("]", ")", "}")


def _head_text(rule: Sequence[Token], end: int) -> str:
    text = " ".join(t.text for t in rule[: max(1, end)])
    return re.sub(r"\s*([.\[\](),])\s*", r"\1", text).strip()


def dotted_name_before(tokens: Sequence[Token], index: int) -> str | None:
    """The called name (`a.b.c`) ending just before `tokens[index]` (a `(`), if any."""
    if index == 0 or tokens[index - 1].kind != "ident":
        return None
    start = index - 1
    while start >= 2 and tokens[start - 1].text == "." and tokens[start - 2].kind == "ident":
        start -= 2
    return "".join(t.text for t in tokens[start:index])


def _removed_builtins(tokens: Sequence[Token]) -> Iterator[tuple[int, str]]:
    for index, token in enumerate(tokens):
        name = dotted_name_before(tokens, index) if token.text == "(" else None
        if name in REMOVED_BUILTINS:
            yield token.line, f"deprecated built-in function {name} is not available in OPA 1.x"
