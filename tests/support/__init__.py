"""Helpers shared by tests and benches (not part of the installed package)."""
