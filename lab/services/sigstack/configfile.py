"""Reading a role's JSON config file (fulcio, tsa)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json(path: Path) -> Any:
    """The parsed JSON of `path`.

    Raises:
        OSError: the file can't be read.
        ValueError: it is not JSON (the message names the file).
    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from exc
