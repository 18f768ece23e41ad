"""`cihub` imports only the module of the command it runs; `--help` imports none."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from harness import _cli

HEAVY = (
    "jsonschema",
    "sigstore",
    "dbt",
    "duckdb",
    "altair",
    "vl_convert",
    "opentelemetry",
    "chaoslib",
    "regopy",
    "harness.evidence",
    "harness.drills",
)


def _imported_after(code: str) -> set[str]:
    probe = (
        "import sys\n"
        f"{code}\n"
        "print('\\n'.join(sorted({m.split('.')[0] for m in sys.modules} | set(sys.modules))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    return set(out.split())


_HELP_RUN = (
    "from harness._cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
)


@pytest.mark.parametrize(
    "code",
    [
        _HELP_RUN,
        "from harness._cli import _parser\n_parser('lab')",
        "from harness._cli import _parser\n_parser('report')",
    ],
)
def test_start_up_imports_no_heavy_library(code: str) -> None:
    imported = _imported_after(code)
    assert "harness._cli" in imported
    assert [m for m in HEAVY if m in imported] == []


def test_a_command_module_is_imported_only_for_its_command() -> None:
    imported = _imported_after("from harness._cli import _parser\n_parser('schema')")
    assert "harness._commands.schema" in imported
    assert "harness._commands.run" not in imported and "harness._commands.lab" not in imported


def _registered_help(parser: argparse.ArgumentParser) -> dict[str, str]:
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: str(a.help) for a in sub._choices_actions}


def test_the_help_table_matches_what_each_module_registers() -> None:
    listed = _registered_help(_cli._parser())
    assert listed == _cli._HELP
    for name in _cli._HELP:
        parser = argparse.ArgumentParser()
        _cli.command_module(name).register(parser.add_subparsers())
        assert _registered_help(parser) == {name: _cli._HELP[name]}, name
    assert {m.__name__.rsplit(".", 1)[1] for m in _cli.COMMAND_MODULES} == set(_cli._HELP)


def test_the_command_is_the_first_word_after_the_options() -> None:
    assert _cli._command_in(["-vv", "lab", "status"]) == "lab"
    assert _cli._command_in(["--verbose", "report", "--json"]) == "report"
    assert _cli._command_in(["--help"]) is None
    assert _cli._command_in(["bogus", "lab"]) is None
