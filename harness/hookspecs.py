"""Hooks cihub's pytest plugin calls; implement them in a conftest.py or a plugin.

Registered by `harness._internal.pytest_evidence` through `pytest_addhooks`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from harness.evidence import EvidenceBundle


@pytest.hookspec
def pytest_cihub_evidence_finalized(bundle: EvidenceBundle, record: dict[str, Any]) -> None:
    """A test's evidence bundle was finalized and its pipeline_run record appended.

    Args:
        bundle: the finalized bundle (`bundle.finalized.digest` is its identity).
        record: the pipeline_run record as written to the NDJSON file.

    Example:
        >>> def pytest_cihub_evidence_finalized(bundle, record):
        ...     print(record["result"], bundle.finalized.digest)
    """
