"""`append_record` writes a whole line or nothing (issue 13 #10)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from harness import telemetry
from harness.errors import InfraError

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def _record(run_id: str) -> dict[str, Any]:
    return telemetry.build_record(
        run_id=run_id,
        pipeline="cihub",
        scenario="dual-build",
        scenario_kind="dual-build",
        started_at=T0,
        finished_at=T0 + timedelta(seconds=3),
        result="success",
        bundle_path=run_id,
        complete=True,
    )


def test_short_writes_are_continued_until_the_line_is_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    calls = []

    def dribble(fd: int, data: Any) -> int:
        calls.append(len(data))
        return real_write(fd, bytes(data[:7]))  # the kernel may write less than asked

    monkeypatch.setattr(telemetry.os, "write", dribble)
    path = telemetry.append_record(_record("r-1"), tmp_path)
    monkeypatch.undo()
    assert len(calls) > 10
    (line,) = path.read_bytes().splitlines()
    assert json.loads(line)["run_id"] == "r-1"


def test_a_failed_write_leaves_no_partial_line_and_fails_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = telemetry.append_record(_record("r-1"), tmp_path)
    before = path.read_bytes()
    real_write = os.write
    state = {"calls": 0}

    def fail_midway(fd: int, data: Any) -> int:
        state["calls"] += 1
        if state["calls"] > 1:
            raise OSError(28, "No space left on device")
        return real_write(fd, bytes(data[:10]))

    monkeypatch.setattr(telemetry.os, "write", fail_midway)
    with pytest.raises(InfraError, match="could not append the record whole"):
        telemetry.append_record(_record("r-2"), tmp_path)
    monkeypatch.undo()
    assert path.read_bytes() == before


_UNDER_A_FILE_SIZE_LIMIT = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    from harness import telemetry
    from harness.errors import InfraError
    record = telemetry.build_record(
        run_id="r-2", pipeline="cihub", scenario="s", scenario_kind="dual-build",
        started_at="2025-01-01T00:00:00Z", finished_at="2025-01-01T00:00:01Z",
        result="success", bundle_path="b", complete=True,
    )
    limit = int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        telemetry.append_record(record, Path(sys.argv[1]))
    except InfraError as exc:
        print("FAILED:", exc)
        sys.exit(3)
    """
)


def test_under_a_file_size_limit_the_call_fails_and_the_file_is_unchanged(
    tmp_path: Path,
) -> None:
    """The issue's reproduction: RLIMIT_FSIZE makes os.write short; no torn line remains."""
    path = telemetry.append_record(_record("r-1"), tmp_path)
    before = path.read_bytes()
    limit = len(before) + 40  # room for part of the next line, not all of it
    done = subprocess.run(
        [sys.executable, "-c", _UNDER_A_FILE_SIZE_LIMIT, str(tmp_path), str(limit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "could not append the record whole" in done.stdout
    assert path.read_bytes() == before
    assert resource.getrlimit(resource.RLIMIT_FSIZE)[0] != limit  # only the child was limited
