"""`cihub evidence pack|verify|show`: handle evidence bundles from a shell, offline."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness import _exit
from harness.errors import ConfigError
from harness.evidence import load_summary_data, pack_bundle, verify_bundle
from harness.evidence.identity import IdentityPin
from harness.evidence.pack import (
    ExtractLimits,
    bundle_folder,
    format_size,
    parse_size,
    tar_digest,
)
from harness.evidence.signer import KeyVerifier
from harness.evidence.summary import SummaryData, headline
from harness.evidence.verify import TrustPins, VerifyReport, verify_folder

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
        "verify",
        help="recompute digests, check the signature against what YOU pin, and the pass criteria",
    )
    verify.add_argument("bundle", type=Path, metavar="BUNDLE|TARBALL")
    verify.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    _add_trust(verify)
    _add_limits(verify)
    verify.set_defaults(handler=_verify)

    show = actions.add_parser("show", help="summarize a bundle for people")
    show.add_argument("bundle", type=Path, metavar="BUNDLE|TARBALL")
    show.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    _add_trust(show)
    _add_limits(show)
    show.set_defaults(handler=_show)


def _add_trust(parser: argparse.ArgumentParser) -> None:
    trust = parser.add_argument_group(
        "trust (pinned by the verifier; nothing in the bundle is a trust anchor)"
    )
    trust.add_argument(
        "--trust-config",
        type=Path,
        default=None,
        metavar="FILE",
        help="Sigstore trust config (e.g. from `cihub trust export`) keyless signatures must "
        "chain to (default: the local trust domain)",
    )
    identity = trust.add_mutually_exclusive_group()
    identity.add_argument(
        "--cert-identity", default=None, metavar="ID", help="the signing certificate's identity"
    )
    identity.add_argument(
        "--cert-identity-regexp",
        default=None,
        metavar="RE",
        help="a regular expression the whole certificate identity must match",
    )
    issuer = trust.add_mutually_exclusive_group()
    issuer.add_argument(
        "--cert-oidc-issuer", default=None, metavar="URL", help="the certificate's OIDC issuer"
    )
    issuer.add_argument(
        "--cert-oidc-issuer-regexp",
        default=None,
        metavar="RE",
        help="a regular expression the whole OIDC issuer must match",
    )
    trust.add_argument(
        "--key",
        type=Path,
        action="append",
        default=None,
        metavar="PUB.pem",
        help="public key a key-signed (manifest.dsse.json) bundle must be signed with (repeatable)",
    )
    for retired in ("--identity", "--trusted-key"):
        trust.add_argument(retired, default=None, help=argparse.SUPPRESS)


def _size(text: str) -> int:
    try:
        value = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 512M or 4G") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be positive")
    return value


def _add_limits(parser: argparse.ArgumentParser) -> None:
    defaults = ExtractLimits()
    group = parser.add_argument_group("limits when reading a .tar.gz (raise them for big bundles)")
    group.add_argument(
        "--max-total-size",
        type=_size,
        default=defaults.max_total_bytes,
        metavar="SIZE",
        help=f"all members together (default {format_size(defaults.max_total_bytes)})",
    )
    group.add_argument(
        "--max-member-size",
        type=_size,
        default=defaults.max_member_bytes,
        metavar="SIZE",
        help=f"one member (default {format_size(defaults.max_member_bytes)})",
    )
    group.add_argument(
        "--max-members",
        type=int,
        default=defaults.max_members,
        metavar="N",
        help=f"number of members (default {defaults.max_members})",
    )
    group.add_argument(
        "--max-ratio",
        type=float,
        default=defaults.max_ratio,
        metavar="X",
        help=f"uncompressed bytes per archive byte (default {defaults.max_ratio:g})",
    )


def _limits(args: argparse.Namespace) -> ExtractLimits:
    return ExtractLimits(
        max_total_bytes=args.max_total_size,
        max_member_bytes=args.max_member_size,
        max_members=args.max_members,
        max_ratio=args.max_ratio,
    )


def _pack(args: argparse.Namespace) -> int:
    out = pack_bundle(args.bundle, args.output)
    digest = hashlib.sha256()
    with out.open("rb") as handle:
        while chunk := handle.read(4 * 1024 * 1024):
            digest.update(chunk)
    Console(file=sys.stderr).print(
        f"packed [bold]{args.bundle}[/] -> {out} (sha256:{digest.hexdigest()}; inner tar "
        f"{tar_digest(out)}, reproducible whatever the zlib build)",
        highlight=False,
        soft_wrap=True,
    )
    print(out)
    return _exit.SUCCESS


def _pins(args: argparse.Namespace) -> TrustPins:
    if args.identity is not None:
        raise ConfigError(
            "--identity is gone: pin keyless signers with --cert-identity ID "
            "--cert-oidc-issuer URL (or their -regexp forms), as sigstore does"
        )
    if args.trusted_key is not None:
        raise ConfigError("--trusted-key is gone: pin a signing key with --key PUB.pem")
    keys: tuple[bytes, ...] = ()
    if args.key:
        KeyVerifier.from_pem_files(args.key)  # names the file that is unusable
        keys = tuple(Path(p).read_bytes() for p in args.key)
    return TrustPins(
        trust_config=args.trust_config,
        identity=IdentityPin(
            identity=args.cert_identity,
            identity_regexp=args.cert_identity_regexp,
            issuer=args.cert_oidc_issuer,
            issuer_regexp=args.cert_oidc_issuer_regexp,
        ),
        keys=keys,
    )


def _verify(args: argparse.Namespace) -> int:
    report = verify_bundle(args.bundle, pins=_pins(args), limits=_limits(args))
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    err = Console(file=sys.stderr)
    # Every value from a bundle is escaped: `[...]` in a hostile bundle is text, not markup.
    table = Table(title=f"evidence bundle {escape(report.source)}", title_justify="left")
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
            escape(check.detail),
        )
    if not args.json:
        err.print(table)
    verdict = "[bold green]PASS[/]" if report.passed else "[bold red]FAIL[/]"
    facts = (
        f"{report.source} run={report.run_id or '-'} digest={report.digest or '-'} "
        f"signed-by={report.signed_by or '-'}"
    )
    err.print(f"{verdict} {escape(facts)}", highlight=False, soft_wrap=True)
    for check in report.failures:  # one unwrapped line per reason, for people and for grep
        err.print(f"  {check.name}: {check.detail}", markup=False, highlight=False, soft_wrap=True)
    return _exit.SUCCESS if report.passed else _exit.FAILED


def _show(args: argparse.Namespace) -> int:
    pins = _pins(args)
    with bundle_folder(args.bundle, _limits(args)) as root:
        data = load_summary_data(root)
        report = verify_folder(root, source=str(args.bundle), pins=pins)
    p = data.predicate
    headline = _verified_headline(data, report, pins)
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
            "headline": headline,
            "verified": report.passed,
        }
        json.dump(value, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return _exit.SUCCESS
    err = Console(file=sys.stderr, soft_wrap=True)
    color = "bold green" if headline["verdict"] == "PASS" else "bold red"
    err.print(f"[{color}]{headline['verdict']}[/]: {escape(headline['why'])}", highlight=False)
    for key in ("signed_by", "log_entry", "trust_root"):
        err.print(f"  {key.replace('_', ' ')}: {escape(headline[key])}", highlight=False)
    facts = Table(
        show_header=False, title=f"evidence bundle {escape(data.name)}", title_justify="left"
    )
    facts.add_column("fact", style="bold")
    facts.add_column("value", overflow="fold")
    for key, text in (
        ("run id", escape(str(p.run_id))),
        ("scenario", escape(str(p.scenario or "-"))),
        ("started", escape(str(p.started_on))),
        ("finished", escape(str(p.finished_on or "-"))),
        ("complete", "yes" if data.complete else "[bold red]NO[/] (not finalized)"),
        ("digest", data.digest or "-"),
        ("policy digest", escape(str(p.policy_digest or "-"))),
        ("required", escape(", ".join(str(r) for r in p.required_paths) or "-")),
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
            verdicts.add_row(
                escape(str(name)), f"[{color}]{escape(str(entry.verdict))}[/]", _text(entry.detail)
            )
        err.print(verdicts)
    if p.steps:
        steps = Table(title="steps", title_justify="left")
        for column in ("step", "result", "seconds", "detail"):
            steps.add_column(column, overflow="fold")
        for step in p.steps:
            steps.add_row(
                _text(step.name), _text(step.result), _seconds(step.duration_s), _text(step.detail)
            )
        err.print(steps)
    if data.commands:
        commands = Table(title=f"commands (last {len(data.commands)})", title_justify="left")
        for column in ("exit", "seconds", "command"):
            commands.add_column(column, overflow="fold")
        for command in data.commands[-20:]:
            argv = command.get("argv")
            commands.add_row(
                _text(command.get("exit_code")),
                _seconds(command.get("duration_s")),
                _text(" ".join(str(a) for a in argv) if isinstance(argv, list) else argv),
            )
        err.print(commands)
    html = Path(args.bundle) / "summary.html"
    if Path(args.bundle).is_dir() and not html.is_symlink() and html.is_file():
        err.print(f"summary: {escape(str(html))}", highlight=False, soft_wrap=True)
    return _exit.SUCCESS


def _verified_headline(data: SummaryData, report: VerifyReport, pins: TrustPins) -> dict[str, str]:
    """The one line a reviewer reads first: the drill's claim, checked by verify."""
    word, why = headline(data)
    if not report.passed:
        first = report.failures[0]
        word, why = "FAIL", f"{why}; does not verify: {first.name}: {first.detail}"
    root = pins.root_path()
    rekor = {c.name: c for c in report.checks}.get("rekor-inclusion")
    return {
        "verdict": word,
        "why": why,
        "signed_by": report.signed_by or "not verified",
        "log_entry": rekor.detail if rekor is not None else "-",
        "trust_root": f"{root}" if root is not None else "none pinned",
    }


def _text(value: object) -> str:
    """A value from a bundle as table text: stringified, markup escaped."""
    return escape("" if value is None else str(value))


def _seconds(value: object) -> str:
    try:
        return f"{float(value):.3f}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return _text(value)
