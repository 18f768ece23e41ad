"""The report as one self-contained HTML page: SVG charts drawn offline, and every mart's rows.

Charts are Altair (Vega-Lite) specs rendered to SVG in-process by vl-convert: the page needs
no script, no CDN and no network to show them. A mart without rows gets a sentence instead of
an empty chart.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import altair as alt
import vl_convert

from harness.errors import ConfigError
from harness.evidence import _fs
from harness.insight.build import Report
from harness.insight.marts import CHAOS, DETERMINISM, DR, EVIDENCE, STEPS, Mart, MartSpec, by_name

_WIDTH = 560
_HEIGHT = 220
# The Vega-Lite version Altair writes, as vl-convert names it ("6.4" for schema v6.4.1).
_VL_VERSION = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; padding: 0 1.5rem; max-width: 72rem;
       color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2.2rem; }
.chart svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; font-size: .85rem; margin-top: .6rem; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; }
th { background: #f3f3f3; } .empty { color: #777; font-style: italic; }
"""


def _base(data: list[dict[str, Any]]) -> alt.Chart:
    return alt.Chart(alt.InlineData(values=data))


def _daily_trend(
    data: list[dict[str, Any]], field: str, title: str, by: str, *, share: bool = False
) -> alt.Chart:
    """`field` per UTC day, one line per `by` (a subject, a drill)."""
    y = alt.Y(f"{field}:Q", title=title)
    if share:
        y = alt.Y(
            f"{field}:Q", title=title, scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")
        )
    chart: alt.Chart = (
        _base(data)
        .mark_line(point=True)
        .encode(x=alt.X("run_day:T", title="day (UTC)"), y=y, color=alt.Color(f"{by}:N"))
    )
    return chart


def _chart_determinism(data: list[dict[str, Any]]) -> alt.Chart:
    return _daily_trend(data, "determinism_rate", "reproducible", "subject", share=True)


def _chart_chaos(data: list[dict[str, Any]]) -> alt.Chart:
    chart: alt.Chart = (
        _base(data)
        .mark_bar()
        .encode(
            x=alt.X("recovery_median_s:Q", title="median recovery (s)"),
            y=alt.Y("experiment:N", title=None),
        )
    )
    return chart


def _chart_dr(data: list[dict[str, Any]]) -> alt.Chart:
    return _daily_trend(data, "rto_avg_s", "RTO (s, mean)", "drill")


def _chart_steps(data: list[dict[str, Any]]) -> alt.Chart:
    chart: alt.Chart = (
        _base(data)
        .mark_bar()
        .encode(
            x=alt.X(
                "share:Q", stack="normalize", title="share of step time", axis=alt.Axis(format="%")
            ),
            y=alt.Y("scenario_kind:N", title=None),
            color=alt.Color("step_name:N", title="step"),
            order=alt.Order("share:Q", sort="descending"),
        )
    )
    return chart


def _chart_evidence(data: list[dict[str, Any]]) -> alt.Chart:
    chart: alt.Chart = (
        _base(data)
        .transform_fold(["complete", "incomplete", "unfinalized"], as_=["status", "count"])
        .mark_bar()
        .encode(
            x=alt.X("run_day:O", title="day (UTC)"),
            y=alt.Y("sum(count):Q", title="runs"),
            color=alt.Color(
                "status:N",
                scale=alt.Scale(
                    domain=["complete", "incomplete", "unfinalized"],
                    range=["#2e7d32", "#f9a825", "#c62828"],
                ),
            ),
        )
    )
    return chart


_CHARTS: dict[str, Callable[[list[dict[str, Any]]], alt.Chart]] = {
    DETERMINISM.name: _chart_determinism,
    CHAOS.name: _chart_chaos,
    DR.name: _chart_dr,
    STEPS.name: _chart_steps,
    EVIDENCE.name: _chart_evidence,
}


def chart_svg(mart: Mart) -> str | None:
    """The mart's chart as SVG, or None when it has no chart or no rows."""
    make = _CHARTS.get(mart.spec.name)
    if make is None or not mart.rows:
        return None
    chart = make(mart.records()).properties(width=_WIDTH, height=_HEIGHT, title=mart.spec.title)
    svg: str = vl_convert.vegalite_to_svg(chart.to_dict(), vl_version=_VL_VERSION)
    return svg


def _table(spec: MartSpec, mart: Mart) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in spec.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_text(v))}</td>" for v in row) + "</tr>"
        for row in (r.values() for r in mart.records())
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _text(value: Any) -> str:
    return "-" if value is None else str(value)


def render_html(report: Report, now: datetime | None = None) -> str:
    """The page, as text."""
    now = now or datetime.now(UTC)
    window = f" since {report.since:%Y-%m-%d %H:%M} UTC" if report.since else ""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>cihub report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>cihub report</h1>",
        f"<p id='headline'>{report.in_window} of {report.records} pipeline_run records{window}"
        f" from {len(report.files)} file(s); built {now:%Y-%m-%d %H:%M} UTC.</p>",
    ]
    marts = by_name(report.marts)
    for spec in (m.spec for m in report.marts):
        mart = marts[spec.name]
        parts.append(f"<section id='{spec.name}'><h2>{html.escape(spec.title)}</h2>")
        if not mart.rows:
            parts.append("<p class='empty'>No rows in this history.</p></section>")
            continue
        svg = chart_svg(mart)
        if svg is not None:
            parts.append(f"<div class='chart'>{svg}</div>")
        parts.append(_table(spec, mart) + "</section>")
    parts.append("</body></html>\n")
    return "".join(parts)


def write_html(report: Report, path: Path) -> Path:
    """Write the page to `path` atomically and return it.

    Raises:
        ConfigError: `path` can't be written (a folder, no permission).
    """
    page = render_html(report).encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _fs.atomic_write_bytes(path, page)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the page ({exc.strerror or exc})") from None
    return path
