"""The lab services a CLI release drill uses: the caller's running lab, or one up for the run.

Like `lab_signer.caller_lab_signer` (same lab choice: the named lab, else the caller's only
running `lab up` lab, else one brought up for this run and taken down after it), but the
release needs more than a manifest signer: the registry's URL and a `SigningSetup` for the
artifact signature and the attestations.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from harness._internal.lab_signer import running_lab
from harness.drills.release import ReleaseServices
from harness.errors import ConfigError
from harness.evidence import Signer
from harness.sign import SigningSetup, SigstoreSigner
from lab import Lab, LabConfig
from lab._internal.docker import docker_client
from lab.cleanup import list_labs
from lab.config import DEFAULT_IDENTITY, DEFAULT_ISSUER, new_lab_id
from lab.endpoints import Endpoints
from lab.images import ImageMode
from lab.labels import caller_owner
from lab.sigstore_trust import LabTrustMaterial
from lab.state import lab_state_dir


@contextlib.contextmanager
def release_services(
    *,
    lab_id: str | None,
    evidence_dir: Path,
    images: ImageMode,
    progress: Callable[[str], None] | None = None,
) -> Iterator[tuple[Signer, ReleaseServices]]:
    """(the evidence signer, the release's registry and signing setup) of one lab.

    Raises:
        ConfigError: `lab_id` names no running lab, or it has no Sigstore stack.
        LabError: a lab had to be brought up and could not be.
    """
    client = docker_client()
    found = running_lab(list_labs(client), lab_id, caller_owner())
    if found is not None:
        if progress:
            progress(f"releasing through lab {found}")
        endpoints = Endpoints.discover(client, found)
        material_dir = lab_state_dir(found, create=False) / "sigstore"
        if endpoints.trust_config is None or not material_dir.is_dir():
            raise ConfigError(f"lab {found}: no Sigstore trust material (started without it?)")
        material = LabTrustMaterial.load(material_dir)
        yield _services(
            endpoints.registry_url,
            endpoints.trust_config,
            lambda: material.mint_identity_token(None),
            DEFAULT_IDENTITY,
            DEFAULT_ISSUER,
        )
        return
    if progress:
        progress("no lab is up: bringing one up for this release")
    config = LabConfig(lab_id=new_lab_id("run"), evidence_dir=evidence_dir, images=images)
    with Lab(config, client=client) as the_lab:
        trust_config = the_lab.endpoints.trust_config
        if trust_config is None:
            raise ConfigError(f"lab {config.lab_id} has no Sigstore stack to sign with")
        yield _services(
            the_lab.endpoints.registry_url,
            trust_config,
            the_lab.mint_token,
            config.identity,
            config.issuer,
        )


def _services(
    registry_url: str,
    trust_config: Path,
    token: Callable[[], str],
    identity: str,
    issuer: str,
) -> tuple[Signer, ReleaseServices]:
    signer = SigstoreSigner(trust_config, token, identity, issuer)
    services = ReleaseServices(
        registry_url, lambda: SigningSetup(trust_config, token(), identity, issuer)
    )
    return signer, services
