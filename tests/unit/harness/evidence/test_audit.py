from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from harness.errors import InfraError, StepFailed
from harness.evidence import AuditLog, Redactor
from harness.evidence.audit import REDACTED, read_commands


def _lines(log: AuditLog) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.path.read_text().splitlines()]


def test_env_values_with_secret_names_are_redacted_everywhere(tmp_path: Path) -> None:
    redactor = Redactor.from_environ(
        {
            "GITHUB_TOKEN": "ghs_abcdef123",
            "DB_Password": "hunter22",
            "HOME": "/root",
            "MY_SECRET_KEY": "s3cr3t-value",
        }
    )
    log = AuditLog(tmp_path / "audit" / "commands.log", redactor)
    log.record(
        ["login", "--token=ghs_abcdef123", "-p", "hunter22", "--key", "s3cr3t-value", "/root"],
        exit_code=0,
        duration_s=0.1,
        cwd="/work",
        env={"API_TOKEN": "tok-9999", "PLAIN": "uses tok-9999 inside"},
    )
    (entry,) = _lines(log)
    text = json.dumps(entry)
    for secret in ("ghs_abcdef123", "hunter22", "s3cr3t-value", "tok-9999"):
        assert secret not in text
    assert entry["argv"] == [
        "login",
        f"--token={REDACTED}",
        "-p",
        REDACTED,
        "--key",
        REDACTED,
        "/root",
    ]
    assert entry["env"] == {"API_TOKEN": REDACTED, "PLAIN": f"uses {REDACTED} inside"}


def test_configured_patterns_are_redacted_with_an_optional_secret_group(tmp_path: Path) -> None:
    redactor = Redactor.from_environ(
        {}, patterns=[r"ghp_[A-Za-z0-9]+", r"password=(?P<secret>[^&\s]+)"]
    )
    assert redactor.redact("push ghp_XYZ123 https://h/?password=pa55&x=1") == (
        f"push {REDACTED} https://h/?password={REDACTED}&x=1"
    )


def test_short_values_are_not_hunted_in_text() -> None:
    redactor = Redactor.from_environ({"X_TOKEN": "1"})
    assert redactor.redact("version 1.1") == "version 1.1"
    assert redactor.redact_env({"X_TOKEN": "1"}) == {"X_TOKEN": REDACTED}


def test_run_records_argv_exit_code_duration_and_output_digests(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "commands.log", Redactor())
    script = "import sys; print('OUT' + 'PUT-7f3a'); print('err', file=sys.stderr); sys.exit(3)"
    result = log.run([sys.executable, "-c", script], cwd=tmp_path)
    assert result.exit_code == 3 and not result.ok
    (entry,) = _lines(log)
    assert entry["exit_code"] == 3
    assert entry["cwd"] == str(tmp_path)
    assert entry["stdout_sha256"] == hashlib.sha256(b"OUTPUT-7f3a\n").hexdigest()
    assert entry["stderr_sha256"] == hashlib.sha256(b"err\n").hexdigest()
    assert isinstance(entry["duration_s"], float) and entry["duration_s"] >= 0
    assert "OUTPUT-7f3a" not in json.dumps(entry)  # only the digest of the output is logged


def test_run_check_raises_with_redacted_stderr(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "commands.log", Redactor.from_environ({"REG_PASSWORD": "opensesame"}))
    with pytest.raises(StepFailed, match="exited 1") as info:
        log.run([sys.executable, "-c", "import sys; sys.exit('bad opensesame')"], check=True)
    assert "opensesame" not in str(info.value)
    assert len(_lines(log)) == 1


def test_missing_program_and_timeout_are_recorded_and_raised(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "commands.log", Redactor())
    with pytest.raises(InfraError, match="command not found"):
        log.run(["definitely-not-a-program-cihub"])
    with pytest.raises(InfraError, match="timed out"):
        log.run([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.2)
    missing, timed_out = _lines(log)
    assert missing["exit_code"] is None and missing["note"] == "command not found"
    assert timed_out["exit_code"] is None and "timed out" in str(timed_out["note"])


def test_read_commands_keeps_the_last_records_and_counts_all(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "commands.log", Redactor())
    for i in range(5):
        log.record([f"cmd{i}"], exit_code=0, duration_s=0)
    with log.path.open("a") as handle:
        handle.write("torn {\n")
    records, total = read_commands(log.path, 2)
    assert total == 5
    assert [r["argv"] for r in records] == [["cmd3"], ["cmd4"]]


def test_a_torn_last_line_does_not_swallow_the_next_record(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "commands.log", Redactor())
    log.record(["first"], exit_code=0, duration_s=0)
    with log.path.open("ab") as handle:
        handle.write(b'{"argv": ["torn')
    log.record(["second"], exit_code=0, duration_s=0)
    lines = log.path.read_bytes().splitlines()
    assert json.loads(lines[-1])["argv"] == ["second"]
    assert len(lines) == 3
