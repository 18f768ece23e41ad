"""The lab services a CLI release drill uses: the caller's running lab, or one up for the run.

The same lab choice as every CLI drill (`lab_signer.caller_lab`); the release needs more than a
manifest signer: the registry's URL and a `SigningSetup` for the artifact signature and the
attestations.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from harness._internal.lab_signer import caller_lab
from harness.drills.release import ReleaseServices
from harness.evidence import Signer
from lab.images import ImageMode


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
    with caller_lab(
        lab_id=lab_id,
        evidence_dir=evidence_dir,
        images=images,
        progress=progress,
        purpose="releasing",
    ) as access:
        yield access.signer(), ReleaseServices(access.registry_url, access.signing_setup)
