import subprocess
import sys

import pytest

from harness import _exit
from harness._cli import main


@pytest.mark.parametrize("action", [["up"], ["status"], ["down"]])
def test_without_an_engine_every_lab_command_says_how_to_start_one(
    action: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert main(["lab", *action]) == _exit.ERROR
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "no Docker engine answers at unix:///nonexistent/docker.sock: start one" in err


def test_the_console_script_exits_2_without_an_engine() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "lab", "status"],
        env={"DOCKER_HOST": "unix:///nonexistent/docker.sock", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "start one" in proc.stderr


def test_a_malformed_port_option_names_the_option(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness._commands import lab as lab_command

    monkeypatch.setattr(lab_command, "docker_client", lambda: _NoLabs())
    assert main(["lab", "up", "--port", "registry:5000"]) == _exit.ERROR
    assert "--port 'registry:5000': expected NAME=PORT" in capsys.readouterr().err


class _NoLabs:
    class containers:
        @staticmethod
        def list(**_kwargs: object) -> list[object]:
            return []

    class networks(containers):
        pass

    class volumes(containers):
        pass


def test_a_bad_lab_name_is_refused_before_the_engine_is_asked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert main(["lab", "up", "--name", "Bad Name"]) == _exit.ERROR
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--name: lab name 'Bad Name'" in err


def test_log_lines_never_wrap_paths_or_digests(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from harness._cli import _configure_logging

    handler = _configure_logging(0)
    try:
        path = "/very/long/evidence/" + "d" * 120 + "/manifest.json"
        digest = "sha256:" + "f" * 64
        logging.getLogger("lab.test").info("wrote %s %s", path, digest)
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert path in lines[0] and digest in lines[0]


def test_lab_up_prints_the_whole_trust_config_path_on_a_narrow_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness._commands import lab as lab_command

    monkeypatch.setenv("COLUMNS", "40")
    trust_config = "/home/someone/.local/state/cihub/labs/cihub-someone-0123abcd/" + (
        "trust_config.json"
    )
    info = {
        "lab_id": "cihub-someone-0123abcd",
        "registry_url": "http://127.0.0.1:40000",
        "faultproxy_api_url": "http://127.0.0.1:40001",
        "trust_config": trust_config,
        "proxies": {"rekor": {"url": "http://127.0.0.1:40002"}},
        "startup_seconds": 1.0,
    }
    lab_command._print_endpoints(info, as_json=False)
    out = capsys.readouterr().out
    assert trust_config in out, out
    assert "http://127.0.0.1:40002" in out
