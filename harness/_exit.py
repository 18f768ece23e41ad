"""Process exit codes of `cihub`, as diffoscope and pip name them."""

from __future__ import annotations

SUCCESS = 0
"""Everything that was asked for passed."""

FAILED = 1
"""A check ran and failed: not reproducible, evidence did not verify, an invalid record."""

ERROR = 2
"""Usage or infrastructure error: bad input, no Docker engine, a service that would not start."""

CANCELLED = 130
"""Stopped by SIGINT or SIGTERM (the shell's 128 + SIGINT): the evidence is kept as cancelled."""
