"""`cihub run chaos` refuses bad experiments before it looks for a lab (no Docker needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness._cli import main
from harness._commands import chaos as chaos_command
from harness._internal import lab_signer


def test_a_bad_argument_is_named_and_nothing_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_lab(**kwargs: object) -> None:
        raise AssertionError("a lab was looked for")

    monkeypatch.setattr(lab_signer, "caller_lab", no_lab)  # imported by the command when run
    experiment = json.loads(
        (Path(__file__).parents[4] / "scenarios/chaos/registry-kill-push.json").read_text()
    )
    del experiment["method"][1]["provider"]["arguments"]["service"]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(experiment))
    assert main(["run", "chaos", str(path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert str(path) in err.replace("\n", "")
    assert "method[1] ('kill-registry'): field provider.arguments.service" in err


def test_an_unknown_experiment_name_is_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "chaos", "no-such-experiment"]) == 2
    assert "no-such-experiment" in capsys.readouterr().err


def test_names_resolve_to_the_shipped_experiments() -> None:
    found = chaos_command.find_experiment("log-pause-append")
    assert found.name == "log-pause-append.yaml"
    assert chaos_command.find_experiment("registry-latency-push.twin").suffix == ".json"
