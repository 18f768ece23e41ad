"""The log drill's guard and its reading of the monitors."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.dr.log import LogState, MonitorRun
from harness.errors import ConfigError


def test_refuses_a_lab_on_the_users_own_trust_domain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = tmp_path / "mine"
    own.mkdir()
    monkeypatch.setenv("CIHUB_TRUST_DOMAIN", str(own))
    lab = SimpleNamespace(
        trust_domain=SimpleNamespace(path=tmp_path / "." / "mine", logs_dir=own / "logs"),
        endpoints=SimpleNamespace(trust_config=tmp_path / "trust_config.json"),
        config=SimpleNamespace(lab_id="cihub-me"),
    )
    with pytest.raises(ConfigError, match="private trust domain"):
        LogState(lab, tmp_path / "monitor")  # type: ignore[arg-type]


def test_a_lab_without_sigstore_has_no_log_to_drill(tmp_path: Path) -> None:
    lab = SimpleNamespace(
        trust_domain=None,
        endpoints=SimpleNamespace(trust_config=None),
        config=SimpleNamespace(lab_id="cihub-x"),
    )
    with pytest.raises(ConfigError, match="no Sigstore stack"):
        LogState(lab, tmp_path)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("alarms", "detected"),
    [
        ({"v1": "ROLLBACK: shrank", "v2": "ROLLBACK: shrank"}, True),
        ({"v1": "ROLLBACK: shrank"}, False),  # one log unwatched is not a detection
        ({"v1": "SPLIT VIEW: x", "v2": "ROLLBACK: y"}, False),
        ({}, False),
    ],
)
def test_rollback_counts_only_when_both_logs_alarm(alarms: dict[str, str], detected: bool) -> None:
    run = MonitorRun({}, alarms)
    assert run.rollback_detected() is detected
    assert run.ok is (not alarms)
