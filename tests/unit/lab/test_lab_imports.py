"""`lab.oci` needs only `requests`: the Docker side is imported lazily."""

from __future__ import annotations

import subprocess
import sys
import textwrap

_BLOCKED = ("docker", "testcontainers", "bcrypt", "filelock")

_BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {blocked!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
            return None

    sys.meta_path.insert(0, Block())
    """
)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    script = _BLOCKER.format(blocked=set(_BLOCKED)) + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )


def test_lab_oci_imports_and_works_without_the_docker_side() -> None:
    done = _run(
        """
        import lab.oci, lab.errors, sys
        from lab.oci import OciClient
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {blocked!r})
        print("loaded:", loaded)
        """.replace("{blocked!r}", repr(set(_BLOCKED)))
    )
    assert done.returncode == 0, done.stderr
    assert "loaded: []" in done.stdout


def test_the_blocker_really_blocks() -> None:
    # Guards the test above: a blocker that blocked nothing would make it pass vacuously.
    done = _run("import lab.lab\n")
    assert done.returncode != 0
    assert "blocked" in done.stderr


def test_the_public_names_still_resolve_lazily() -> None:
    import lab

    assert lab.LabConfig.__name__ == "LabConfig"
    assert lab.Lab.__module__ == "lab.lab"
