"""The trust domain: the lab's durable Sigstore identity (CA, CT key, TSA, log keys) and its log.

Labs are disposable; the trust domain is not. Like an organisation's own Sigstore deployment it
is made once, reused by every lab and kept across `cihub lab down`, so evidence signed today
still verifies next month against the same pinned trusted root.

Where it lives: `$CIHUB_TRUST_DOMAIN` if set, else `$XDG_STATE_HOME/cihub/trust-domain`, else
`~/.local/state/cihub/trust-domain`. Its `trust_config.json` is the ClientTrustConfig an auditor
pins (`cihub trust export`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

TRUST_DOMAIN_ENV = "CIHUB_TRUST_DOMAIN"
"""Names the trust domain's folder, overriding the per-user default."""

TRUST_CONFIG_FILE = "trust_config.json"
"""The trust domain's ClientTrustConfig (trusted root + signing config)."""


def trust_domain_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """The trust domain's folder (it may not exist yet)."""
    explicit = environ.get(TRUST_DOMAIN_ENV)
    if explicit:
        return Path(explicit).expanduser()
    root = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(root) / "cihub" / "trust-domain"


def local_trust_config(environ: Mapping[str, str] = os.environ) -> Path | None:
    """The local trust domain's trust config file, or None when no trust domain was made yet."""
    path = trust_domain_dir(environ) / TRUST_CONFIG_FILE
    return path if path.is_file() else None
