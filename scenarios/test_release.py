"""The release drill as pytest scenarios: one test per scenario file in `release/`.

Each test runs the drill through the same runner as `cihub run release`, against the session's
lab (its registry and Sigstore stack), and passes when the gate allows. It is the suite's one
end-to-end release: it also checks what the issue asks of CI, that the packed bundle verifies
offline against the exported trust root and that `cihub referrers` lists the four attachments.

Run with `tox -e release`, or `pytest scenarios/test_release.py` (Docker needed).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness._cli import main
from harness.drills import ReleaseDrill, ReleaseServices, RunSettings, run_drill
from harness.drills.release import REFERRER_TYPES, load_release_scenario
from harness.evidence import IdentityPin, TrustPins, pack_bundle, verify_bundle
from harness.sign import SigningSetup
from lab import Lab

SCENARIO_FILES = sorted((Path(__file__).parent / "release").glob("*.yaml"))

pytestmark = pytest.mark.integration


def _services(lab: Lab) -> ReleaseServices:
    trust_config = lab.endpoints.trust_config
    assert trust_config is not None, "the lab has no Sigstore stack"
    return ReleaseServices(
        lab.endpoints.registry_url,
        lambda: SigningSetup(
            trust_config, lab.mint_token(), lab.config.identity, lab.config.issuer
        ),
    )


@pytest.mark.parametrize("scenario_file", SCENARIO_FILES, ids=lambda p: p.stem)
def test_release(
    scenario_file: Path,
    lab: Lab,
    drill_settings: RunSettings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    drill = ReleaseDrill(load_release_scenario(scenario_file), _services(lab))
    run = run_drill(drill, drill_settings)
    assert run.passed, "\n".join(run.lines())
    assert drill.result is not None and drill.result.gate is not None
    assert drill.result.gate.allow

    # The packed bundle verifies offline against the pinned trust root, for the lab identity.
    assert lab.endpoints.trust_config is not None
    packed = pack_bundle(run.bundle)
    pins = TrustPins(
        trust_config=lab.endpoints.trust_config,
        identity=IdentityPin(identity=lab.config.identity, issuer=lab.config.issuer),
    )
    report = verify_bundle(packed, pins=pins)
    assert report.passed, [c for c in report.checks if not c.passed]

    # `cihub referrers` lists the four attachments, one of each type.
    listing = json.loads((run.bundle / "referrers" / "listing.json").read_text())
    ref = f"{lab.endpoints.registry_url}/{listing['repository']}@{listing['subject']['digest']}"
    capsys.readouterr()
    assert main(["referrers", ref, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted(d["artifactType"] for d in listed) == sorted(REFERRER_TYPES.values())
