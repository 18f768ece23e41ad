"""The lab's Sigstore stack: protocol-compatible Rekor, Fulcio and TSA services.

Standard library and Debian's python3-cryptography (38) only; copied into the sigstack image
and run as `python3 -m sigstack <role>` (see `roles.py`). It never imports `lab` or `harness`.

Modules of the `rekor` role: `rekor` (entry validation, the log, HTTP routes, the command
line), `merkle` (RFC 6962/9162 trees and proofs), `checkpoint` (C2SP signed notes),
`store` (SQLite), `canonical` (RFC 8785 JSON). `http` is a tiny HTTP server shared by roles.
"""
