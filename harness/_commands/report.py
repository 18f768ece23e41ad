"""`cihub report`: the Insight marts over pipeline_run history, as terminal tables, one HTML
page with charts, or JSON.

Reads `<evidence-dir>/pipeline_run*.ndjson` (default `evidence/`) or the NDJSON files named;
checks every line against the pipeline_run schema, loads the records into DuckDB and builds the
dbt models in `models/` (in `<cihub cache>/insight`, never in the source tree), or replays the
SQL dbt compiled them to. `--compile-plan` writes the plan cihub ships instead. Exit 0: the
report was built (an empty history gives empty tables); 2: a file is unreadable or a line is
not a valid record (named FILE:LINE), or DuckDB/dbt failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from harness import _exit
from harness.errors import ConfigError


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "report",
        help="Insight marts over pipeline_run history: tables, an HTML page with charts",
        description="Build the Insight marts (determinism rate per subject and day, flaky "
        "drills, chaos recovery, DR RTO/RPO, step time shares, evidence completeness) with dbt "
        "on DuckDB over pipeline_run NDJSON, and print them. Exit 0: built (an empty history "
        "gives empty tables); 2: an unreadable file or invalid record (FILE:LINE), or a dbt "
        "failure.",
    )
    parser.add_argument(
        "ndjson", nargs="*", type=Path, metavar="NDJSON", help="pipeline_run NDJSON files"
    )
    parser.add_argument(
        "--evidence-dir",
        type=Path,
        metavar="DIR",
        help="read DIR/pipeline_run*.ndjson (default: evidence, when no NDJSON is named)",
    )
    parser.add_argument(
        "--since", metavar="SPAN|DATE", help="only runs started since then: 7d, 36h, 2026-11-01"
    )
    parser.add_argument("--html", type=Path, metavar="FILE", help="also write the HTML page")
    parser.add_argument("--json", action="store_true", help="print the marts as JSON on stdout")
    parser.add_argument(
        "--dbt-tests",
        action="store_true",
        help="also run the models' schema tests (dbt build instead of dbt run)",
    )
    parser.add_argument(
        "--compile-plan",
        action="store_true",
        help="compile models/ with dbt and write the plan cihub ships "
        "(harness/insight/shipped_plan.json); after a change to models/ or to dbt's version",
    )
    parser.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    # DuckDB, Altair and vl-convert load only when a report runs, not with every cihub command.
    from harness.insight import build_report, history_files, parse_since, print_report

    err = Console(file=sys.stderr, highlight=False, soft_wrap=True)
    if args.compile_plan:
        return _compile_plan(args, err)
    if args.ndjson and args.evidence_dir is not None:
        raise ConfigError("give --evidence-dir or NDJSON files, not both")
    files = list(args.ndjson) or history_files(args.evidence_dir or Path("evidence"))
    since = parse_since(args.since) if args.since else None
    report = build_report(files, since, dbt_tests=args.dbt_tests)
    if report.empty:
        where = ", ".join(str(p) for p in files) or f"{args.evidence_dir or 'evidence'}/"
        window = " in that window" if report.records else ""
        err.print(f"cihub report: no pipeline_run records{window} in {escape(where)}")
    if args.html is not None:
        from harness.insight.page import write_html

        write_html(report, args.html)
        err.print(f"cihub report: wrote {escape(str(args.html))}")
    if args.json:
        value = report.to_json()
        value["html"] = str(args.html) if args.html is not None else None
        print(json.dumps(value, indent=2, sort_keys=True))
    else:
        # piped or redirected: wide enough that eight columns keep their words whole
        print_report(report, Console(width=None if sys.stdout.isatty() else 120))
    return _exit.SUCCESS


def _compile_plan(args: argparse.Namespace, err: Console) -> int:
    from harness.insight import shipped

    if args.ndjson or args.evidence_dir or args.since or args.html or args.json or args.dbt_tests:
        raise ConfigError("--compile-plan takes no NDJSON and no other option")
    plan, path = shipped.write_plan()
    err.print(
        f"cihub report: wrote {escape(str(path))} "
        f"({len(plan.models)} models, plan key {plan.key[:12]})"
    )
    return _exit.SUCCESS
