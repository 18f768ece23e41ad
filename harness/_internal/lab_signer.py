"""The lab a CLI drill signs (and pushes) through: the caller's running lab, or one up for it.

`cihub lab up` leaves a lab running; a drill started from the CLI signs through that lab's
Sigstore stack. With no such lab it brings one up for the run and takes it down afterwards (the
trust domain and its log outlive it, so the evidence still verifies later).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker

from harness.errors import ConfigError
from harness.evidence import Signer
from harness.sign import SigningSetup, SigstoreSigner
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


@dataclass(frozen=True)
class LabAccess:
    """What a drill needs of a lab: its registry and its Sigstore stack (trust config, tokens).

    Attributes:
        lab_id: the lab.
        registry_url: the registry, through the fault proxy.
        trust_config: the lab's trust config (the durable trusted root + the lab's URLs).
        token: mints a fresh identity token from the lab's OIDC issuer.
        identity, issuer: what the tokens, and so the certificates, name.
    """

    lab_id: str
    registry_url: str
    trust_config: Path
    token: Callable[[], str]
    identity: str = DEFAULT_IDENTITY
    issuer: str = DEFAULT_ISSUER

    def signer(self) -> Signer:
        """The keyless evidence signer of this lab."""
        return SigstoreSigner(self.trust_config, self.token, self.identity, self.issuer)

    def signing_setup(self) -> SigningSetup:
        """A setup to sign an artifact or an attestation now (with a fresh token)."""
        return SigningSetup(self.trust_config, self.token(), self.identity, self.issuer)


@contextlib.contextmanager
def caller_lab(
    *,
    lab_id: str | None,
    evidence_dir: Path,
    images: ImageMode,
    progress: Callable[[str], None] | None = None,
    purpose: str = "signing keylessly",
) -> Iterator[LabAccess]:
    """The caller's running lab (or the named one), else a lab brought up for this run.

    Raises:
        ConfigError: `lab_id` names no running lab, several of the caller's labs are up and none
            is named, or the lab has no Sigstore stack.
        LabError: a lab had to be brought up and could not be.
    """
    client = docker_client()
    found = running_lab(list_labs(client), lab_id, caller_owner())
    if found is not None:
        if progress:
            progress(f"{purpose} through lab {found}")
        yield _running_lab_access(client, found)
        return
    if progress:
        progress(f"no lab of yours is up: bringing one up for this run ({purpose})")
    config = LabConfig(lab_id=new_lab_id("run"), evidence_dir=evidence_dir, images=images)
    with Lab(config, client=client) as the_lab:
        trust_config = the_lab.endpoints.trust_config
        if trust_config is None:
            raise ConfigError(f"lab {config.lab_id} has no Sigstore stack to sign with")
        yield LabAccess(
            config.lab_id,
            the_lab.endpoints.registry_url,
            trust_config,
            the_lab.mint_token,
            config.identity,
            config.issuer,
        )


@contextlib.contextmanager
def caller_lab_signer(
    *,
    lab_id: str | None,
    evidence_dir: Path,
    images: ImageMode,
    progress: Callable[[str], None] | None = None,
) -> Iterator[Signer]:
    """A keyless signer through the caller's running lab, or through a lab up for this run."""
    with caller_lab(
        lab_id=lab_id, evidence_dir=evidence_dir, images=images, progress=progress
    ) as access:
        yield access.signer()


def _running_lab_access(client: docker.DockerClient, lab_id: str) -> LabAccess:
    endpoints = Endpoints.discover(client, lab_id)
    material_dir = lab_state_dir(lab_id, create=False) / "sigstore"
    if endpoints.trust_config is None or not material_dir.is_dir():
        raise ConfigError(f"lab {lab_id}: no Sigstore trust material (started without it?)")
    material = LabTrustMaterial.load(material_dir)
    return LabAccess(
        lab_id,
        endpoints.registry_url,
        endpoints.trust_config,
        lambda: material.mint_identity_token(None),
    )
