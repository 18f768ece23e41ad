"""`cihub rekor monitor`: verify a Rekor log grew append-only and still holds our entries."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from rich.console import Console

from harness import _exit
from harness.errors import ConfigError
from harness.monitor import RekorMonitor, log_key_from_trust_config
from lab._internal.docker import docker_client
from lab.cleanup import list_labs
from lab.endpoints import Endpoints
from lab.errors import LabNotFound

_err = Console(file=sys.stderr)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("rekor", help="watch a Rekor transparency log")
    sub = parser.add_subparsers(dest="rekor_command", metavar="ACTION", required=True)
    monitor = sub.add_parser(
        "monitor",
        help="verify the new checkpoint, its consistency with the last one, and entries",
    )
    monitor.add_argument(
        "--lab", metavar="ID", help="the lab whose log to watch (default: the one up)"
    )
    monitor.add_argument("--rekor-url", help="the log's URL (default: the lab's)")
    monitor.add_argument(
        "--trust-config", type=Path, help="where the log key comes from (default: the lab's)"
    )
    monitor.add_argument(
        "--state-dir",
        type=Path,
        default=Path("evidence/rekor-monitor"),
        help="where the last verified checkpoint per log is kept (default evidence/rekor-monitor)",
    )
    monitor.add_argument(
        "--digest",
        action="append",
        default=[],
        metavar="sha256:HEX",
        help="an entry that must be in the log",
    )
    monitor.add_argument(
        "--artifact",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="a file whose entry must be in the log",
    )
    monitor.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    monitor.set_defaults(handler=_monitor)


def _monitor(args: argparse.Namespace) -> int:
    rekor_url, trust_config = args.rekor_url, args.trust_config
    if rekor_url is None or trust_config is None:
        endpoints = _lab_endpoints(args.lab)
        rekor_url = rekor_url or endpoints.proxies["rekor"].url
        trust_config = trust_config or endpoints.trust_config
        if trust_config is None:
            raise ConfigError(f"lab {endpoints.lab_id} has no trust config; pass --trust-config")
    digests = [_digest_arg(d) for d in args.digest] + [_file_digest(p) for p in args.artifact]
    monitor = RekorMonitor(
        rekor_url, log_key_from_trust_config(trust_config), state_dir=args.state_dir
    )
    result = monitor.run(digests)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        before = f"{result.previous.size}" if result.previous else "first run"
        _err.print(
            f"[green]OK[/] log {result.log_id[:16]}: size {result.current.size} "
            f"(last verified: {before}); {len(digests)} artifact entr(ies) included"
        )
    return _exit.SUCCESS


def _lab_endpoints(lab_id: str | None) -> Endpoints:
    client = docker_client()
    if lab_id is None:
        running = [lab.lab_id for lab in list_labs(client) if lab.running]
        if len(running) != 1:
            raise LabNotFound(
                "name the lab with --lab, or pass --rekor-url and --trust-config "
                f"({', '.join(running) if running else 'no lab is up'})"
            )
        lab_id = running[0]
    return Endpoints.discover(client, lab_id)


def _digest_arg(value: str) -> str:
    algorithm, _, hexdigest = value.partition(":")
    if algorithm != "sha256" or len(hexdigest) != 64:
        raise ConfigError(f"--digest {value!r}: expected sha256:<64 hex digits>")
    try:
        bytes.fromhex(hexdigest)
    except ValueError as exc:
        raise ConfigError(f"--digest {value!r}: not hexadecimal") from exc
    return value.lower()


def _file_digest(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            return "sha256:" + hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the artifact") from exc
