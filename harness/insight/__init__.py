"""Insight: dbt marts over pipeline_run history and the report that shows them.

`build_report` checks and loads the NDJSON, builds the models in `models/` on DuckDB from the
SQL dbt compiled them to (`replay`; the plan cihub ships serves a first report: `shipped`), or
with dbt when no plan has the project's key, and
reads the marts; `print_report` shows them as terminal tables, and
`harness.insight.page.write_html` as one self-contained page with SVG charts (it is not
imported here: Altair and vl-convert load only when a page is written).
"""

from __future__ import annotations

from harness.insight.build import Report, build_report
from harness.insight.history import check_history, history_files, parse_since
from harness.insight.marts import MARTS, Mart, MartSpec
from harness.insight.terminal import print_report

__all__ = [
    "MARTS",
    "Mart",
    "MartSpec",
    "Report",
    "build_report",
    "check_history",
    "history_files",
    "parse_since",
    "print_report",
]
