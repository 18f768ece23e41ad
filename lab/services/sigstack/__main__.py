"""`python3 -m sigstack <role> [options]`: run one role of the lab's Sigstore stack.

The roles (rekor, and fulcio and tsa once registered) are listed in `roles.ROLES`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .roles import ROLES


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a role's `main` with the remaining arguments; 2 on an unknown role."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ROLES:
        names = "|".join(sorted(ROLES))
        given = f"unknown role {args[0]!r}; " if args and not args[0].startswith("-") else ""
        print(f"sigstack: {given}usage: python3 -m sigstack {{{names}}} [options]", file=sys.stderr)
        return 2
    return ROLES[args[0]](args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
