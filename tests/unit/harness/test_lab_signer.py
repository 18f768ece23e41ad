"""Which lab a CLI drill signs through: never another owner's unless named."""

from __future__ import annotations

import pytest

from harness._internal.lab_signer import running_lab
from harness.errors import ConfigError
from lab.cleanup import LabSummary


def _lab(lab_id: str, owner: str, *, persistent: bool = True, running: bool = True) -> LabSummary:
    return LabSummary(lab_id, persistent, False, (), running, owner=owner)


def test_the_callers_running_lab_is_used() -> None:
    labs = [
        _lab("theirs", "bob~1"),
        _lab("mine", "alice~1"),
        _lab("test", "alice~1", persistent=False),
    ]
    assert running_lab(labs, None, "alice~1") == "mine"


def test_another_owners_lab_is_never_picked_unless_named() -> None:
    labs = [_lab("theirs", "bob~1")]
    assert running_lab(labs, None, "alice~1") is None  # a lab is brought up instead
    assert running_lab(labs, "theirs", "alice~1") == "theirs"


def test_a_named_lab_that_is_not_running_is_an_error() -> None:
    with pytest.raises(ConfigError, match="--lab gone: no such lab is running"):
        running_lab([_lab("gone", "alice~1", running=False)], "gone", "alice~1")


def test_several_of_the_callers_labs_need_a_name() -> None:
    labs = [_lab("a", "alice~1"), _lab("b", "alice~1")]
    with pytest.raises(ConfigError, match="several of your labs are up \\(a, b\\)"):
        running_lab(labs, None, "alice~1")
