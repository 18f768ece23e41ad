"""Sign what a drill built with Sigstore (sigstore-python), and prove it before saying so.

One code path for the lab and for upstream: the trust config decides where signing goes (the
lab's Fulcio/Rekor/TSA, sigstore/scaffolding's setup, or the staging instance). A signature is
reported only after `sigstore.verify.Verifier` accepted it for the expected identity and issuer.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
import rfc8785
from sigstore import dsse
from sigstore._internal.fulcio.client import ExpiredCertificate, FulcioClientError
from sigstore._internal.rekor import RekorClientError
from sigstore._internal.timestamp import TimestampError
from sigstore.errors import Error as SigstoreError
from sigstore.models import Bundle, ClientTrustConfig
from sigstore.oidc import ExpiredIdentity, IdentityToken
from sigstore.sign import SigningContext
from sigstore.verify import Verifier, policy

from harness.errors import ConfigError, InfraError, VerificationFailed
from harness.evidence.manifest import SIGSTORE_SIGNATURE, SIGSTORE_TRUST_CONFIG

if TYPE_CHECKING:
    from harness.evidence.bundle import EvidenceBundle

_logger = logging.getLogger(__name__)

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"

# sigstore-python's service clients raise these, outside its `Error` hierarchy.
_SIGNING_ERRORS = (
    SigstoreError,
    FulcioClientError,
    RekorClientError,
    TimestampError,
    ExpiredIdentity,
    ExpiredCertificate,
    requests.RequestException,
)


@dataclass(frozen=True)
class SigningSetup:
    """Where to sign and whom to expect.

    Attributes:
        trust_config: a ClientTrustConfig JSON file (the lab writes one per lab).
        identity_token: an OIDC identity token for the signer (`cihub lab token` mints one).
        identity: the identity the certificate must carry (email or URI).
        issuer: the OIDC issuer the certificate must name.
    """

    trust_config: Path
    identity_token: str
    identity: str
    issuer: str

    def load_trust(self) -> ClientTrustConfig:
        try:
            return ClientTrustConfig.from_json(self.trust_config.read_text())
        except OSError as exc:
            raise ConfigError(f"{self.trust_config}: cannot read the trust config") from exc
        except (ValueError, SigstoreError) as exc:
            raise ConfigError(f"{self.trust_config}: not a valid ClientTrustConfig") from exc


@dataclass(frozen=True)
class SignedArtifact:
    """A verified Sigstore bundle and the transparency-log entry it carries."""

    bundle_json: str
    identity: str
    issuer: str

    @property
    def bundle(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.bundle_json)
        return parsed

    @property
    def log_entry(self) -> dict[str, Any]:
        """The tlog entry (protobuf JSON): log index, inclusion proof, signed checkpoint."""
        entries: list[dict[str, Any]] = self.bundle["verificationMaterial"]["tlogEntries"]
        return entries[0]


def sign_artifact(data: bytes, setup: SigningSetup) -> SignedArtifact:
    """Sign `data`, log it, and verify the result for the expected identity.

    Raises:
        ConfigError: the trust config or the token is unusable.
        InfraError: a Sigstore service failed (the message names the client's error).
        VerificationFailed: the fresh signature did not verify.
    """
    trust = setup.load_trust()
    bundle = _sign(trust, setup, lambda signer: signer.sign_artifact(data))
    _verify(trust, setup, lambda verifier, pol: verifier.verify_artifact(data, bundle, pol))
    return SignedArtifact(bundle.to_json(), setup.identity, setup.issuer)


def sign_statement(statement: dict[str, Any], setup: SigningSetup) -> SignedArtifact:
    """Sign an in-toto Statement as a DSSE envelope, log it, and verify the result.

    Raises:
        ConfigError, InfraError, VerificationFailed: as `sign_artifact`.
    """
    trust = setup.load_trust()
    try:
        parsed = dsse.Statement(json.dumps(statement, sort_keys=True).encode())
    except SigstoreError as exc:
        raise ConfigError(f"not an in-toto statement: {exc}") from exc
    bundle = _sign(trust, setup, lambda signer: signer.sign_dsse(parsed))
    _verify(trust, setup, lambda verifier, pol: verifier.verify_dsse(bundle, pol))
    return SignedArtifact(bundle.to_json(), setup.identity, setup.issuer)


def sign_payload(
    payload: bytes, setup: SigningSetup, payload_type: str = IN_TOTO_PAYLOAD_TYPE
) -> SignedArtifact:
    """Sign `payload` (a serialized in-toto Statement) as a DSSE envelope over its exact bytes,
    log it, and verify the result (the envelope must carry those same bytes back).

    Unlike `sign_statement`, nothing is re-serialized: the evidence manifest is signed as the
    RFC 8785 bytes on disk, so a verifier compares the envelope's payload with the file.

    Raises:
        ConfigError, InfraError, VerificationFailed: as `sign_artifact`.
    """
    trust = setup.load_trust()
    try:
        parsed = dsse.Statement(payload)
    except SigstoreError as exc:
        raise ConfigError(f"not an in-toto statement: {exc}") from exc
    bundle = _sign(trust, setup, lambda signer: signer.sign_dsse(parsed))

    def check(verifier: Verifier, pol: policy.VerificationPolicy) -> None:
        signed_type, signed = verifier.verify_dsse(bundle, pol)
        if signed_type != payload_type or signed != payload:
            raise VerificationFailed("the DSSE envelope does not carry the bytes that were signed")

    _verify(trust, setup, check)
    return SignedArtifact(bundle.to_json(), setup.identity, setup.issuer)


def _sign(trust: ClientTrustConfig, setup: SigningSetup, action: Any) -> Bundle:
    try:
        token = IdentityToken(setup.identity_token)
    except (SigstoreError, ExpiredIdentity) as exc:
        raise ConfigError(f"identity token refused by the client: {exc}") from exc
    try:
        context = SigningContext.from_trust_config(trust)
        with context.signer(token, cache=True) as signer:
            bundle: Bundle = action(signer)
    except _SIGNING_ERRORS as exc:
        raise InfraError(f"signing failed: {_one_line(exc)}") from exc
    return bundle


def _verify(trust: ClientTrustConfig, setup: SigningSetup, action: Any) -> None:
    verifier = Verifier(trusted_root=trust.trusted_root)
    identity_policy = policy.Identity(identity=setup.identity, issuer=setup.issuer)
    try:
        action(verifier, identity_policy)
    except SigstoreError as exc:
        raise VerificationFailed(f"signature does not verify: {_one_line(exc)}") from exc


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def trusted_root_digest(trust_config: Path) -> str:
    """`sha256:<hex>` of a trust config's trusted root in RFC 8785 form: names a root briefly.

    Raises:
        ConfigError: the file can't be read or has no trusted root.
    """
    try:
        root = json.loads(trust_config.read_bytes())["trustedRoot"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{trust_config}: no trustedRoot in the trust config") from exc
    return "sha256:" + hashlib.sha256(rfc8785.dumps(root)).hexdigest()


class SigstoreSigner:
    """Signs evidence keylessly: `manifest.json` as a DSSE in-toto attestation (`sign_payload`),
    logged in Rekor, into `manifest.sigstore.json`.

    Plugs into `EvidenceBundle.finalize(signer)`. It saves a copy of the trust config into the
    bundle (`sigstore/trust_config.json`, for information: verify pins its own root), and after
    signing writes the log entry with its inclusion proof to `rekor/entry.json`.

    Args:
        trust_config: the ClientTrustConfig file to sign with.
        token: returns a fresh identity token for each signature (tokens are short-lived).
        identity: the identity the certificate must carry.
        issuer: the OIDC issuer the certificate must name.
    """

    signature_file = SIGSTORE_SIGNATURE

    def __init__(
        self, trust_config: Path, token: Callable[[], str], identity: str, issuer: str
    ) -> None:
        self._trust_config = trust_config
        self._token = token
        self._identity = identity
        self._issuer = issuer

    @property
    def identity(self) -> str:
        return f"{self._identity} ({self._issuer})"

    @property
    def cert_identity(self) -> str:
        """The identity the certificate carries (sigstore's `--cert-identity`)."""
        return self._identity

    @property
    def cert_oidc_issuer(self) -> str:
        """The OIDC issuer the certificate names (sigstore's `--cert-oidc-issuer`)."""
        return self._issuer

    @property
    def trust_root(self) -> str:
        """`sha256:<hex>` of the trusted root signed under (RFC 8785 JSON), for summaries."""
        return trusted_root_digest(self._trust_config)

    def sign(self, data: bytes) -> bytes:
        setup = SigningSetup(self._trust_config, self._token(), self._identity, self._issuer)
        return sign_payload(data, setup).bundle_json.encode()

    def evidence_files(self) -> dict[str, bytes]:
        """Files to add to the evidence bundle before its manifest is written."""
        return {SIGSTORE_TRUST_CONFIG: self._trust_config.read_bytes()}


def record_signature(bundle: EvidenceBundle, name: str, signed: SignedArtifact) -> None:
    """Write `<name>.sigstore.json` and `rekor/<name>.entry.json` (its log entry, inclusion proof
    and signed checkpoint) into an evidence bundle. (`rekor/entry.json` itself is the manifest
    signature's entry, which `finalize` writes.)"""
    bundle.write_bytes(f"{name}.sigstore.json", signed.bundle_json.encode())
    bundle.write_json(f"rekor/{name}.entry.json", signed.log_entry)
