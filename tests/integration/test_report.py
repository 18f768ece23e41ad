"""`cihub report` over this session's own pipeline_run records (a drill run here, through the
session lab) together with the sample history, as a user runs it: a separate process, the
JSON, and the HTML page opened in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import telemetry
from harness.determinism import load_scenario
from harness.drills import DeterminismDrill, RunSettings, run_drill
from lab import Lab
from lab.resources import resource_path

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HISTORY = resource_path("tests", "data", "history", "pipeline_run.ndjson")
CIHUB = [sys.executable, "-m", "harness"]


def _cihub_report(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CIHUB_CACHE_DIR": str(cache)}
    return subprocess.run(
        [*CIHUB, "report", *args], capture_output=True, text=True, timeout=600, env=env
    )


def test_report_over_the_sessions_records(
    lab: Lab, drill_settings: RunSettings, tmp_path: Path
) -> None:
    scenario = load_scenario(resource_path("scenarios", "determinism", "py-reproducible.yaml"))
    run = run_drill(DeterminismDrill(scenario), drill_settings)
    assert run.passed, run.lines()
    session_file = drill_settings.evidence_dir / telemetry.NDJSON_NAME
    session_runs = [json.loads(line) for line in session_file.read_text().splitlines()]
    assert run.record["run_id"] in {r["run_id"] for r in session_runs}

    page = tmp_path / "report.html"
    done = _cihub_report(
        str(session_file), str(HISTORY), "--json", "--html", str(page), cache=tmp_path / "c"
    )
    assert done.returncode == 0, done.stderr
    value = json.loads(done.stdout)
    sample = len(HISTORY.read_text().splitlines())
    assert value["records"] == len(session_runs) + sample
    day = run.record["started_at"][:10]
    today = [
        row
        for row in value["marts"]["mart_determinism_daily"]
        if row["subject"] == "py-reproducible" and row["run_day"] == day
    ]
    assert today and today[0]["reproducible"] >= 1, value["marts"]["mart_determinism_daily"]
    completeness = value["marts"]["mart_evidence_completeness"]
    assert sum(row["runs"] for row in completeness) == value["records"]

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: scripts/setup.sh installs it"
    dom = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    section = dom[dom.index('id="mart_determinism_daily"') :]
    svg = section[section.index("<svg") : section.index("</svg>")]
    assert re.search(r'class="mark-(line|symbol)', svg), "no determinism marks drawn"

    # the same history from the evidence folder, in a one-day window: the session's run is in
    done = _cihub_report(
        "--evidence-dir",
        str(drill_settings.evidence_dir),
        "--since",
        "1d",
        "--json",
        cache=tmp_path / "c",
    )
    assert done.returncode == 0, done.stderr
    window = json.loads(done.stdout)
    assert window["in_window"] >= 1
    assert window["in_window"] <= window["records"]
