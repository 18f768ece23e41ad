"""Per-lab state on the host: trust material, generated credentials, the client trust config.

`~/.local/state/cihub/labs/<lab id>/` (or `$XDG_STATE_HOME/cihub/labs/<lab id>/`), mode 0700,
secrets in 0600 files. Never under the evidence folder: evidence is shared, secrets are not.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

TRUST_CONFIG_FILE = "trust_config.json"
"""The lab's ClientTrustConfig (trusted root + signing config), in its state folder."""


def state_root(environ: Mapping[str, str] = os.environ) -> Path:
    """$XDG_STATE_HOME/cihub/labs, else ~/.local/state/cihub/labs."""
    root = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(root) / "cihub" / "labs"


def lab_state_dir(lab_id: str, *, create: bool = True) -> Path:
    """The lab's own state folder, created 0700 when `create`."""
    folder = state_root() / lab_id
    if create:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def write_secret(path: Path, data: bytes) -> Path:
    """Write `data` to a new 0600 file (replacing any), so no other user can read it."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.replace(path)
    return path


def remove_lab_state(lab_id: str) -> None:
    """Forget a lab's state folder; missing is fine."""
    shutil.rmtree(state_root() / lab_id, ignore_errors=True)
