"""Rego v1 enforced by reading tokens and rule heads: every pre-1.0 form OPA 1.x rejects is
refused with OPA's words and the line; v1 modules with keywords hidden in strings, raw strings
and comments, object literals and `else` chains pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.steps.policy import PolicyError, PolicySet, read_modules
from harness.steps.rego_v1 import RegoV1Error, check_rego_v1, tokenize

POLICIES = Path(__file__).resolve().parents[4] / "policies"
HEAD = "package cihub.x\n\n"


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("allow {\n\ttrue\n}\n", 3, "`if` keyword is required before rule body"),
        ("allow = true {\n\tinput.x\n}\n", 3, "`if` keyword is required before rule body"),
        ("allow =\n\ttrue {\n\tinput.x\n}\n", 3, "`if` keyword is required before rule body"),
        ("allow := true {\n\tinput.x\n}\n", 3, "`if` keyword is required before rule body"),
        ('name := v {\n\tv := "a"\n}\n', 3, "`if` keyword is required before rule body"),
        ("f(x) {\n\tx\n}\n", 3, "`if` keyword is required before rule body"),
        ("f(x) = y {\n\ty := x\n}\n", 3, "`if` keyword is required before rule body"),
        ("a.b.c {\n\ttrue\n}\n", 3, "`if` keyword is required before rule body"),
        ('reasons[msg] {\n\tmsg := "x"\n}\n', 3, "`contains` keyword is required"),
        ('deny["fixed"]\n', 3, "`contains` keyword is required for partial set rules"),
        ("p.q[x] {\n\tx := 1\n}\n", 3, "`contains` keyword is required"),
        (
            "f(x) := 1 if {\n\tx > 0\n} else := 2 {\n\ttrue\n}\n",
            5,
            "`if` keyword is required before an `else` body",
        ),
        (
            "f(x) := 1 if {\n\tx > 0\n}\nelse {\n\ttrue\n}\n",
            6,
            "`if` keyword is required before an `else` body",
        ),
        ("allow if any([true])\n", 3, "deprecated built-in function any"),
        ('allow if re_match("a", "a")\n', 3, "deprecated built-in function re_match"),
        (
            'allow if net.cidr_overlap("10.0.0.0/8", "10.1.1.1")\n',
            3,
            "deprecated built-in function net.cidr_overlap",
        ),
        ("allow if {\n\tx := cast_set([1])\n\tx\n}\n", 4, "deprecated built-in function cast_set"),
        ("input := {}\n", 3, "rules must not shadow `input`"),
        ("data := 1\n", 3, "rules must not shadow `data`"),
    ],
)
def test_old_syntax_opa_1x_rejects_is_refused(body: str, line: int, message: str) -> None:
    with pytest.raises(RegoV1Error, match=rf"^x\.rego:{line}: Rego v1 only: {_re(message)}"):
        check_rego_v1(HEAD + body, "x.rego")


TRICKY_V1 = HEAD + (
    "# allow {\n"
    "# deny[msg] {\n"
    "import rego.v1\n"
    "default allow := false\n"
    "default level = 0\n"
    'config := {\n\t"a": 1,\n\t"if {": [1, 2],\n}\n'
    "empty := {}\n"
    "nested := {{1}, {2}}\n"
    'words := ["allow {", `deny[x] {`, "else {"]\n'
    "raw := `\nmulti-line {\nallow {\n`\n"
    "allow if {\n\tcount(reasons) == 0 # not { here\n}\n"
    'reasons contains msg if {\n\tsome x in input.xs\n\tmsg := sprintf("%s {", [x])\n}\n'
    'reasons contains "constant" if input.bad\n'
    "f(x) := 1 if {\n\tx > 0\n} else := 2 if {\n\tx == 0\n} else := 3\n"
    "g(x) := y if {\n\ty := {k: v | some k, v in x}\n}\n"
    "a.b.c if input.c\n"
    "p[x] := true if {\n\tsome x in input.ys\n}\n"
    "q[x] if {\n\tsome x in input.ys\n}\n"
    "ok if {\n\tevery x in input.xs {\n\t\tx > 0\n\t}\n}\n"
    "anything if all_good\n"
    "all_good if any_good(1)\n"
    "any_good(x) if x\n"
    "split_head if\n\tinput.x\n"
    "split_value :=\n\tinput.y\n"
    "s := set()\n"
)


def test_tricky_v1_passes_the_check() -> None:
    check_rego_v1(TRICKY_V1, "tricky.rego")


def test_tricky_v1_also_parses_in_regopy(tmp_path: Path) -> None:
    (tmp_path / "tricky.rego").write_text(TRICKY_V1.replace("package cihub.x", "package cihub.t"))
    policies = PolicySet(read_modules(tmp_path), {})
    assert policies.names == ("t",)


def test_every_shipped_policy_is_v1() -> None:
    for name, source in read_modules(POLICIES).items():
        check_rego_v1(source, name)


def test_old_syntax_is_refused_at_load_with_the_file_named(tmp_path: Path) -> None:
    (tmp_path / "old.rego").write_text(
        HEAD.replace("cihub.x", "cihub.old") + "allow {\n\ttrue\n}\n"
    )
    with pytest.raises(PolicyError, match=r"^old\.rego:3: Rego v1 only: `if` keyword"):
        PolicySet.load(tmp_path)


def test_tokens_ignore_keywords_inside_strings_and_comments() -> None:
    tokens = tokenize('x := "if {" # else {\ny := `a\n{`\n')
    texts = [t.text for t in tokens if t.kind != "newline"]
    assert texts == ["x", ":=", '"if {"', "y", ":=", "`a\n{`"]
    assert tokens[-2].line == 2 and all(t.depth == 0 for t in tokens)


@pytest.mark.parametrize("source", ["x := [1, 2\n", "x := 1]\n", 'x := "open\n', "x := @\n"])
def test_malformed_modules_are_refused_with_the_line(source: str) -> None:
    with pytest.raises(RegoV1Error, match=r"^m\.rego:\d+: "):
        check_rego_v1(source, "m.rego")


def _re(text: str) -> str:
    import re

    return re.escape(text)
