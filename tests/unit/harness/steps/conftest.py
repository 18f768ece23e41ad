from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[3] / "data"
SAMPLE = Path(__file__).resolve().parents[4] / "scenarios" / "release" / "sample"


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def sample_subject(tmp_path: Path) -> Path:
    """A copy of the release sample with a fake built wheel in dist/."""
    import shutil

    subject = tmp_path / "sample"
    shutil.copytree(SAMPLE, subject)
    (subject / "dist").mkdir()
    (subject / "dist" / "cihub_release_sample-1.0.0-py3-none-any.whl").write_bytes(b"PK fake")
    return subject
