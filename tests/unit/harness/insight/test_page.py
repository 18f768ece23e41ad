"""The HTML page: self-contained, charts drawn as SVG, and drawn for real in Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import date, datetime
from pathlib import Path

import pytest
from PIL import Image

from harness.insight import MARTS, Mart, Report
from harness.insight.marts import CHAOS, DETERMINISM, DR, EVIDENCE, STEPS
from harness.insight.page import chart_svg, render_html, write_html

WHEN = datetime(2026, 11, 30, 9, 0)


def _report() -> Report:
    rows = {
        DETERMINISM.name: (
            ("c-hello", date(2026, 11, 29), 2, 0, 2, 0, 0.0),
            ("c-hello", date(2026, 11, 30), 3, 1, 2, 0, 0.3333),
            ("py-reproducible", date(2026, 11, 30), 2, 2, 0, 0, 1.0),
        ),
        CHAOS.name: (("registry latency", 3, 2, 1, 1.5, 2.0, 2.5, WHEN),),
        DR.name: (
            ("registry-restore", date(2026, 11, 29), 1, 12.0, 12.0, 0, 30.0, 1),
            ("registry-restore", date(2026, 11, 30), 2, 15.0, 20.0, 3, 30.0, 2),
        ),
        STEPS.name: (
            ("dual-build", "build", 5, 50.0, 10.0, 0.8),
            ("dual-build", "compare", 5, 12.5, 2.5, 0.2),
        ),
        EVIDENCE.name: ((date(2026, 11, 30), "dual-build", 5, 4, 1, 0, 0.8),),
    }
    marts = tuple(Mart(spec, rows.get(spec.name, ())) for spec in MARTS)
    return Report((Path("h.ndjson"),), 10, 10, None, marts)


def _marks(svg: str) -> int:
    return len(re.findall(r'class="mark-(?:line|symbol|rect)[^"]*"', svg)) + svg.count("<path")


def test_charts_are_svg_with_marks() -> None:
    for mart in _report().marts:
        svg = chart_svg(mart)
        if mart.spec.name in (DETERMINISM.name, CHAOS.name, DR.name, STEPS.name, EVIDENCE.name):
            assert svg is not None and svg.startswith("<svg"), mart.spec.name
            assert _marks(svg) > 0, mart.spec.name
        else:
            assert svg is None, mart.spec.name  # the flaky drills are a table, not a chart


def test_the_page_is_self_contained() -> None:
    page = render_html(_report(), WHEN)
    assert "<script" not in page.lower()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)
    assert "@import" not in page and "url(" not in page
    assert page.count("<svg") == 5
    assert page.count("No rows in this history.") == 1  # the flaky drills


def test_cell_text_is_escaped() -> None:
    report = _report()
    hostile = Mart(
        DETERMINISM, (("<script>alert(1)</script>", date(2026, 11, 30), 1, 1, 0, 0, 1.0),)
    )
    page = render_html(Report(report.files, 1, 1, None, (hostile,)), WHEN)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.slow
def test_chromium_draws_the_charts(tmp_path: Path) -> None:
    """What a reviewer sees: Chromium renders every chart's marks, and the chart region of the
    screenshot holds coloured pixels (the marks), not a blank page."""
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: scripts/setup.sh installs it"
    page = write_html(_report(), tmp_path / "report.html").as_uri()
    args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    dom = subprocess.run(
        [*args, "--dump-dom", page], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    for name in (DETERMINISM.name, CHAOS.name, DR.name, STEPS.name, EVIDENCE.name):
        section = dom[dom.index(f'id="{name}"') :]
        svg = section[section.index("<svg") : section.index("</svg>")]
        assert _marks(svg) > 0, name
    shot = tmp_path / "report.png"
    subprocess.run(
        [*args, f"--screenshot={shot}", "--window-size=900,1000", "--hide-scrollbars", page],
        capture_output=True,
        timeout=120,
        check=True,
    )
    with Image.open(shot) as image:
        # the first chart (determinism) sits below the headline: coloured pixels there, where
        # text and a blank page are black, grey or white
        region = image.convert("RGB").crop((0, 150, image.width, 450))
        rgb = region.tobytes()
    coloured = sum(
        1 for i in range(0, len(rgb), 3) if max(rgb[i : i + 3]) - min(rgb[i : i + 3]) > 60
    )
    assert coloured > 200, coloured
