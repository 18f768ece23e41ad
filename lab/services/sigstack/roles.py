"""The registry of sigstack roles: `python3 -m sigstack <role> [options]` runs `ROLES[role]`.

Each role is a `main(argv) -> exit status` function in its own module. To add a role, import
its module here and add one entry to `ROLES`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from . import fulcio, rekor, tsa

RoleMain = Callable[[Sequence[str]], int]

ROLES: dict[str, RoleMain] = {
    "rekor": rekor.main,
    "fulcio": fulcio.main,
    "tsa": tsa.main,
}
