"""The lab variables experiments read as Chaos Toolkit `configuration`.

`cihub lab vars` prints them as a `--var-file` for plain `chaos run`; the chaos drill passes the
same mapping to the safe runner. Providers read the lab only from there (never `os.environ`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from chaoslib.exceptions import ActivityFailed  # type: ignore[import-untyped]

from lab.endpoints import Endpoints
from lab.state import lab_state_dir

LAB_KEYS = (
    "lab_id",
    "faultproxy_api_url",
    "toxiproxy_host",
    "toxiproxy_port",
    "registry_url",
    "rekor_url",
    "trust_config",
    "state_dir",
)
"""Every key `lab_vars` sets (experiments declare the ones they use)."""


def lab_vars(endpoints: Endpoints, state_dir: Path | None = None) -> dict[str, Any]:
    """The configuration of a running lab: its id, fault-proxy API (also as chaostoxi's
    `toxiproxy_host`/`toxiproxy_port`), proxied service URLs, trust config and a state folder
    (the log monitor's last verified checkpoint, signed bundles of the workloads).

    Example:
        >>> lab_vars(lab.endpoints)["registry_url"]  # doctest: +SKIP
        'http://127.0.0.1:40123'
    """
    api = urlsplit(endpoints.faultproxy_api_url)
    proxies = endpoints.proxies
    folder = state_dir or lab_state_dir(endpoints.lab_id) / "chaos"
    return {
        "lab_id": endpoints.lab_id,
        "faultproxy_api_url": endpoints.faultproxy_api_url,
        "toxiproxy_host": api.hostname or "127.0.0.1",
        "toxiproxy_port": api.port or 8474,
        "registry_url": endpoints.registry_url,
        "rekor_url": proxies["rekor"].url if "rekor" in proxies else "",
        "trust_config": str(endpoints.trust_config) if endpoints.trust_config else "",
        "state_dir": str(folder),
    }


def var_file(endpoints: Endpoints) -> dict[str, Any]:
    """`lab_vars` in the shape of a `chaos run --var-file` file."""
    return {"configuration": lab_vars(endpoints)}


def need(configuration: Mapping[str, Any] | None, key: str) -> str:
    """A lab variable a provider needs, as a string.

    Raises:
        ActivityFailed: the configuration lacks it (the experiment ran without lab vars).
    """
    value = (configuration or {}).get(key)
    if value in (None, ""):
        raise ActivityFailed(
            f"configuration.{key} is not set: run through `cihub run chaos`, or give "
            "`chaos run --var-file` the output of `cihub lab vars`"
        )
    return str(value)
