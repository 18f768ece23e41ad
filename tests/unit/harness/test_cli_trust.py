"""`cihub trust init|show|export|delete` on a private trust domain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness._cli import main as cihub


def test_trust_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "td"
    where = ["--trust-domain", str(folder)]
    assert cihub(["trust", "show", *where]) == 2
    assert "no trust domain" in capsys.readouterr().err
    assert cihub(["trust", "init", *where]) == 0
    capsys.readouterr()
    assert cihub(["trust", "show", "--json", *where]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["path"] == str(folder.absolute())
    assert {t["api"] for t in info["tlogs"]} == {"v1", "v2"}
    assert info["issuer"] == "https://oidc.lab.cihub"
    assert cihub(["trust", "show", *where]) == 0
    assert "rekor-v2.cihub.lab" in capsys.readouterr().out
    out = tmp_path / "pinned.json"
    assert cihub(["trust", "export", "-o", str(out), *where]) == 0
    assert out.read_bytes() == (folder / "trust_config.json").read_bytes()
    assert cihub(["trust", "export", "-o", str(tmp_path), *where]) == 2
    assert cihub(["trust", "export", "-o", str(tmp_path / "no" / "x.json"), *where]) == 2
    capsys.readouterr()
    assert cihub(["trust", "export", *where]) == 0
    assert json.loads(capsys.readouterr().out)["trustedRoot"]["tlogs"]
    assert cihub(["trust", "delete", *where]) == 2
    assert "--yes" in capsys.readouterr().err and folder.exists()
    assert cihub(["trust", "delete", "--yes", *where]) == 0
    assert not folder.exists()
