"""The in-process Sigstore stacks of the keyless evidence tests, reused for cache manifests."""

from tests.unit.harness.evidence.test_keyless import stacks

__all__ = ["stacks"]
