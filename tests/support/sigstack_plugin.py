"""Session fixtures over `tests.support.sigstack`: one in-process Sigstore stack per test
session, shared by every module that asks (starting stacks per module cost minutes of CI).

A test module opts in with `pytest_plugins = ("tests.support.sigstack_plugin",)`. Tests that
share a stack must not depend on its log's size or on being its only signer.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.sigstack import SigStack, SigStackPool


@pytest.fixture(scope="session")
def sigstacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigStackPool]:
    """Stacks by name (`lab` is the shared default; others, e.g. a second trust root, start
    on first use), stopped at the end of the session."""
    pytest.importorskip("lab.services.sigstack.rekor")
    pool = SigStackPool(tmp_path_factory.mktemp("sigstacks"))
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="session")
def sigstack(sigstacks: SigStackPool) -> SigStack:
    """The session's shared lab stack (identity `lab@cihub.test`)."""
    return sigstacks.get("lab")
