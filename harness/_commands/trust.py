"""`cihub trust`: the durable trust domain (init, show, export, delete).

The trust domain (`lab.trust_domain`) holds the lab's Sigstore keys, its Rekor logs and the
trusted root an auditor pins. Labs make it on first use and keep it; only `delete --yes`
removes it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from harness import _exit
from harness.errors import ConfigError
from lab.trust_domain import TrustDomain, trust_domain_dir

# stderr=True: rich looks sys.stderr up on each write (tests and embedding tools replace it).
_err = Console(stderr=True)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("trust", help="the durable trust domain an auditor pins")
    sub = parser.add_subparsers(dest="trust_command", metavar="ACTION", required=True)

    def with_path(action: argparse.ArgumentParser) -> argparse.ArgumentParser:
        action.add_argument(
            "--trust-domain",
            type=Path,
            metavar="DIR",
            help=f"the trust domain's folder (default: {trust_domain_dir()})",
        )
        return action

    init = with_path(
        sub.add_parser("init", help="make the trust domain now (labs do on first use)")
    )
    init.set_defaults(handler=_init)
    show = with_path(sub.add_parser("show", help="where the trust domain lives, what it holds"))
    show.add_argument("--json", action="store_true", help="print it as JSON on stdout")
    show.set_defaults(handler=_show)
    export = with_path(
        sub.add_parser("export", help="write the trust config an auditor pins (--trust-config)")
    )
    export.add_argument(
        "-o", "--output", type=Path, metavar="FILE", help="write it here (default: stdout)"
    )
    export.set_defaults(handler=_export)
    delete = with_path(
        sub.add_parser("delete", help="remove the trust domain: keys, logs and trusted root")
    )
    delete.add_argument(
        "--yes", action="store_true", help="really delete (evidence signed under it won't verify)"
    )
    delete.set_defaults(handler=_delete)


def _init(args: argparse.Namespace) -> int:
    domain = TrustDomain.open(args.trust_domain)
    _err.print(f"trust domain at {domain.path}; pin {domain.trust_config}", soft_wrap=True)
    return _exit.SUCCESS


def _show(args: argparse.Namespace) -> int:
    info = TrustDomain.open(args.trust_domain, create=False).describe()
    if args.json:
        print(json.dumps(info, indent=2))
        return _exit.SUCCESS
    _err.print(f"trust domain: {info['path']}", soft_wrap=True)
    _err.print(f"trust config (pin this): {info['trust_config']}", soft_wrap=True)
    _err.print(
        f"OIDC issuer: {info['issuer']} (default identity {info['default_identity']}, "
        f"key sha256 {info['oidc_issuer_key_sha256']})",
        soft_wrap=True,
    )
    table = Table("kind", "name / base URL", "id (sha256)", "valid from")
    for tlog in info["tlogs"]:
        table.add_row(
            f"rekor {tlog['api']}",
            f"{tlog['base_url']}\norigin {tlog['checkpoint_origin']}",
            tlog["log_id"],
            tlog["valid_for"]["start"],
        )
    for ct in info["ctlogs"]:
        table.add_row("ct log", ct["base_url"], ct["log_id"], ct["valid_for"]["start"])
    for kind, items in (("fulcio CA", "certificate_authorities"), ("TSA", "timestamp_authorities")):
        for item in info[items]:
            table.add_row(kind, item["uri"], "\n".join(item["fingerprints_sha256"]), _start(item))
    Console(width=200).print(table)
    return _exit.SUCCESS


def _start(item: dict[str, Any]) -> str:
    return str(item["valid_for"]["start"])


def _export(args: argparse.Namespace) -> int:
    domain = TrustDomain.open(args.trust_domain, create=False)
    data = domain.trust_config.read_bytes()
    output: Path | None = args.output
    if output is None:
        sys.stdout.write(data.decode("utf-8"))
        return _exit.SUCCESS
    if output.is_dir():
        raise ConfigError(f"-o {output}: is a folder; name a file")
    if not output.parent.is_dir():
        raise ConfigError(f"-o {output}: the folder {output.parent} does not exist")
    tmp = output.with_name(f".{output.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, output)
    except OSError as exc:
        raise ConfigError(f"-o {output}: cannot write: {exc.strerror}") from exc
    _err.print(f"wrote {output} (pin it with --trust-config)", soft_wrap=True)
    return _exit.SUCCESS


def _delete(args: argparse.Namespace) -> int:
    folder = args.trust_domain or trust_domain_dir()
    if not args.yes:
        raise ConfigError(
            f"cihub trust delete removes {folder} for good (keys, logs, trusted root); "
            "evidence signed under it will no longer verify. Add --yes to do it."
        )
    removed = TrustDomain.delete(args.trust_domain)
    _err.print(f"deleted the trust domain at {removed}", soft_wrap=True)
    return _exit.SUCCESS
