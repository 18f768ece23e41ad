"""`cihub run release` and `cihub referrers`: bad input is refused before any lab or Docker."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import _exit
from harness._cli import main
from harness._commands.referrers import parse_reference
from harness.errors import ConfigError

Capsys = pytest.CaptureFixture[str]
DIGEST = "sha256:" + "a" * 64


@pytest.fixture(autouse=True)
def _no_local_trust_domain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIHUB_TRUST_DOMAIN", str(tmp_path / "no-trust-domain"))


def test_parse_reference() -> None:
    assert parse_reference(f"127.0.0.1:5000/cihub/release/x@{DIGEST}") == (
        "http://127.0.0.1:5000",
        "cihub/release/x",
        DIGEST,
    )
    assert parse_reference(f"https://r.test/a@{DIGEST}")[0] == "https://r.test"


@pytest.mark.parametrize(
    "text",
    ["127.0.0.1:5000/repo", "127.0.0.1:5000/repo:tag", f"repo@{DIGEST}", "h/r@sha256:abc"],
)
def test_malformed_references_are_refused(text: str, capsys: Capsys) -> None:
    with pytest.raises(ConfigError, match="expected"):
        parse_reference(text)
    assert main(["referrers", text]) == _exit.ERROR
    assert "expected" in capsys.readouterr().err


def test_release_needs_a_subject(capsys: Capsys) -> None:
    assert main(["run", "release", "--build", "true", "--artifacts", "x"]) == _exit.ERROR
    assert "--subject is required" in capsys.readouterr().err


def test_release_scenario_with_a_bad_vex_field(tmp_path: Path, capsys: Capsys) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "version: 1\nname: x\nsubject: .\nbuild: 'true'\nartifacts: ['x']\nvex: {a: 1}\n"
    )
    assert main(["run", "release", "--scenario", str(scenario)]) == _exit.ERROR
    assert "$.vex" in capsys.readouterr().err


def test_release_scenario_that_is_not_a_mapping(tmp_path: Path, capsys: Capsys) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text("- just\n- a list\n")
    assert main(["run", "release", "--scenario", str(scenario)]) == _exit.ERROR
    assert "must be a mapping" in capsys.readouterr().err


def test_release_missing_subject_folder(tmp_path: Path, capsys: Capsys) -> None:
    code = main(
        [
            "run",
            "release",
            "--subject",
            str(tmp_path / "nope"),
            "--build",
            "true",
            "--artifacts",
            "x",
        ]
    )
    assert code == _exit.ERROR
    assert "does not exist" in capsys.readouterr().err
