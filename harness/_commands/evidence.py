"""`cihub evidence pack|verify|show`: handle evidence bundles from a shell, offline."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from harness import _exit
from harness.errors import ConfigError
from harness.evidence import load_summary_data, pack_bundle, verify_bundle
from harness.evidence.pack import bundle_folder
from harness.evidence.signer import TestKeyVerifier, Verifier

_STATUS_STYLE = {"ok": "green", "fail": "bold red", "missing": "yellow"}


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "evidence", help="pack, verify or show an evidence bundle (offline)"
    )
    actions = parser.add_subparsers(dest="evidence_action", metavar="ACTION", required=True)

    pack = actions.add_parser("pack", help="pack a bundle into a byte-reproducible .tar.gz")
    pack.add_argument("bundle", type=Path, metavar="BUNDLE", help="the bundle folder")
    pack.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        metavar="OUT",
        help="archive to write (default: BUNDLE.tar.gz beside the folder)",
    )
    pack.set_defaults(handler=_pack)

    verify = actions.add_parser(
        "verify", help="recompute digests, check the signature and the pass criteria"
    )
    verify.add_argument("bundle", type=Path, metavar="BUNDLE|TARBALL")
    verify.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    verify.add_argument(
        "--trusted-key",
        type=Path,
        action="append",
        default=None,
        metavar="PEM",
        help="accept test-key signatures only from this public key (repeatable)",
    )
    verify.add_argument(
        "--identity", default=None, help="the signer identity the manifest signature must have"
    )
    verify.set_defaults(handler=_verify)

    show = actions.add_parser("show", help="summarize a bundle for people")
    show.add_argument("bundle", type=Path, metavar="BUNDLE|TARBALL")
    show.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    show.set_defaults(handler=_show)


def _pack(args: argparse.Namespace) -> int:
    out = pack_bundle(args.bundle, args.output)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    Console(file=sys.stderr).print(f"packed [bold]{args.bundle}[/] -> {out} (sha256:{digest})")
    print(out)
    return _exit.SUCCESS


def _verifier(args: argparse.Namespace) -> Verifier | None:
    if not args.trusted_key:
        return None
    pems = []
    for path in args.trusted_key:
        try:
            pems.append(Path(path).read_bytes())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the trusted key ({exc.strerror})") from exc
    try:
        return TestKeyVerifier(pems)
    except ValueError as exc:
        raise ConfigError(f"{args.trusted_key[0]}: not a PEM EC public key") from exc


def _verify(args: argparse.Namespace) -> int:
    report = verify_bundle(args.bundle, verifier=_verifier(args), expected_identity=args.identity)
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    err = Console(file=sys.stderr)
    table = Table(title=f"evidence bundle {report.source}", title_justify="left")
    table.add_column("check")
    table.add_column("status")
    table.add_column("req")
    table.add_column("detail", overflow="fold")
    for check in report.checks:
        style = _STATUS_STYLE[check.status]
        table.add_row(
            check.name,
            f"[{style}]{check.status}[/]",
            "yes" if check.required else "",
            check.detail,
        )
    if not args.json:
        err.print(table)
    verdict = "[bold green]PASS[/]" if report.passed else "[bold red]FAIL[/]"
    err.print(
        f"{verdict} {report.source} run={report.run_id or '-'} digest={report.digest or '-'}",
        highlight=False,
        soft_wrap=True,
    )
    return _exit.SUCCESS if report.passed else _exit.FAILED


def _show(args: argparse.Namespace) -> int:
    with bundle_folder(args.bundle) as root:
        data = load_summary_data(root)
    p = data.predicate
    if args.json:
        value: dict[str, object] = {
            "bundle": str(args.bundle),
            "name": data.name,
            "digest": data.digest,
            "complete": data.complete,
            "predicate": p.to_json(),
            "files": [f.to_json() for f in data.files],
            "commands": list(data.commands),
            "total_commands": data.total_commands,
        }
        json.dump(value, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return _exit.SUCCESS
    err = Console(file=sys.stderr)
    facts = Table(show_header=False, title=f"evidence bundle {data.name}", title_justify="left")
    facts.add_column("fact", style="bold")
    facts.add_column("value", overflow="fold")
    for key, text in (
        ("run id", p.run_id),
        ("scenario", p.scenario or "-"),
        ("started", p.started_on),
        ("finished", p.finished_on or "-"),
        ("complete", "yes" if data.complete else "[bold red]NO[/] (not finalized)"),
        ("digest", data.digest or "-"),
        ("policy digest", p.policy_digest or "-"),
        ("required", ", ".join(p.required_paths) or "-"),
        ("files", f"{len(data.files)} ({sum(f.size for f in data.files)} bytes)"),
        ("commands", str(data.total_commands)),
    ):
        facts.add_row(key, text)
    err.print(facts)
    if p.verdicts:
        verdicts = Table(title="verdicts", title_justify="left")
        for column in ("check", "verdict", "detail"):
            verdicts.add_column(column, overflow="fold")
        for name, entry in sorted(p.verdicts.items()):
            color = {"pass": "green", "fail": "bold red"}.get(entry.verdict, "yellow")
            verdicts.add_row(name, f"[{color}]{entry.verdict}[/]", entry.detail)
        err.print(verdicts)
    if p.steps:
        steps = Table(title="steps", title_justify="left")
        for column in ("step", "result", "seconds", "detail"):
            steps.add_column(column, overflow="fold")
        for step in p.steps:
            steps.add_row(step.name, step.result, f"{step.duration_s:.3f}", step.detail)
        err.print(steps)
    if data.commands:
        commands = Table(title=f"commands (last {len(data.commands)})", title_justify="left")
        for column in ("exit", "seconds", "command"):
            commands.add_column(column, overflow="fold")
        for command in data.commands[-20:]:
            commands.add_row(
                str(command.get("exit_code")),
                f"{float(command.get('duration_s') or 0):.3f}",
                " ".join(str(a) for a in command.get("argv") or []),
            )
        err.print(commands)
    if Path(args.bundle).is_dir() and (Path(args.bundle) / "summary.html").is_file():
        err.print(f"summary: {Path(args.bundle) / 'summary.html'}", highlight=False, soft_wrap=True)
    return _exit.SUCCESS
