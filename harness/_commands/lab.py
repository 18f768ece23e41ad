"""`cihub lab up|status|down`: bring the lab up and down from a shell."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from harness import _exit
from harness._commands import chaos as _chaos
from harness.errors import ConfigError
from lab import Lab, LabConfig, labels
from lab._internal.docker import docker_client
from lab.cleanup import LabSummary, list_labs, remove_lab, save_logs
from lab.endpoints import Endpoints
from lab.errors import LabError, LabNotFound
from lab.images import IMAGE_MODES, remove_unused_images
from lab.sigstore_trust import LabTrustMaterial
from lab.state import lab_state_dir, write_secret

# soft_wrap: paths and digests stay on one line, whatever the terminal's width.
# stderr=True: rich looks sys.stderr up on each write (tests and embedding tools replace it).
_err = Console(stderr=True, soft_wrap=True, highlight=False)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("lab", help="bring the containerized lab up or down")
    sub = parser.add_subparsers(dest="lab_command", metavar="ACTION", required=True)

    up = sub.add_parser("up", help="build what is missing, start the lab, print its endpoints")
    up.add_argument(
        "--name",
        help="the lab's name (default: one per user and project folder, see `lab status`)",
    )
    up.add_argument("--json", action="store_true", help="print the endpoints as JSON on stdout")
    up.add_argument(
        "--images",
        choices=IMAGE_MODES,
        default="offline",
        help="offline: bootstrap images from Debian packages (default); "
        "upstream: build on a pinned public debian image",
    )
    up.add_argument(
        "--registry-auth",
        action="store_true",
        help="turn on htpasswd auth with generated credentials (written to a 0600 file)",
    )
    up.add_argument(
        "--port",
        action="append",
        default=[],
        metavar="NAME=PORT",
        help="publish endpoint NAME (faultproxy or a proxy name) on this 127.0.0.1 port",
    )
    up.add_argument("--timeout", type=float, default=60.0, help="seconds per service to be healthy")
    up.add_argument("--evidence-dir", type=Path, default=Path("evidence"))
    up.set_defaults(handler=_up)

    status = sub.add_parser(
        "status", help="list every lab on the engine: owner, age, state, endpoints"
    )
    status.add_argument("--json", action="store_true", help="print JSON on stdout")
    status.set_defaults(handler=_status)

    token = sub.add_parser(
        "token", help="print a fresh identity token from the lab's OIDC issuer (lab-only)"
    )
    token.add_argument("--lab", metavar="ID", help="the lab (default: your one running lab)")
    token.add_argument("--identity", help="email or URI the token names (default: the lab's)")
    token.add_argument("--lifetime", type=int, default=300, help="seconds it stays valid")
    token.set_defaults(handler=_token)

    down = sub.add_parser(
        "down", help="remove your labs from `lab up` and your labs left behind by crashed runs"
    )
    down.add_argument("--lab", metavar="ID", help="remove only this lab")
    down.add_argument(
        "--all",
        action="store_true",
        help="remove every lab on the engine, other owners' too (asks first, or --yes)",
    )
    down.add_argument(
        "--yes", action="store_true", help="do not ask before removing other owners' labs"
    )
    down.add_argument("--images", action="store_true", help="also remove unused lab images")
    down.add_argument("--evidence-dir", type=Path, default=Path("evidence"))
    down.set_defaults(handler=_down)
    _chaos.register_lab_vars(sub)


def _up(args: argparse.Namespace) -> int:
    try:
        name = labels.check_lab_name(args.name) if args.name else labels.default_lab_name()
    except ValueError as exc:
        raise ConfigError(f"--name: {exc}") from exc
    host_ports = _parse_ports(args.port)  # bad input is told before the engine is asked
    client = docker_client()
    labs = list_labs(client)
    me = labels.caller_owner()
    for stale in [lab for lab in labs if lab.stale and lab.owner == me and lab.lab_id != name]:
        # Yours, left by a crashed run: reaped now (the claim reaps a stale lab of this name).
        save_logs(client, stale.lab_id, args.evidence_dir / "lab" / stale.lab_id)
        remove_lab(client, stale.lab_id)
        _err.print(f"removed lab {stale.lab_id} (stale)")
    existing = next((lab for lab in labs if lab.lab_id == name), None)
    if existing is not None and existing.ready and existing.state == "running":
        # `make demo` twice: the lab is up, say where (a lab that is starting, stale or broken
        # goes through the claim, which refuses or reaps it).
        _err.print(f"lab [bold]{name}[/] is already up (owner {existing.owner})")
        info = Endpoints.discover(client, name).to_json()
        info["startup_seconds"] = 0.0
        _print_endpoints(info, as_json=args.json)
        return _exit.SUCCESS
    config = LabConfig(
        lab_id=name,
        images=args.images,
        registry_auth=args.registry_auth,
        persistent=True,
        evidence_dir=args.evidence_dir,
        host_ports=host_ports,
        startup_timeout=args.timeout,
    )
    _err.print(f"bringing up lab [bold]{config.lab_id}[/] ({config.images} images)")
    lab = Lab(config, client=client).start()
    info = lab.endpoints.to_json()
    if lab.registry_credentials is not None:
        info["registry_credentials_file"] = str(
            _write_credentials(
                config.lab_id, lab.registry_credentials.username, lab.registry_credentials.password
            )
        )
    info["startup_seconds"] = round(lab.startup_seconds or 0.0, 2)
    _print_endpoints(info, as_json=args.json)
    return _exit.SUCCESS


def _status(args: argparse.Namespace) -> int:
    client = docker_client()
    me = labels.caller_owner()
    rows: list[dict[str, Any]] = []
    for summary in list_labs(client):
        age = summary.age_seconds()
        row: dict[str, Any] = {
            "lab_id": summary.lab_id,
            "owner": summary.owner,
            "mine": summary.owner == me,
            "persistent": summary.persistent,
            "state": summary.state,
            "stale": summary.stale,
            "running": summary.running,
            "age_seconds": round(age) if age is not None else None,
            "services": list(summary.services),
            "running_services": list(summary.running_services),
            "containers": list(summary.containers),
        }
        if summary.running and summary.ready and not summary.stale:
            try:
                endpoints = Endpoints.discover(client, summary.lab_id)
                if "registry" not in endpoints.proxies:
                    raise LabNotFound(
                        f"lab {summary.lab_id}: its fault proxy has no registry route"
                    )
                row.update(endpoints.to_json())
            except LabError as exc:
                # Status lists every lab: one that can't be read says why and the list goes on.
                row["problem"] = str(exc)
        rows.append(row)
    if args.json:
        print(json.dumps({"owner": me, "labs": rows}, indent=2))
        return _exit.SUCCESS
    if not rows:
        _err.print("no lab is up")
        return _exit.SUCCESS
    table = _table("lab", "owner", "kind", "age", "state", "registry", "fault proxy API")
    for row in rows:
        kind = "cli" if row["persistent"] else "test"
        owner = row["owner"] + (" (you)" if row["mine"] else "")
        state = row["state"]
        if state in ("running", "degraded"):
            state += f" {len(row['running_services'])}/{len(row['services'])}"
        table.add_row(
            row["lab_id"],
            owner,
            kind,
            _age(row["age_seconds"]),
            state,
            row.get("registry_url", "-"),
            row.get("faultproxy_api_url", "-"),
        )
    _print_table(table)
    return _exit.SUCCESS


def _age(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def _token(args: argparse.Namespace) -> int:
    lab_id = args.lab
    if lab_id is None:
        me = labels.caller_owner()
        mine = [lab for lab in list_labs(docker_client()) if lab.running and lab.owner == me]
        # Your `lab up` lab before the test labs of a run going on beside it.
        running = [lab.lab_id for lab in mine if lab.persistent] or [lab.lab_id for lab in mine]
        if len(running) != 1:
            found = ", ".join(running) if running else "none of yours is up"
            raise LabNotFound(f"name the lab with --lab ({found})")
        lab_id = running[0]
    material_dir = lab_state_dir(lab_id, create=False) / "sigstore"
    if not material_dir.is_dir():
        raise LabNotFound(f"lab {lab_id}: no Sigstore trust material at {material_dir}")
    material = LabTrustMaterial.load(material_dir)
    print(material.mint_identity_token(args.identity, lifetime=args.lifetime))
    return _exit.SUCCESS


def _down(args: argparse.Namespace) -> int:
    client = docker_client()
    labs = list_labs(client)
    me = labels.caller_owner()
    if args.lab:
        chosen = [lab for lab in labs if lab.lab_id == args.lab]
        if not chosen:
            raise LabNotFound(f"lab {args.lab}: not found (see `cihub lab status`)")
    elif args.all:
        chosen = labs
    else:
        # Only the caller's: labs it brought up, and its own left behind by crashed runs.
        # A live test run's lab is that run's own, and other owners' labs are theirs.
        chosen = [lab for lab in labs if lab.owner == me and (lab.persistent or lab.stale)]
    others = [lab for lab in chosen if lab.owner != me and not lab.stale]
    if others and not args.yes and not _confirm(others):
        return _exit.ERROR
    for summary in chosen:
        save_logs(client, summary.lab_id, args.evidence_dir / "lab" / summary.lab_id)
        remove_lab(client, summary.lab_id)
        _err.print(f"removed lab {summary.lab_id}" + (" (stale)" if summary.stale else ""))
    skipped = [lab.lab_id for lab in labs if lab not in chosen]
    if skipped and not args.lab:  # with --lab the others were never in question
        _err.print(
            f"left {len(skipped)} lab(s) of live test runs or other owners alone: "
            f"{', '.join(skipped)} (`--lab ID` or `--all` removes them)"
        )
    if args.images:
        for name in remove_unused_images(client):
            _err.print(f"removed image {name}")
    if not chosen and not args.images:
        _err.print("no lab of yours to remove")
    return _exit.SUCCESS


def _confirm(others: list[LabSummary]) -> bool:
    """Ask on a terminal before removing other owners' live labs; refuse without one."""
    listed = ", ".join(f"{lab.lab_id} (owner {lab.owner})" for lab in others)
    if not sys.stdin.isatty():
        _err.print(
            f"[bold red]error:[/] refusing to remove other owners' labs without asking: "
            f"{listed}; no terminal to ask on: pass --yes to remove them"
        )
        return False
    answer = _err.input(f"remove {len(others)} lab(s) of other owners: {listed}? [y/N] ")
    if answer.strip().lower() in ("y", "yes"):
        return True
    _err.print("nothing removed")
    return False


