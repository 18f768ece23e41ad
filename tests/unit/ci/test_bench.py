"""The benches' own logic: bench/dual_build.py says plainly when reprotest is missing or failed
(no made-up ratios); bench/scale.py counts drills from the records they appended."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return _load("dual_build")


def test_scale_counts_finished_drills_from_the_records(tmp_path: Path) -> None:
    scale = _load("scale")
    ndjson = tmp_path / "pipeline_run.ndjson"
    ndjson.write_text(
        "\n".join(
            [
                json.dumps({"scenario": {"kind": "dual-build"}, "result": "success"}),
                json.dumps({"scenario": {"kind": "dual-build"}, "result": "failure"}),
                json.dumps({"scenario": {"kind": "release"}, "result": "success"}),
                "{torn",
            ]
        )
    )
    assert scale.count_drills(ndjson) == (2, 1)
    assert scale.count_drills(tmp_path / "none.ndjson") == (0, 0)
    assert scale.per_hour(4, 120.0) == 120.0
    assert scale.per_hour(4, 0.0) == 0.0


def test_scale_measures_how_busy_the_cores_were() -> None:
    scale = _load("scale")
    assert scale.busy_share((100, 400), (250, 600)) == 0.75
    assert scale.busy_share(None, (250, 600)) is None
    assert scale.busy_share((100, 400), (100, 400)) is None  # no time passed: no share
    busy, total = scale.cpu_times()
    assert 0 <= busy <= total
    runs = [{"cores_busy": 1.0, "wall_s": 30.0}, {"cores_busy": 0.5, "wall_s": 10.0}]
    assert scale.weighted_busy(runs) == 0.875
    assert scale.weighted_busy([{"cores_busy": None, "wall_s": 5.0}]) is None


@pytest.mark.parametrize("repeat", ["0", "-1"])
def test_scale_refuses_fewer_than_one_repeat(repeat: str) -> None:
    """`--repeat 0` would leave pytest no path: it would run every test it finds."""
    with pytest.raises(SystemExit) as exit_info:
        _load("scale").main(["--repeat", repeat])
    assert exit_info.value.code == 2


def test_a_missing_peer_is_named_with_how_to_install_it(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, path=None: None)
    why = bench.peer_missing()
    assert why is not None
    assert "reprotest is not installed" in why and "apt-get install reprotest" in why


def test_a_present_peer_is_compared(bench: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, path=None: f"/usr/bin/{name}")
    assert bench.peer_missing() is None


@pytest.mark.parametrize(
    ("theirs", "verdict", "expected"),
    [
        (0.0004, "missing", None),  # the 24,000x of a reprotest that never ran
        (0.3, "error", None),
        (None, "missing", None),
        (0.0, "reproducible", None),
        (5.0, "reproducible", 2.0),
        (4.0, "not-reproducible", 2.5),
    ],
)
def test_ratios_only_against_a_peer_run(
    bench: ModuleType, theirs: float | None, verdict: str, expected: float | None
) -> None:
    assert bench.ratio(10.0, theirs, verdict) == expected


def test_a_missing_figure_is_shown_as_words(bench: ModuleType) -> None:
    assert bench.shown(None, "x", 8, "missing").strip() == "missing"
    assert bench.shown(1.5, "x", 8) == "   1.50x"
