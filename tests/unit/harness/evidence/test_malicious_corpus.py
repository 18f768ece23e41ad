"""Every member of the malicious-bundle corpus fails cleanly, in bounded time and memory.

`cihub evidence verify` and `cihub evidence show` run in a subprocess with an address-space
cap (RLIMIT_AS) and a timeout (a safety net: nothing here asserts how long anything takes).
A clean failure is exit 1 or 2 with the case's reason on stderr, no traceback, no secret from
outside the bundle in the output, and an empty temporary folder afterwards.
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

DATA = Path(__file__).resolve().parents[3] / "data"
GOLDEN = DATA / "golden_bundle"
KEY = DATA / "golden_bundle.pub.pem"
ADDRESS_SPACE = 1536 * 1024 * 1024
"""The cap: well above what verify needs (about 300-400 MiB of mappings for Python and its
libraries), far below what reading /dev/zero or a bomb would take."""
TIMEOUT_S = 120


def _corpus() -> ModuleType:
    spec = importlib.util.spec_from_file_location("malicious_bundles", DATA / "malicious_bundles.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("malicious_bundles", module)
    spec.loader.exec_module(module)
    return module


CORPUS = _corpus()


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


_DRIVER = """
import json, sys
from harness._cli import main
codes = [main(args) for args in json.loads(sys.argv[1])]
print("EXIT-CODES", json.dumps(codes))
"""


def _cihub(commands: list[list[str]], tmp: Path) -> tuple[list[int], str]:
    """Run `cihub` commands in one capped subprocess: their exit codes and all output."""
    env = {
        **os.environ,
        "TMPDIR": str(tmp),
        "CIHUB_TRUST_DOMAIN": str(tmp.parent / "no-trust-domain"),
        "COLUMNS": "200",
    }
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER, json.dumps(commands)],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=TIMEOUT_S,
        preexec_fn=_cap_memory,
        env=env,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output  # the driver itself ended normally
    marker = output.rsplit("EXIT-CODES ", 1)[-1].splitlines()[0]
    return json.loads(marker), done.stderr


def test_the_genuine_base_passes_under_the_same_caps(tmp_path: Path) -> None:
    """The caps leave room for real work: the corpus fails for its content, not the cap."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    codes, stderr = _cihub([["evidence", "verify", str(GOLDEN), "--key", str(KEY)]], tmp)
    assert codes == [0], stderr


@pytest.mark.parametrize("case", CORPUS.CASES, ids=[c.name for c in CORPUS.CASES])
def test_every_member_fails_cleanly(case: object, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    target = case.build(GOLDEN, work)  # type: ignore[attr-defined]
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    args = list(case.args)  # type: ignore[attr-defined]
    verify = ["evidence", "verify", str(target), "--key", str(KEY), *args]
    show = ["evidence", "show", str(target), *args]
    (verify_code, show_code), stderr = _cihub([verify, show], tmp)
    assert "Traceback" not in stderr, stderr
    assert "MemoryError" not in stderr, stderr
    assert CORPUS.SECRET not in stderr, stderr
    assert list(tmp.iterdir()) == [], f"left behind: {list(tmp.iterdir())}"
    assert verify_code in (1, 2), (verify_code, stderr)
    assert show_code in (0, 1, 2), (show_code, stderr)
    assert case.says in stderr, stderr  # type: ignore[attr-defined]
    assert not Path("/tmp/cihub-absolute-escape.txt").exists()
    assert not (tmp_path / "escaped.txt").exists()
