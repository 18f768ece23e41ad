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
from cryptography import x509
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
from harness.evidence.manifest import SIGSTORE_TRUST_CONFIG
from harness.evidence.signer import SignatureInvalid

if TYPE_CHECKING:
    from harness.evidence.bundle import EvidenceBundle

_logger = logging.getLogger(__name__)

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
LOG_ENTRY_FILE = "rekor/entry.json"
"""The manifest signature's log entry (entry, inclusion proof, signed checkpoint), written after
signing: it can't be listed in the manifest it logs; verify checks it equals the entry inside the
signature bundle."""

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


def verify_artifact(
    data: bytes, bundle_json: bytes | str, *, trust_config: Path, identity: str, issuer: str
) -> None:
    """Verify a Sigstore bundle over `data` offline against `trust_config`.

    Raises:
        VerificationFailed: the bundle is malformed or does not verify; says why.
    """
    setup = SigningSetup(trust_config, "", identity, issuer)
    trust = setup.load_trust()
    try:
        bundle = Bundle.from_json(bundle_json)
    except (ValueError, SigstoreError) as exc:
        raise VerificationFailed(f"not a Sigstore bundle: {exc}") from exc
    _verify(trust, setup, lambda verifier, pol: verifier.verify_artifact(data, bundle, pol))


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

    def __init__(
        self, trust_config: Path, token: Callable[[], str], identity: str, issuer: str
    ) -> None:
        self._trust_config = trust_config
        self._token = token
        self._identity = identity
        self._issuer = issuer

    signature_file = "manifest.sigstore.json"

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

    def files_after_signing(self, signature: bytes) -> dict[str, bytes]:
        """Files written beside the signature, outside the manifest: the log entry."""
        entries = json.loads(signature)["verificationMaterial"]["tlogEntries"]
        return {LOG_ENTRY_FILE: (json.dumps(entries[0], indent=2, sort_keys=True) + "\n").encode()}

    def evidence_files(self) -> dict[str, bytes]:
        """Files to add to the evidence bundle before its manifest is written."""
        return {SIGSTORE_TRUST_CONFIG: self._trust_config.read_bytes()}


class SigstoreVerifier:
    """Checks a keyless Sigstore bundle offline against a trust config.

    Without a pinned `identity` the certificate's own identity and issuer are checked (the
    chain, SCT, log entry and timestamps still have to verify against the trust config);
    pin them (`cihub evidence verify --identity`) to also check who signed.
    """

    def __init__(
        self, trust_config: Path, *, identity: str | None = None, issuer: str | None = None
    ) -> None:
        self._trust_config = trust_config
        self._identity = identity
        self._issuer = issuer

    def verify(self, data: bytes, bundle: bytes) -> str:
        try:
            parsed = Bundle.from_json(bundle)
        except (ValueError, SigstoreError) as exc:
            raise SignatureInvalid(f"not a Sigstore bundle: {_one_line(exc)}") from exc
        identity, issuer = _certificate_identity(parsed.signing_certificate)
        identity = self._identity or identity
        issuer = self._issuer or issuer
        try:
            verify_artifact(
                data, bundle, trust_config=self._trust_config, identity=identity, issuer=issuer
            )
        except (ConfigError, VerificationFailed) as exc:
            raise SignatureInvalid(str(exc)) from exc
        return f"{identity} ({issuer})"


def record_signature(bundle: EvidenceBundle, name: str, signed: SignedArtifact) -> None:
    """Write `<name>.sigstore.json` and `rekor/entry.json` (log entry, inclusion proof and
    signed checkpoint) into an evidence bundle."""
    bundle.write_bytes(f"{name}.sigstore.json", signed.bundle_json.encode())
    bundle.write_json("rekor/entry.json", signed.log_entry)


_ISSUER_V2_OID = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")


def _certificate_identity(cert: x509.Certificate) -> tuple[str, str]:
    """(SAN identity, OIDC issuer) of a Fulcio certificate."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as exc:
        raise SignatureInvalid("the signing certificate has no subject alternative name") from exc
    names = [*san.get_values_for_type(x509.RFC822Name)]
    names += [*san.get_values_for_type(x509.UniformResourceIdentifier)]
    if not names:
        raise SignatureInvalid("the signing certificate names no email or URI identity")
    try:
        raw = cert.extensions.get_extension_for_oid(_ISSUER_V2_OID).value
    except x509.ExtensionNotFound as exc:
        raise SignatureInvalid("the signing certificate names no OIDC issuer") from exc
    der = raw.value if isinstance(raw, x509.UnrecognizedExtension) else b""
    # A DER UTF8String: tag 0x0C, a short length, then the text.
    issuer = der[2:].decode("utf-8", errors="replace") if der[:1] == b"\x0c" else ""
    return names[0], issuer
