"""What the gated install left behind is read, never run (it may be the poison)."""

from __future__ import annotations

from pathlib import Path

from harness.dr.cache_poison import PACKAGE_MODULE, installed


def test_installed_origin_is_read_without_running_the_code(tmp_path: Path) -> None:
    module = tmp_path / PACKAGE_MODULE / "__init__.py"
    module.parent.mkdir()
    marker = tmp_path / "ran"
    module.write_text(
        f'ORIGIN = "genuine"\nopen({str(marker)!r}, "w").write("x")\nORIGIN = "poisoned"\n'
    )
    found = installed(tmp_path, ran=True)
    assert found.origin == "poisoned"
    assert not marker.exists()


def test_nothing_installed(tmp_path: Path) -> None:
    assert installed(tmp_path, ran=False).origin is None
