"""A report reuses what the previous one did only while its inputs are byte for byte the same:
a changed file is checked again, changed data is loaded again and the marts built again (from
dbt's compiled SQL while the models are the same), changed models make dbt run again, and a
failed dbt run is never reused."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.errors import ConfigError, InfraError
from harness.insight import build, reuse
from harness.insight import dbt as insight_dbt
from harness.insight.build import Report, build_report
from harness.insight.history import check_history

from .conftest import HISTORY, sample_records, write_ndjson

pytestmark = pytest.mark.slow  # dbt runs in-process: a few seconds per build


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files the schema check read, in order."""
    seen: list[Path] = []
    real = build.check_history

    def spy(files: list[Path], **kwargs: tuple[int, int]) -> int:
        seen.extend(files)
        return real(files, **kwargs)

    monkeypatch.setattr(build, "check_history", spy)
    return seen


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the dbt project that the test may edit."""
    copy = tmp_path / "models"
    shutil.copytree(insight_dbt.project_dir(), copy)
    monkeypatch.setattr(insight_dbt, "project_dir", lambda: copy)
    return copy


def _marts(report: Report) -> dict[str, object]:
    return dict(report.to_json()["marts"])


def test_reused_only_while_files_and_models_are_unchanged(
    tmp_path: Path, checks: list[Path], project: Path
) -> None:
    space = tmp_path / "dbt"
    history = write_ndjson(tmp_path / "h.ndjson", sample_records())
    first = build_report([history], workspace_root=space, shipped_plan=None)
    assert (first.dbt, checks) == ("ran", [history])

    again = build_report([history], workspace_root=space)
    assert (again.dbt, checks) == ("reused", [history])  # not checked, loaded nor built again
    assert _marts(again) == _marts(first) and again.to_json()["dbt"] == "reused"

    # a changed model: the same (unchecked) data, dbt runs again
    model = next((project / "marts").glob("*.sql"))
    model.write_text(model.read_text() + "\n-- changed\n")
    assert build_report([history], workspace_root=space).dbt == "ran"
    assert build_report([history], workspace_root=space).dbt == "reused"
    assert checks == [history]

    # changed data: checked, loaded and built again (dbt's plan replayed), the marts show it
    records = sample_records()
    write_ndjson(history, records[:-1])
    fewer = build_report([history], workspace_root=space)
    assert (fewer.dbt, fewer.records, checks) == ("replayed", len(records) - 1, [history, history])
    assert _marts(fewer) != _marts(first)

    # another window over the same files: built again
    late = build_report([history], datetime(2030, 1, 1, tzinfo=UTC), workspace_root=space)
    assert (late.in_window, late.dbt) == (0, None)
    assert build_report([history], workspace_root=space).dbt == "replayed"
    assert build_report([history], workspace_root=space).dbt == "reused"


def test_a_file_changed_behind_its_size_and_mtime_is_checked_again(
    tmp_path: Path, checks: list[Path]
) -> None:
    space = tmp_path / "dbt"
    lines = HISTORY.read_text().splitlines()
    history = tmp_path / "h.ndjson"
    history.write_text("\n".join(lines) + "\n")
    assert build_report([history], workspace_root=space, shipped_plan=None).dbt == "ran"
    stat = history.stat()

    bad = json.loads(lines[1])
    bad["evidence"]["complete"] = "x"  # `true` -> `"x"`, padded: the same size
    forged = json.dumps(bad, separators=(",", ":")).ljust(len(lines[1]))
    assert len(forged) == len(lines[1])
    history.write_text("\n".join([lines[0], forged, *lines[2:]]) + "\n")
    os.utime(history, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert history.stat().st_size == stat.st_size
    with pytest.raises(ConfigError, match=rf"^{history}:2: \$\.evidence\.complete: "):
        build_report([history], workspace_root=space)
    assert checks == [history, history]


def test_a_failed_dbt_run_is_not_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checks: list[Path]
) -> None:
    space = tmp_path / "dbt"
    history = write_ndjson(tmp_path / "h.ndjson", sample_records())

    def broken(args: list[str]) -> None:
        raise InfraError("dbt run failed: stg_pipeline_runs: error")

    real = build.dbt.run_dbt
    monkeypatch.setattr(build.dbt, "run_dbt", broken)
    with pytest.raises(InfraError):
        build_report([history], workspace_root=space, shipped_plan=None)
    monkeypatch.setattr(build.dbt, "run_dbt", real)
    assert build_report([history], workspace_root=space, shipped_plan=None).dbt == "ran"
    assert checks == [history]  # the check passed the first time: it is not repeated


def test_a_damaged_or_foreign_check_cache_is_ignored(tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text("{}")
    store = tmp_path / "checked.json"
    history = write_ndjson(tmp_path / "h.ndjson", sample_records())
    file = reuse.digest_file(history)
    for text in ["{not json", "[]", json.dumps({"schema": "other", "files": {}})]:
        store.write_text(text)
        assert reuse.CheckedFiles(store, schema).records(file) is None
    cache = reuse.CheckedFiles(store, schema)
    cache.remember(file, 7)
    cache.save()
    assert reuse.CheckedFiles(store, schema).records(file) == 7
    schema.write_text('{"type": "object"}')  # another schema: everything is checked again
    assert reuse.CheckedFiles(store, schema).records(file) is None
    entry = json.loads(store.read_text())
    entry["files"][str(history.resolve())]["sha256"] = "0" * 64
    store.write_text(json.dumps(entry))
    schema.write_text("{}")
    assert reuse.CheckedFiles(store, schema).records(file) is None


def test_a_grown_file_has_only_its_new_lines_checked(tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text("{}")
    cache = reuse.CheckedFiles(tmp_path / "checked.json", schema)
    lines = HISTORY.read_text().splitlines()
    history = tmp_path / "h.ndjson"
    history.write_text("\n".join(lines[:3]) + "\n")
    old = reuse.digest_file(history)
    cache.remember(old, 3)

    with history.open("a") as handle:
        handle.write(lines[3] + "\n")
    grown = reuse.digest_file(history, cache.size(history))
    assert cache.records(grown) is None
    assert cache.checked_part(grown) == (old.size, 3)
    assert check_history([history], skip=cache.checked_part(grown)) == 4

    # a bad appended line is named by its line in the whole file
    with history.open("a") as handle:
        handle.write('{"run_id": "x"}\n')
    grown = reuse.digest_file(history, cache.size(history))
    with pytest.raises(ConfigError, match=rf"^{history}:5: \$: "):
        check_history([history], skip=cache.checked_part(grown))

    # the old part changed (same length): everything is checked again
    history.write_text("\n".join([lines[0], " " * len(lines[1]), lines[2], lines[3]]) + "\n")
    changed = reuse.digest_file(history, cache.size(history))
    assert cache.checked_part(changed) == (0, 0)
    with pytest.raises(ConfigError, match=rf"^{history}:2: "):
        check_history([history], skip=cache.checked_part(changed))

    # the old part did not end a line: what was appended continued its last line
    history.write_text("\n".join(lines[:3]))
    cache.remember(reuse.digest_file(history), 3)
    with history.open("a") as handle:
        handle.write(lines[3] + "\n")
    assert cache.checked_part(reuse.digest_file(history, cache.size(history))) == (0, 0)
    # shrunk: nothing to take over
    history.write_text(lines[0] + "\n")
    assert cache.checked_part(reuse.digest_file(history, cache.size(history))) == (0, 0)
