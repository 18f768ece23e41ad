"""DR scenario files: the shipped ones load; bad ones fail with one line naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness._cli import main
from harness.dr.scenario import load_scenario
from harness.errors import ConfigError

SHIPPED = sorted((Path(__file__).parents[4] / "scenarios" / "dr").glob("*.yaml"))


def test_shipped_scenarios_load_with_a_twin_each() -> None:
    scenarios = {p.stem: load_scenario(p) for p in SHIPPED}
    drills = {s.drill for s in scenarios.values()}
    assert drills == {"registry-restore", "log-rollback", "log-key-rotation", "cache-poisoning"}
    twins = [
        s
        for s in scenarios.values()
        if not (s.restore and s.monitor and s.sentinel and s.keep_old_key)
    ]
    assert {s.drill for s in twins} == drills, "every DR drill has a negative twin"
    cache = scenarios["cache-poisoning"]
    assert cache.subject is not None and (cache.subject / "pyproject.toml").is_file()


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("drill: registry-restore\nitems_before_backup: 0\n", "$.items_before_backup"),
        ("drill: wipe-everything\n", "$.drill"),
        ("drill: log-rollback\nmonitor: 'yes'\n", "$.monitor"),
        ("drill: log-rollback\nexpect: fine\n", "$.expect"),
        ("drill: registry-restore\nexpect: caught\n", "not a finding of the registry-restore"),
        ("drill: cache-poisoning\n", "$.subject"),
        ("items_after_backup: 1\n", "'drill' is a required property"),
        ("drill: [unclosed\n", "not valid YAML at line"),
        ("- a list\n", "is not of type 'object'"),
    ],
)
def test_bad_scenario_names_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert field in message
    assert "\n" not in message


def test_cli_bad_scenario_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("drill: registry-restore\nitem_bytes: -1\n")
    assert main(["run", "dr", "--scenario", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(path) in err and "$.item_bytes" in err


def test_cli_unknown_name_lists_the_known_ones(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(Path(__file__).parents[4])
    assert main(["run", "dr", "no-such-drill"]) == 2
    err = capsys.readouterr().err
    assert "no such DR scenario" in err and "registry-restore" in err


def test_cli_needs_exactly_one_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "dr"]) == 2
    assert main(["run", "dr", "a", "--scenario", "b.yaml"]) == 2


def test_an_unknown_key_is_a_warning_naming_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "newer.yaml"
    path.write_text("drill: registry-restore\nrestor: false\n")
    scenario = load_scenario(path)
    assert scenario.restore is True
    assert f"{path}: $.restor: unknown key, ignored" in caplog.text
