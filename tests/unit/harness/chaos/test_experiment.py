"""Experiments are rejected before anything runs, naming the file, the activity and the field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from harness.chaos import load_experiment
from harness.errors import ConfigError

SCENARIOS = Path(__file__).parents[4] / "scenarios" / "chaos"
EXPERIMENTS = sorted(p for p in SCENARIOS.iterdir() if p.suffix in (".json", ".yaml"))
FAKE = "tests.unit.harness.chaos.fake_providers"

GOOD: dict[str, Any] = {
    "title": "t",
    "description": "d",
    "method": [
        {
            "type": "action",
            "name": "two",
            "provider": {
                "type": "python",
                "module": FAKE,
                "func": "needs_two",
                "arguments": {"first": "a", "second": 2},
            },
        }
    ],
}


def write(tmp_path: Path, document: Any, name: str = "exp.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return path


def changed(**provider: Any) -> dict[str, Any]:
    document = copy.deepcopy(GOOD)
    document["method"][0]["provider"].update(provider)
    return document


def test_every_shipped_experiment_is_valid_and_has_a_twin() -> None:
    loaded = {
        p.name.split(".")[0] + (".twin" if ".twin." in p.name else ""): load_experiment(p)
        for p in EXPERIMENTS
    }
    names = {n for n in loaded if not n.endswith(".twin")}
    assert len(names) >= 5
    for name in names:
        assert loaded[name].expect == "steady-state-holds"
        assert loaded[name + ".twin"].expect == "steady-state-fails"


def test_one_shipped_experiment_uses_chaostoolkit_toxiproxy_unchanged() -> None:
    modules = {
        a["provider"].get("module")
        for p in EXPERIMENTS
        for a in [*load_experiment(p).document["method"], *load_experiment(p).document["rollbacks"]]
    }
    assert "chaostoxi.toxic.actions" in modules


def test_a_good_experiment_loads(tmp_path: Path) -> None:
    assert load_experiment(write(tmp_path, GOOD)).title == "t"


@pytest.mark.parametrize(
    ("provider", "message"),
    [
        ({"module": "no.such.module"}, r"method\[0\] \('two'\): field provider.module: no module"),
        (
            {"func": "nope"},
            r"method\[0\] \('two'\): field provider.func: .* has no function 'nope'",
        ),
        (
            {"arguments": {"first": "a"}},
            r"field provider.arguments.second: required by .*needs_two, missing",
        ),
        (
            {"arguments": {"first": "a", "second": 2, "third": 3}},
            r"field provider.arguments.third: .*needs_two takes no such argument",
        ),
        (
            {"arguments": {"first": "a", "second": 2, "configuration": {}}},
            r"arguments.configuration: given by",
        ),
        ({"type": "shell"}, r"field provider.type"),
    ],
)
def test_a_bad_provider_is_named(tmp_path: Path, provider: dict[str, Any], message: str) -> None:
    path = write(tmp_path, changed(**provider))
    with pytest.raises(ConfigError, match=message) as caught:
        load_experiment(path)
    assert str(caught.value).startswith(f"{path}: ")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("title"), r"field title: required"),
        (lambda d: d.update(method=[]), r"field method: required"),
        (lambda d: d["method"][0].pop("name"), r"method\[0\]: field name: required"),
        (lambda d: d["method"][0].update(type="thing"), r"field type: must be probe or action"),
        (lambda d: d.update(rollbacks={}), r"field rollbacks: a list"),
        (
            lambda d: d.update(extensions=[{"name": "cihub", "expect": "maybe"}]),
            r"extensions\[0\].expect",
        ),
        (
            lambda d: d.update(
                {"steady-state-hypothesis": {"title": "s", "probes": [{"name": "p"}]}}
            ),
            r"steady-state-hypothesis.probes\[0\] \('p'\): field type",
        ),
    ],
)
def test_a_schema_error_is_named(tmp_path: Path, change: Any, message: str) -> None:
    document = copy.deepcopy(GOOD)
    change(document)
    with pytest.raises(ConfigError, match=message):
        load_experiment(write(tmp_path, document))


def test_chaoslibs_own_checks_run_too_and_name_the_file(tmp_path: Path) -> None:
    document = copy.deepcopy(GOOD)
    document["steady-state-hypothesis"] = {
        "title": "s",
        "probes": [{**document["method"][0], "type": "probe"}],  # no tolerance
    }
    path = write(tmp_path, document)
    with pytest.raises(ConfigError, match=r"exp.json: .*tolerance"):
        load_experiment(path)


def test_unreadable_and_hostile_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing.json: cannot read"):
        load_experiment(tmp_path / "missing.json")
    bad = tmp_path / "bad.yaml"
    bad.write_text("title: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid yaml"):
        load_experiment(bad)
    with pytest.raises(ConfigError, match=r"must be a mapping"):
        load_experiment(write(tmp_path, ["a", "list"]))
    evil = tmp_path / "evil.yaml"
    evil.write_text("!!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match=r"evil.yaml: not valid yaml"):
        load_experiment(evil)