def _table(*headers: str) -> Table:
    table = Table()
    for header in headers:
        # URLs and paths are copied from here: never wrap them, never cut them short.
        table.add_column(header, no_wrap=True, overflow="ignore")
    return table


def _print_table(table: Table) -> None:
    """Print on stdout as wide as the table needs, so no cell is wrapped or cut, even when
    the terminal (or a pipe's default of 80 columns) is narrower."""
    console = Console(highlight=False)
    unbounded = console.options.update_width(1_000_000)
    needed = Measurement.get(console, unbounded, table).maximum
    if needed > console.width:
        console = Console(highlight=False, width=needed)
    console.print(table)


def _parse_ports(values: list[str]) -> dict[str, int]:
    ports: dict[str, int] = {}
    for value in values:
        name, sep, port = value.partition("=")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"--port {value!r}: expected NAME=PORT, e.g. registry=5000")
        ports[name] = int(port)
    return ports


def _write_credentials(lab_id: str, username: str, password: str) -> Path:
    path = lab_state_dir(lab_id) / "registry-credentials.json"
    return write_secret(path, json.dumps({"username": username, "password": password}).encode())


def _print_endpoints(info: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(info, indent=2))
        return
    table = _table("endpoint", "URL", "through proxy of")
    table.add_row("registry", info["registry_url"], "registry")
    table.add_row("fault proxy API", info["faultproxy_api_url"], "-")
    if info.get("trust_config"):
        table.add_row("sigstore trust config", info["trust_config"], "-")
    for name, proxy in info["proxies"].items():
        if name != "registry":
            table.add_row(name, proxy["url"], name)
    _print_table(table)
    if "registry_credentials_file" in info:
        _err.print(f"registry credentials: {info['registry_credentials_file']}")
    _err.print(
        f"lab {info['lab_id']} is up in {info['startup_seconds']} s; "
        f"`cihub lab down --lab {info['lab_id']}` removes it"
    )
