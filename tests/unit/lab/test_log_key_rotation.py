"""Rotating the Rekor v2 log key: the old key stays trusted for what it signed, with its window
closed; the new one signs from the rotation on; the trust domain keeps both across reloads."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lab.services.sigstack.x509util import spki_der
from lab.sigstore_trust import LabTrustMaterial, TrustMaterialError, c2sp_ed25519_key_id
from lab.trust_domain import TrustDomain

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _v2_tlogs(root: dict[str, object]) -> list[dict[str, object]]:
    tlogs = root["tlogs"]
    assert isinstance(tlogs, list)
    return [t for t in tlogs if t["publicKey"]["keyDetails"] == "PKIX_ED25519"]


def test_rotation_keeps_the_old_key_with_its_window_closed() -> None:
    material = LabTrustMaterial.generate(valid_from=T0)
    old_key = material.rekor_key_v2.public_key()
    rotated = material.rotate_rekor_v2_key(T0 + timedelta(days=30))
    new_key = rotated.rekor_key_v2.public_key()
    assert spki_der(new_key) != spki_der(old_key)
    current, old = _v2_tlogs(rotated.trusted_root())
    assert current["publicKey"]["rawBytes"] == base64.b64encode(spki_der(new_key)).decode()
    assert current["publicKey"]["validFor"] == {"start": "2026-01-31T00:00:00Z"}
    assert old["publicKey"]["rawBytes"] == base64.b64encode(spki_der(old_key)).decode()
    assert old["publicKey"]["validFor"] == {
        "start": "2025-12-31T23:55:00Z",
        "end": "2026-01-31T00:00:00Z",
    }
    assert old["logId"] != current["logId"]
    assert (
        current["logId"]["keyId"]
        == base64.b64encode(c2sp_ed25519_key_id(rotated.rekor_origin, new_key)).decode()
    )
    assert rotated.rekor_v2_log_id != material.rekor_v2_log_id


def test_two_rotations_list_every_key_newest_first() -> None:
    material = LabTrustMaterial.generate(valid_from=T0)
    twice = material.rotate_rekor_v2_key(T0 + timedelta(days=1)).rotate_rekor_v2_key(
        T0 + timedelta(days=2)
    )
    windows = [t["publicKey"]["validFor"] for t in _v2_tlogs(twice.trusted_root())]
    assert windows == [
        {"start": "2026-01-03T00:00:00Z"},
        {"start": "2026-01-02T00:00:00Z", "end": "2026-01-03T00:00:00Z"},
        {"start": "2025-12-31T23:55:00Z", "end": "2026-01-02T00:00:00Z"},
    ]


def test_the_rotated_trust_config_loads_in_sigstore_with_every_log_key(tmp_path: Path) -> None:
    from harness.evidence.sigstore_verify import PinnedRoot

    rotated = LabTrustMaterial.generate(valid_from=T0).rotate_rekor_v2_key(T0 + timedelta(days=1))
    path = rotated.write_trust_config(tmp_path / "trust_config.json", None)
    pinned = PinnedRoot.load(path)  # parsed by sigstore-python's own models
    assert len(pinned.log_keys()) == 3  # v1, v2 now, v2 before the rotation


def test_a_rotation_must_come_after_the_current_key_started() -> None:
    material = LabTrustMaterial.generate(valid_from=T0)
    with pytest.raises(TrustMaterialError, match="not after"):
        material.rotate_rekor_v2_key(T0 - timedelta(hours=1))


def test_trust_domain_rotation_survives_a_reload(tmp_path: Path) -> None:
    domain = TrustDomain.open(tmp_path / "td")
    before = json.loads(domain.trust_config.read_text())["trustedRoot"]
    rotated = domain.rotate_log_key()
    after = json.loads(rotated.trust_config.read_text())["trustedRoot"]
    assert len(_v2_tlogs(after)) == len(_v2_tlogs(before)) + 1
    assert (
        _v2_tlogs(after)[1]["publicKey"]["rawBytes"]
        == _v2_tlogs(before)[0]["publicKey"]["rawBytes"]
    ), "the old key is still trusted"
    service_key = (rotated.service_dirs()["rekor"] / "rekor-key-v2.pem").read_bytes()
    reopened = TrustDomain.open(tmp_path / "td")
    assert reopened.material.rekor_v2_log_id == rotated.material.rekor_v2_log_id
    assert reopened.material.retired_rekor_v2 == rotated.material.retired_rekor_v2
    assert b"PRIVATE KEY" in service_key
    rekor_json = json.loads((rotated.service_dirs()["rekor"] / "rekor.json").read_text())
    assert rekor_json["log_id_v2"] == rotated.material.rekor_v2_log_id.hex()
