"""`cihub referrers REF@DIGEST`: list a manifest's OCI referrers (the lab's `oras discover`).

Through the registry's referrers API, or the OCI 1.1 tag-schema fallback (an index tagged
`sha256-<hex>`) where the registry has none, as Debian's distribution 2.8 does. REF is
`[http(s)://]HOST[:PORT]/REPO`; without a scheme the registry is reached over http (the lab's).
Exit 0 with the list (empty included), 2 for a malformed reference or an unreachable registry.
"""

from __future__ import annotations

import argparse
import json
import re

from rich.console import Console

from harness import _exit
from harness.errors import ConfigError
from lab.oci import OciClient

_REFERENCE = re.compile(
    r"^(?P<scheme>https?://)?(?P<host>[^/@\s]+)/(?P<repo>[^@\s]+)@(?P<digest>sha256:[0-9a-f]{64})$"
)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "referrers",
        help="list the OCI referrers of a manifest (referrers API or tag-schema fallback)",
    )
    parser.add_argument("reference", metavar="REF@DIGEST", help="e.g. 127.0.0.1:5000/repo@sha256:…")
    parser.add_argument("--artifact-type", metavar="T", help="only referrers of this type")
    parser.add_argument("--json", action="store_true", help="print the list as JSON")
    parser.set_defaults(handler=_referrers)


def parse_reference(text: str) -> tuple[str, str, str]:
    """(registry URL, repository, digest) of `[scheme://]host/repo@sha256:…`.

    Raises:
        ConfigError: not of that form.
    """
    found = _REFERENCE.match(text)
    if found is None:
        raise ConfigError(f"{text!r}: expected [http(s)://]HOST[:PORT]/REPO@sha256:<64 hex>")
    url = (found["scheme"] or "http://") + found["host"]
    return url, found["repo"], found["digest"]


def _referrers(args: argparse.Namespace) -> int:
    url, repo, digest = parse_reference(args.reference)
    with OciClient(url) as client:
        try:
            found = client.list_referrers(repo, digest, args.artifact_type)
        except ValueError as exc:
            raise ConfigError(f"{args.reference}: {exc}") from exc
    if args.json:
        print(json.dumps([d.to_json() for d in found], indent=2, sort_keys=True))
        return _exit.SUCCESS
    out = Console(highlight=False, soft_wrap=True)
    out.print(f"{url}/{repo}@{digest}")
    for d in found:
        out.print(f"└── {d.artifact_type or '?'}  {d.digest}  ({d.size} bytes)")
    if not found:
        out.print("(no referrers)")
    return _exit.SUCCESS
