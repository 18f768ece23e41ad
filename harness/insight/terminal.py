"""The report as rich tables for a terminal."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from harness.insight.build import Report
from harness.insight.marts import Mart


def _cell(value: Any, column: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if column.endswith(("rate", "share")):
            return f"{value:.0%}"
        return f"{value:.2f}"
    return str(value)


def mart_table(mart: Mart) -> Table:
    """One mart as a table; an empty mart shows a single 'no rows' line."""
    table = Table(title=mart.spec.title, title_justify="left")
    for column in mart.spec.columns:
        table.add_column(column.replace("_", " "), overflow="fold")
    for row in mart.rows:
        table.add_row(*(_cell(v, c) for v, c in zip(row, mart.spec.columns, strict=True)))
    if not mart.rows:
        table.caption = "no rows in this history"
    return table


def print_report(report: Report, console: Console) -> None:
    """Print a headline and every mart's table to `console`."""
    window = f" since {report.since:%Y-%m-%d %H:%M} UTC" if report.since else ""
    console.print(
        f"[bold]cihub report[/]: {report.in_window} of {report.records} pipeline_run "
        f"records{window} from {len(report.files)} file(s)"
    )
    for mart in report.marts:
        console.print(mart_table(mart))
