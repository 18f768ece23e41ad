"""The careless rotation the negative twin pins: only the retired log keys are dropped."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from harness.dr.rotation import drop_retired_keys
from lab.sigstore_trust import LabTrustMaterial


def test_drop_retired_keys_keeps_every_current_log(tmp_path: Path) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    material = LabTrustMaterial.generate(valid_from=t0)
    rotated = material.rotate_rekor_v2_key(t0 + timedelta(days=1))
    full = rotated.write_trust_config(tmp_path / "full.json", None)
    careless = drop_retired_keys(full, tmp_path / "careless.json")
    kept = json.loads(careless.read_text())["trustedRoot"]["tlogs"]
    ids = {t["logId"]["keyId"] for t in kept}
    everything = json.loads(full.read_text())["trustedRoot"]["tlogs"]
    assert len(everything) == 3 and len(kept) == 2
    assert all("end" not in t["publicKey"]["validFor"] for t in kept)
    assert len(ids) == 2
