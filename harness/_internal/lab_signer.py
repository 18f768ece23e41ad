"""Keyless signing for a CLI drill: through the caller's running lab, or a lab brought up for it.

`cihub lab up` leaves a lab running; a drill started from the CLI signs through that lab's
Sigstore stack. With no such lab it brings one up for the run and takes it down afterwards (the
trust domain and its log outlive it, so the evidence still verifies later).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import docker

from harness.errors import ConfigError
from harness.evidence import Signer
from harness.sign import SigstoreSigner
from lab import Lab, LabConfig
from lab._internal.docker import docker_client
from lab.cleanup import LabSummary, list_labs
from lab.config import DEFAULT_IDENTITY, DEFAULT_ISSUER, new_lab_id
from lab.endpoints import Endpoints
from lab.images import ImageMode
from lab.labels import caller_owner
from lab.sigstore_trust import LabTrustMaterial
from lab.state import lab_state_dir

_logger = logging.getLogger(__name__)


def running_lab(labs: list[LabSummary], lab_id: str | None, owner: str) -> str | None:
    """The lab to sign through: the named one, else the caller's only running `lab up` lab.

    Another owner's lab is used only when named: nothing a user runs touches another's lab.

    Raises:
        ConfigError: the named lab is not up, or several of the caller's are and none was named.
    """
    candidates = [s for s in labs if s.running and not s.stale and s.ready]
    if lab_id is not None:
        if not any(s.lab_id == lab_id for s in candidates):
            raise ConfigError(f"--lab {lab_id}: no such lab is running (`cihub lab status`)")
        return lab_id
    persistent = [s.lab_id for s in candidates if s.persistent and s.owner == owner]
    if len(persistent) > 1:
        raise ConfigError(
            f"several of your labs are up ({', '.join(persistent)}): name one with --lab, or "
            "use --sign key:PATH"
        )
    return persistent[0] if persistent else None


@contextlib.contextmanager
def caller_lab_signer(
    *,
    lab_id: str | None,
    evidence_dir: Path,
    images: ImageMode,
    progress: Callable[[str], None] | None = None,
) -> Iterator[Signer]:
    """A keyless signer through the caller's running lab, or through a lab up for this run.

    Raises:
        ConfigError: `lab_id` names no running lab, or several labs are up and none is named.
        LabError: a lab had to be brought up and could not be.
    """
    client = docker_client()
    found = running_lab(list_labs(client), lab_id, caller_owner())
    if found is not None:
        if progress:
            progress(f"signing keylessly through lab {found}")
        yield _signer_of_running_lab(client, found)
        return
    if progress:
        progress("no lab is up: bringing one up to sign this run's evidence (keyless)")
    config = LabConfig(lab_id=new_lab_id("run"), evidence_dir=evidence_dir, images=images)
    with Lab(config, client=client) as the_lab:
        trust_config = the_lab.endpoints.trust_config
        if trust_config is None:
            raise ConfigError(f"lab {config.lab_id} has no Sigstore stack to sign with")
        yield SigstoreSigner(trust_config, the_lab.mint_token, config.identity, config.issuer)


def _signer_of_running_lab(client: docker.DockerClient, lab_id: str) -> Signer:
    endpoints = Endpoints.discover(client, lab_id)
    material_dir = lab_state_dir(lab_id, create=False) / "sigstore"
    if endpoints.trust_config is None or not material_dir.is_dir():
        raise ConfigError(f"lab {lab_id}: no Sigstore trust material (started without it?)")
    material = LabTrustMaterial.load(material_dir)
    return SigstoreSigner(
        endpoints.trust_config,
        lambda: material.mint_identity_token(None),
        DEFAULT_IDENTITY,
        DEFAULT_ISSUER,
    )
