"""An in-process Sigstore stack: the lab's Fulcio, Rekor (v1 and v2) and TSA roles running as
threads of this process, a trust config pinning them, and a keyless signer through them.

One place for what unit tests and benches repeated: sigstore-python signs and verifies
against it unmodified, with no Docker. Tests get it from the session fixtures in
`tests.support.sigstack_plugin`; benches call `running_sigstack` directly.

Example:
    >>> with running_sigstack(tmp_path) as stack:
    ...     bundle.finalize(stack.signer())
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.evidence import SIGSTORE_SIGNATURE, IdentityPin, TrustPins
from harness.evidence.manifest import SIGSTORE_TRUST_CONFIG
from harness.sign import SigningSetup
from lab.sigstore_trust import DEFAULT_IDENTITY, DEFAULT_ISSUER, LabTrustMaterial

LAB_IDENTITY = DEFAULT_IDENTITY
LAB_ISSUER = DEFAULT_ISSUER


@dataclass(frozen=True)
class SigStack:
    """One running Sigstore deployment.

    Attributes:
        name: a label for people (`lab`, `B`, ...).
        material: its keys, CA and OIDC issuer (mints identity tokens).
        trust_config: the sigstore-python ClientTrustConfig file pinning it.
        urls: `rekor_url`, `fulcio_url`, `tsa_url`.
    """

    name: str
    material: LabTrustMaterial
    trust_config: Path
    urls: Mapping[str, str]

    def signer(self, identity: str | None = None) -> StackSigner:
        """A keyless `Signer` (DSSE over the manifest) for `identity` (default: the lab's)."""
        return StackSigner(self, identity)

    def signing_setup(self, identity: str | None = None) -> SigningSetup:
        """What `harness.sign` needs to sign through this stack as `identity`."""
        who = identity or self.material.identity
        token = self.material.mint_identity_token(who)
        return SigningSetup(self.trust_config, token, who, self.material.issuer)

    def pins(self) -> TrustPins:
        """The pins a verifier of this stack's signatures uses."""
        pin = IdentityPin(identity=self.material.identity, issuer=self.material.issuer)
        return TrustPins(trust_config=self.trust_config, identity=pin)


class StackSigner:
    """A keyless `Signer` through a `SigStack`, via sigstore-python."""

    signature_file = SIGSTORE_SIGNATURE

    def __init__(self, stack: SigStack, identity: str | None = None) -> None:
        self._stack = stack
        self._identity = identity or stack.material.identity

    @property
    def identity(self) -> str:
        return f"{self._identity} ({self._stack.material.issuer})"

    def sign(self, data: bytes) -> bytes:
        """A DSSE envelope over `data` (an in-toto Statement), as a Sigstore bundle."""
        from sigstore import dsse

        with self._signer() as signer:
            signed: bytes = signer.sign_dsse(dsse.Statement(data)).to_json().encode()
        return signed

    def sign_blob(self, data: bytes) -> bytes:
        """A message signature over any bytes (e.g. the cache manifest)."""
        with self._signer() as signer:
            signed: bytes = signer.sign_artifact(data).to_json().encode()
        return signed

    def evidence_files(self) -> dict[str, bytes]:
        return {SIGSTORE_TRUST_CONFIG: self._stack.trust_config.read_bytes()}

    @contextlib.contextmanager
    def _signer(self) -> Iterator[Any]:
        from sigstore.models import ClientTrustConfig
        from sigstore.oidc import IdentityToken
        from sigstore.sign import SigningContext

        trust = ClientTrustConfig.from_json(self._stack.trust_config.read_text())
        context = SigningContext.from_trust_config(trust)
        token = IdentityToken(self._stack.material.mint_identity_token(self._identity))
        with context.signer(token) as signer:
            yield signer


@contextlib.contextmanager
def running_sigstack(
    folder: Path, *, name: str = "lab", material: LabTrustMaterial | None = None
) -> Iterator[SigStack]:
    """Start Fulcio, TSA and Rekor for `material` (default: fresh lab material) on
    127.0.0.1 ephemeral ports, with their files in `folder`; stop them on exit."""
    from lab.services.sigstack import fulcio, rekor, tsa

    material = material or LabTrustMaterial.generate(identity=LAB_IDENTITY, issuer=LAB_ISSUER)
    folder.mkdir(parents=True, exist_ok=True)
    dirs = material.write_service_files(folder)
    ca = fulcio.FulcioCA.from_config(fulcio.FulcioConfig.from_file(dirs["fulcio"] / "fulcio.json"))
    authority = tsa.TimestampAuthority(tsa.TsaConfig.from_file(dirs["tsa"] / "tsa.json"))
    with contextlib.ExitStack() as stop:
        ca_server = fulcio.make_server(ca, "127.0.0.1", 0, log=False).start()
        stop.callback(ca_server.stop)
        tsa_server = tsa.make_server(authority, "127.0.0.1", 0, log=False).start()
        stop.callback(tsa_server.stop)
        log = rekor.RekorService(
            folder / "log.db", material.rekor_key, material.rekor_origin, material.rekor_key_v2
        ).start()
        stop.callback(log.stop)
        urls = {"rekor_url": log.url, "fulcio_url": ca_server.url, "tsa_url": tsa_server.url}
        trust_config = material.write_trust_config(folder / "trust_config.json", urls)
        yield SigStack(name, material, trust_config, urls)


class SigStackPool:
    """Stacks by name, each started on first use and kept until `close()`.

    Args:
        root: a folder for the stacks' files (one subfolder each).
    """

    def __init__(self, root: Path) -> None:
        self._root = root
        self._stacks: dict[str, SigStack] = {}
        self._stop = contextlib.ExitStack()

    def get(self, name: str = "lab") -> SigStack:
        if name not in self._stacks:
            stack = running_sigstack(self._root / name, name=name)
            self._stacks[name] = self._stop.enter_context(stack)
        return self._stacks[name]

    def close(self) -> None:
        self._stop.close()
