"""A signal at any point of a `cihub` process gives exit 130 and keeps what was written.

Each case runs in a subprocess (a SIGTERM that got through would kill pytest itself)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness import _exit
from harness.evidence import KeySigner
from harness.telemetry import NDJSON_NAME

ROOT = Path(__file__).resolve().parents[3]


def _python(code: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        **kwargs,  # type: ignore[call-overload]
    )


@pytest.mark.parametrize(("signum", "said"), [(signal.SIGTERM, "(SIGTERM)"), (signal.SIGINT, "")])
def test_a_signal_while_the_command_loads_is_one_line_and_130(
    signum: signal.Signals, said: str
) -> None:
    proc = _python(
        f"""
        import os, sys
        from harness import _cli

        real = _cli._parser

        def parser(command=None):
            os.kill(os.getpid(), {int(signum)})  # while the command's modules load
            return real(command)

        _cli._parser = parser
        sys.exit(_cli.main(["schema", "validate", "nothing.ndjson"]))
        """
    )
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == _exit.CANCELLED, err
    assert err.strip().splitlines() == [
        f"interrupted{' ' + said if said else ''}: evidence written so far is kept"
    ]


def test_sigterm_during_cihub_run_determinism_writes_a_cancellation_record(
    tmp_path: Path,
) -> None:
    key = tmp_path / "key.pem"
    key.write_bytes(KeySigner.generate().private_key_pem)
    evidence = tmp_path / "evidence"
    proc = _python(
        f"""
        import sys, time
        from harness import _cli
        from harness.drills.determinism import DeterminismDrill

        def run(self, bundle, progress):
            print("ready", flush=True)
            time.sleep(120)  # the signal interrupts this
            raise AssertionError("not cancelled")

        DeterminismDrill.run = run
        DeterminismDrill.cancel = lambda self: print("cancelled", flush=True)
        sys.exit(_cli.main([
            "run", "determinism", "--scenario", "scenarios/determinism/c-hello.yaml",
            "--sign", "key:{key}", "--evidence-dir", "{evidence}",
        ]))
        """
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == _exit.CANCELLED, err
    assert "cancelled" in out
    assert "interrupted (SIGTERM)" in err
    (line,) = (evidence / NDJSON_NAME).read_text().splitlines()
    record = json.loads(line)
    assert record["result"] == "cancellation"
    assert (evidence / record["evidence"]["bundle_path"] / "INCOMPLETE").exists()
