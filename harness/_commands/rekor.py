"""`cihub rekor monitor`: verify the Rekor logs grew append-only and still hold our entries.

v1 is watched through the v1 API (search index for `--digest`/`--artifact`), v2 through the
C2SP tlog-tiles read path (no search index: name entries with `--entry INDEX=sha256:HEX`).
Keys and origins come from the pinned trusted root (`--trust-config`, default: the lab's).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from harness import _exit
from harness.errors import ConfigError
from harness.monitor import MonitorResult, RekorMonitor, TilesMonitor, pinned_logs
from lab._internal.docker import docker_client
from lab.cleanup import list_labs
from lab.endpoints import Endpoints
from lab.errors import LabNotFound

# stderr=True: rich looks sys.stderr up on each write (tests and embedding tools replace it).
_err = Console(stderr=True)


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
    monitor.add_argument("--rekor-url", help="the logs' URL (default: the lab's)")
    monitor.add_argument(
        "--log",
        choices=("v1", "v2", "all"),
        default="all",
        help="which log to watch (default: every log the trusted root lists)",
    )
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
        help="an entry that must be in the v1 log (found by its search index)",
    )
    monitor.add_argument(
        "--artifact",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="a file whose entry must be in the v1 log",
    )
    monitor.add_argument(
        "--entry",
        action="append",
        default=[],
        metavar="INDEX=sha256:HEX",
        help="the entry at INDEX must be in the log and carry that digest (needs one --log)",
    )
    monitor.add_argument(
        "--audit",
        action="store_true",
        help="v2: also re-hash every entry added since the last run against its tile",
    )
    monitor.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    monitor.set_defaults(handler=_monitor)


def _monitor(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir
    if state_dir.exists() and not state_dir.is_dir():
        raise ConfigError(
            f"--state-dir {state_dir}: not a folder (the monitor keeps one file per log there)"
        )
    rekor_url, trust_config = args.rekor_url, args.trust_config
    if rekor_url is None or trust_config is None:
        endpoints = _lab_endpoints(args.lab)
        rekor_url = rekor_url or endpoints.proxies["rekor"].url
        trust_config = trust_config or endpoints.trust_config
        if trust_config is None:
            raise ConfigError(f"lab {endpoints.lab_id} has no trust config; pass --trust-config")
    digests = [_digest_arg(d) for d in args.digest] + [_file_digest(p) for p in args.artifact]
    entries = dict(_entry_arg(e) for e in args.entry)
    logs = pinned_logs(trust_config)
    wanted = {"v1": [1], "v2": [2], "all": sorted(logs)}[args.log]
    if entries and args.log == "all":
        raise ConfigError("--entry names an index in one log: add --log v1 or --log v2")
    if digests and wanted == [2]:
        raise ConfigError(
            "Rekor v2 has no search index: name entries with --entry INDEX=sha256:HEX"
        )
    missing = [f"v{api}" for api in wanted if api not in logs]
    if missing:
        raise ConfigError(f"{trust_config}: the trusted root lists no {' or '.join(missing)} log")
    results: list[MonitorResult] = []
    for api in wanted:
        pinned = logs[api]
        if api == 1:
            v1 = RekorMonitor(rekor_url, pinned.key, state_dir=state_dir, key_name=pinned.name)
            results.append(v1.run(digests, entries))
        else:
            v2 = TilesMonitor(rekor_url, pinned.key, pinned.name, state_dir=state_dir)
            results.append(v2.run(entries, audit=args.audit))
    if args.json:
        out: dict[str, Any] = {f"v{r.api}": r.to_json() for r in results}
        print(json.dumps(out, indent=2))
    for result in results:
        before = f"{result.previous.size}" if result.previous else "first run"
        found = sum(len(v) for v in result.entries.values())
        _err.print(
            f"[green]OK[/] v{result.api} log {result.current.origin}: size "
            f"{result.current.size} (last verified: {before}); {found} entr(ies) included",
            soft_wrap=True,
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


def _entry_arg(value: str) -> tuple[int, str]:
    index, sep, digest = value.partition("=")
    if not sep or not index.isdigit():
        raise ConfigError(f"--entry {value!r}: expected INDEX=sha256:<64 hex digits>")
    return int(index), _digest_arg(digest)
