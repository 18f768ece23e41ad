"""The `fulcio` role: a Fulcio-compatible code-signing CA with embedded SCTs.

`python3 -m sigstack fulcio --host 0.0.0.0 --port 5555 --config /etc/cihub/sigstack/fulcio.json`

It speaks the part of Fulcio's v2 HTTP API that Sigstore clients use:

- `POST /api/v2/signingCert`: body `{"certificateSigningRequest": b64(PEM CSR)}` or the
  older `{"publicKeyRequest": {"publicKey": {"content": PEM}, "proofOfPossession": b64}}`,
  the OIDC token in `Authorization: Bearer <JWT>` (or `credentials.oidcIdentityToken`).
  The answer is `{"signedCertificateEmbeddedSct": {"chain": {"certificates": [PEM...]}}}`,
  leaf first, then the issuing intermediate and the root.
- `GET /api/v2/trustBundle`, `GET /api/v2/configuration`, `GET /healthz`.

Errors are `{"code": <gRPC code>, "message": reason}`, as upstream's gRPC gateway writes
them: 400/code 3 for a bad token, CSR, key or proof of possession (upstream's messages, then
the specific reason), 404/code 5, 405/code 12, 500/code 13. No certificate is ever sent then.

The leaf follows Fulcio's profile: empty subject, critical SAN (email or URI), critical
KeyUsage digitalSignature, EKU codeSigning, SKI, AKI, the OIDC issuer in extensions
1.3.6.1.4.1.57264.1.1 (raw) and .1.8 (UTF8String), and exactly one embedded precertificate
SCT signed with the lab's CT key. The SCT is computed over the TBS of a first signing; the SCT
list extension is then appended last and the certificate signed again, so the final TBS minus
that extension is byte-identical to what the SCT covers (checked before answering).

Config file (JSON; relative paths are resolved against the config file's folder):

    {"ca_key": "ca-key.pem",            # private key of the issuing CA (chain[0])
     "ca_chain": "ca-chain.pem",        # PEM: issuing intermediate first, then up to the root
     "ct_key": "ct-key.pem",            # ECDSA P-256 key whose SPKI the trusted root's ctlogs list
     "oidc_issuers": [{"issuer": "https://oidc.lab.cihub", "public_key": "oidc-issuer.pem"}],
     "audience": "sigstore", "cert_lifetime_seconds": 600, "clock_skew_seconds": 60}
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import logging
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from . import jwt
from .configfile import read_json
from .http import (
    Handler,
    HttpError,
    Request,
    Response,
    Server,
    json_response,
    serve_until_signal,
    text_response,
)
from .sct import SctSigner, sct_list_extension_value
from .x509util import (
    OID_FULCIO_ISSUER_V1,
    OID_FULCIO_ISSUER_V2,
    OID_SCT_LIST,
    PrivateKey,
    PublicKey,
    certificate_pem,
    der_utf8_string,
    load_certificates,
    load_private_key,
    load_public_key,
    signature_hash_for,
    spki_der,
    spki_sha256,
    utc_now,
)

_logger = logging.getLogger(__name__)

ROLE = "fulcio"
DEFAULT_PORT = 5555
DEFAULT_CONFIG = "/etc/cihub/sigstack/fulcio.json"

# gRPC status codes, as upstream's gateway puts them in error bodies.
CODE_INVALID_ARGUMENT = 3
CODE_NOT_FOUND = 5
CODE_UNIMPLEMENTED = 12
CODE_INTERNAL = 13

# Upstream's client-facing messages (sigstore/fulcio pkg/server/error.go).
INVALID_IDENTITY_TOKEN = "There was an error processing the identity token"
INVALID_CSR = "The certificate signing request could not be parsed"
INVALID_PUBLIC_KEY = "The public key supplied in the request could not be parsed"
INSECURE_PUBLIC_KEY = "The public key supplied in the request is insecure"
INVALID_SIGNATURE = "The signature supplied in the request could not be verified"
GENERIC_CA_ERROR = "error communicating with CA backend"


class FulcioError(HttpError):
    """A refused request: HTTP status, gRPC code and message, answered as
    `{"code": code, "message": message}` by `http.Server`."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(status, message, code)


def _bad_request(message: str, reason: str | None = None) -> FulcioError:
    text = message if reason is None else f"{message}: {reason}"
    return FulcioError(400, CODE_INVALID_ARGUMENT, text)


# -- configuration -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FulcioConfig:
    """What the role needs, as read from its JSON config file."""

    ca_key: Path
    ca_chain: Path
    ct_key: Path
    oidc_issuers: Mapping[str, Path]
    audience: str = "sigstore"
    cert_lifetime_seconds: int = 600
    clock_skew_seconds: int = 60

    @classmethod
    def from_file(cls, path: Path) -> FulcioConfig:
        """Read a config file; relative paths are taken from the file's folder.

        Raises:
            OSError: the file can't be read.
            ValueError: it is not JSON or misses a field (the message names it).
        """
        return cls.from_json(read_json(path), base=path.parent, source=str(path))

    @classmethod
    def from_json(cls, raw: Any, *, base: Path, source: str = "config") -> FulcioConfig:
        """Build from parsed JSON; see the module docstring for the fields.

        Raises:
            ValueError: a missing or mistyped field (the message names it).
        """
        if not isinstance(raw, dict):
            raise ValueError(f"{source}: must be a JSON object")

        def path_field(value: Any, name: str) -> Path:
            if not isinstance(value, str) or not value:
                raise ValueError(f"{source}: {name} must be a non-empty string path")
            return base / value

        issuers: dict[str, Path] = {}
        raw_issuers = raw.get("oidc_issuers")
        if not isinstance(raw_issuers, list) or not raw_issuers:
            raise ValueError(f"{source}: oidc_issuers must be a non-empty list")
        for index, item in enumerate(raw_issuers):
            where = f"oidc_issuers[{index}]"
            if not isinstance(item, dict) or not isinstance(item.get("issuer"), str):
                raise ValueError(f"{source}: {where}.issuer must be a string")
            issuers[item["issuer"]] = path_field(item.get("public_key"), f"{where}.public_key")

        def int_field(name: str, default: int) -> int:
            value = raw.get(name, default)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{source}: {name} must be a positive integer")
            return int(value)  # mypy 1.x does not narrow Any through the isinstance checks

        audience = raw.get("audience", "sigstore")
        if not isinstance(audience, str) or not audience:
            raise ValueError(f"{source}: audience must be a non-empty string")
        return cls(
            ca_key=path_field(raw.get("ca_key"), "ca_key"),
            ca_chain=path_field(raw.get("ca_chain"), "ca_chain"),
            ct_key=path_field(raw.get("ct_key"), "ct_key"),
            oidc_issuers=issuers,
            audience=audience,
            cert_lifetime_seconds=int_field("cert_lifetime_seconds", 600),
            clock_skew_seconds=int_field("clock_skew_seconds", 60),
        )


# -- identities --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """Who a verified token names, and how the certificate's SAN will say it."""

    issuer: str
    kind: str  # "email" or "uri"
    value: str

    def san(self) -> x509.GeneralName:
        if self.kind == "email":
            return x509.RFC822Name(self.value)
        return x509.UniformResourceIdentifier(self.value)


def principal_from_claims(claims: Mapping[str, Any], issuer: str) -> Principal:
    """The identity of a verified token, as upstream Fulcio derives it for email/URI issuers.

    An email SAN comes only from a verified `email` claim (`email_verified: true`), as
    upstream's email issuers do; a `sub` that merely looks like an address is refused.
    Otherwise a URI `sub` (`scheme://host...`) becomes a URI SAN. sigstore-python takes `sub`
    as the identity of any issuer it doesn't know, so lab tokens carry both.

    Raises:
        FulcioError: 400 when no usable identity is in the claims.
    """
    email = claims.get("email")
    if email is not None:
        if not isinstance(email, str) or "@" not in email:
            raise _bad_request(INVALID_IDENTITY_TOKEN, "email claim is not an email address")
        if claims.get("email_verified") is not True:
            raise _bad_request(INVALID_IDENTITY_TOKEN, "email_verified claim is not true")
        return Principal(issuer, "email", email)
    sub = str(claims.get("sub", ""))
    parts = urlsplit(sub)
    if parts.scheme and parts.netloc:
        return Principal(issuer, "uri", sub)
    if "@" in sub:
        raise _bad_request(
            INVALID_IDENTITY_TOKEN,
            "token has no verified email claim (an email identity needs email and "
            "email_verified: true; sub is not used as an email)",
        )
    raise _bad_request(
        INVALID_IDENTITY_TOKEN, "token has no email claim and its sub is neither email nor URI"
    )


def check_public_key(key: Any) -> PublicKey:
    """Refuse key types and sizes upstream Fulcio refuses (cryptoutils.ValidatePubKey).

    Raises:
        FulcioError: 400 for an unsupported or weak key.
    """
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1 | ec.SECP384R1 | ec.SECP521R1):
            raise _bad_request(INSECURE_PUBLIC_KEY, f"unsupported curve {key.curve.name}")
        return key
    if isinstance(key, rsa.RSAPublicKey):
        if not 2048 <= key.key_size <= 4096:
            raise _bad_request(INSECURE_PUBLIC_KEY, f"RSA key size {key.key_size}")
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    raise _bad_request(INSECURE_PUBLIC_KEY, f"unsupported key type {type(key).__name__}")


def _verify_proof(key: PublicKey, proof: bytes, challenge: bytes) -> None:
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            hash_algorithm = signature_hash_for(key) or hashes.SHA256()
            key.verify(proof, challenge, ec.ECDSA(hash_algorithm))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(proof, challenge, padding.PKCS1v15(), hashes.SHA256())
        else:
            key.verify(proof, challenge)
    except InvalidSignature as exc:
        raise _bad_request(INVALID_SIGNATURE, "proof of possession does not verify") from exc


def _b64decode(value: Any, what: str, message: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise _bad_request(message, f"{what} is missing")
    text = value.strip()
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _bad_request(message, f"{what} is not base64") from exc


# -- the CA ------------------------------------------------------------------------------------


@dataclass
class FulcioCA:
    """The certificate authority: checks tokens and proofs, issues leaves with one SCT.

    Example:
        ca = FulcioCA.from_config(FulcioConfig.from_file(Path("fulcio.json")))
        chain = ca.issue(ca.authenticate(token), csr.public_key())
    """

    ca_key: PrivateKey
    chain: list[x509.Certificate]
    sct_signer: SctSigner
    issuer_keys: Mapping[str, ec.EllipticCurvePublicKey]
    audience: str = "sigstore"
    lifetime: timedelta = field(default_factory=lambda: timedelta(minutes=10))
    clock_skew: float = 60.0
    issued: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if not self.chain:
            raise ValueError("the CA chain is empty")
        if spki_der(self.ca_key.public_key()) != spki_der(self.issuing_cert.public_key()):
            raise ValueError("the CA key does not match the first certificate of the chain")
        self._issuer_key_hash = spki_sha256(self.issuing_cert.public_key())

    @property
    def issuing_cert(self) -> x509.Certificate:
        return self.chain[0]

    @classmethod
    def from_config(cls, config: FulcioConfig) -> FulcioCA:
        """Load keys and chain named by a config.

        Raises:
            OSError: a file can't be read.
            ValueError: a file holds the wrong kind of key or certificate.
        """
        ct_key = load_private_key(config.ct_key)
        if not isinstance(ct_key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{config.ct_key}: the CT key must be ECDSA P-256")
        issuer_keys: dict[str, ec.EllipticCurvePublicKey] = {}
        for issuer, key_path in config.oidc_issuers.items():
            key = load_public_key(key_path)
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise ValueError(f"{key_path}: the OIDC issuer key must be ECDSA P-256 (ES256)")
            issuer_keys[issuer] = key
        return cls(
            ca_key=load_private_key(config.ca_key),
            chain=load_certificates(config.ca_chain),
            sct_signer=SctSigner(ct_key),
            issuer_keys=issuer_keys,
            audience=config.audience,
            lifetime=timedelta(seconds=config.cert_lifetime_seconds),
            clock_skew=float(config.clock_skew_seconds),
        )

    # -- requests --

    def authenticate(self, token: str, *, now: float | None = None) -> Principal:
        """Verify an OIDC token from a known issuer and return whom it names.

        Raises:
            FulcioError: 400 with the reason the token is refused.
        """
        if not token:
            raise _bad_request(INVALID_IDENTITY_TOKEN, "no identity token in the request")
        try:
            _, unverified = jwt.decode_unverified(token)
            issuer = unverified.get("iss")
            key = self.issuer_keys.get(issuer) if isinstance(issuer, str) else None
            if key is None or not isinstance(issuer, str):
                raise jwt.JwtError(f"token issuer {issuer!r} is not configured")
            claims = jwt.verify(
                token, key, issuer=issuer, audience=self.audience, now=now, leeway=self.clock_skew
            )
        except jwt.JwtError as exc:
            raise _bad_request(INVALID_IDENTITY_TOKEN, str(exc)) from exc
        return principal_from_claims(claims, issuer)

    def key_from_csr(self, csr_bytes: bytes) -> PublicKey:
        """The public key of a PEM (or DER) CSR whose self-signature verifies.

        Raises:
            FulcioError: 400 for an unparsable CSR, a weak key or a bad signature.
        """
        try:
            if csr_bytes.lstrip().startswith(b"-----BEGIN"):
                csr = x509.load_pem_x509_csr(csr_bytes)
            else:
                csr = x509.load_der_x509_csr(csr_bytes)
            public_key = csr.public_key()
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise _bad_request(INVALID_CSR, str(exc) or "malformed CSR") from exc
        key = check_public_key(public_key)
        try:
            valid = csr.is_signature_valid
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise _bad_request(INVALID_SIGNATURE, str(exc)) from exc
        if not valid:
            raise _bad_request(INVALID_SIGNATURE, "the CSR's signature does not verify")
        return key

    def key_from_public_key_request(self, request: Any, principal: Principal) -> PublicKey:
        """The key of a `publicKeyRequest` whose proof signs the principal's name.

        Raises:
            FulcioError: 400 for a missing/unparsable key, a weak key or a bad proof.
        """
        if not isinstance(request, dict):
            raise _bad_request(INVALID_PUBLIC_KEY, "publicKeyRequest must be an object")
        public = request.get("publicKey")
        content = public.get("content") if isinstance(public, dict) else None
        if not isinstance(content, str) or not content:
            raise _bad_request(INVALID_PUBLIC_KEY, "publicKey.content is missing")
        try:
            if content.lstrip().startswith("-----BEGIN"):
                loaded: Any = serialization.load_pem_public_key(content.encode())
            else:
                loaded = serialization.load_der_public_key(base64.b64decode(content))
        except (ValueError, UnsupportedAlgorithm, binascii.Error) as exc:
            raise _bad_request(INVALID_PUBLIC_KEY, str(exc) or "malformed key") from exc
        key = check_public_key(loaded)
        proof = _b64decode(request.get("proofOfPossession"), "proofOfPossession", INVALID_SIGNATURE)
        _verify_proof(key, proof, principal.value.encode("utf-8"))
        return key

    def handle_signing_request(self, body: bytes, authorization: str | None) -> list[str]:
        """Answer one `POST /api/v2/signingCert` body: the PEM chain, leaf first.

        Raises:
            FulcioError: 4xx for anything wrong with the request, 500 if issuing fails.
        """
        try:
            request = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _bad_request("request body is not JSON", str(exc)) from exc
        if not isinstance(request, dict):
            raise _bad_request("request body must be a JSON object")
        token = ""
        credentials = request.get("credentials")
        if isinstance(credentials, dict) and isinstance(credentials.get("oidcIdentityToken"), str):
            token = credentials["oidcIdentityToken"]
        if not token and authorization:
            scheme, _, value = authorization.strip().partition(" ")
            if scheme.lower() == "bearer":
                token = value.strip()
        principal = self.authenticate(token)
        if request.get("certificateSigningRequest"):
            csr = _b64decode(
                request["certificateSigningRequest"], "certificateSigningRequest", INVALID_CSR
            )
            public_key = self.key_from_csr(csr)
        elif "publicKeyRequest" in request:
            public_key = self.key_from_public_key_request(request["publicKeyRequest"], principal)
        else:
            raise _bad_request(
                INVALID_CSR, "neither certificateSigningRequest nor publicKeyRequest"
            )
        return [certificate_pem(cert) for cert in self.issue(principal, public_key)]

    # -- issuing --

    def issue(
        self, principal: Principal, public_key: PublicKey, *, now: datetime | None = None
    ) -> list[x509.Certificate]:
        """A leaf for `public_key` naming `principal`, with one embedded SCT; then the chain.

        Raises:
            FulcioError: 500 if the final certificate doesn't carry the SCT'd TBS.
        """
        start = now or utc_now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.issuing_cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + self.lifetime)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False)
            .add_extension(self._authority_key_identifier(), critical=False)
            .add_extension(x509.SubjectAlternativeName([principal.san()]), critical=True)
            .add_extension(
                x509.UnrecognizedExtension(OID_FULCIO_ISSUER_V1, principal.issuer.encode()),
                critical=False,
            )
            .add_extension(
                x509.UnrecognizedExtension(OID_FULCIO_ISSUER_V2, der_utf8_string(principal.issuer)),
                critical=False,
            )
        )
        algorithm = signature_hash_for(self.ca_key)
        precert = builder.sign(self.ca_key, algorithm)
        precert_tbs = precert.tbs_certificate_bytes
        sct = self.sct_signer.sign_precert(precert_tbs, self._issuer_key_hash)
        final = builder.add_extension(
            x509.UnrecognizedExtension(OID_SCT_LIST, sct_list_extension_value([sct])),
            critical=False,
        ).sign(self.ca_key, algorithm)
        if final.tbs_precertificate_bytes != precert_tbs:
            raise FulcioError(500, CODE_INTERNAL, GENERIC_CA_ERROR)
        with self._lock:
            self.issued += 1
        return [final, *self.chain]

    def _authority_key_identifier(self) -> x509.AuthorityKeyIdentifier:
        try:
            ski = self.issuing_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        except x509.ExtensionNotFound:
            return x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.issuing_cert.public_key()  # type: ignore[arg-type]
            )
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)

    def trust_bundle(self) -> dict[str, Any]:
        """`GET /api/v2/trustBundle`: the CA chain."""
        return {"chains": [{"certificates": [certificate_pem(cert) for cert in self.chain]}]}

    def configuration(self) -> dict[str, Any]:
        """`GET /api/v2/configuration`: the accepted issuers."""
        return {
            "issuers": [
                {"issuerUrl": issuer, "audience": self.audience, "challengeClaim": "email"}
                for issuer in sorted(self.issuer_keys)
            ]
        }


# -- HTTP --------------------------------------------------------------------------------------


def make_handler(ca: FulcioCA) -> Handler:
    """The role's HTTP routes over one CA, for `http.Server`."""

    def handle(request: Request) -> Response:
        path = request.path
        if path == "/api/v2/signingCert":
            if request.method != "POST":
                raise FulcioError(405, CODE_UNIMPLEMENTED, "Method Not Allowed")
            try:
                chain = ca.handle_signing_request(
                    request.body, request.headers.get("authorization")
                )
            except FulcioError as exc:
                _logger.info("refused %s from %s: %s", path, request.client, exc.message)
                raise
            return json_response(
                {"signedCertificateEmbeddedSct": {"chain": {"certificates": chain}}}
            )
        if path == "/api/v1/signingCert":
            # The legacy API: same checks, the chain as PEM text (201), SCT embedded.
            if request.method != "POST":
                raise FulcioError(405, CODE_UNIMPLEMENTED, "Method Not Allowed")
            chain = ca.handle_signing_request(
                _legacy_request(request.body), request.headers.get("authorization")
            )
            return text_response(
                "".join(chain), 201, content_type="application/pem-certificate-chain"
            )
        if path == "/api/v1/rootCert":
            if request.method not in ("GET", "HEAD"):
                raise FulcioError(405, CODE_UNIMPLEMENTED, "Method Not Allowed")
            pems = "".join(certificate_pem(cert) for cert in ca.chain)
            return text_response(pems, content_type="application/pem-certificate-chain")
        routes = {
            "/healthz": lambda: {"status": "ok", "role": ROLE, "issued": ca.issued},
            "/api/v2/trustBundle": ca.trust_bundle,
            "/api/v2/configuration": ca.configuration,
        }
        if path in routes:
            if request.method not in ("GET", "HEAD"):
                raise FulcioError(405, CODE_UNIMPLEMENTED, "Method Not Allowed")
            return json_response(routes[path]())
        raise FulcioError(404, CODE_NOT_FOUND, "Not Found")

    return handle


def _legacy_request(body: bytes) -> bytes:
    """A v1 `CertificateRequest` ({publicKey: {content, algorithm}, signedEmailAddress} or
    {certificateSigningRequest}) in the v2 body's shape; anything else is left for the v2
    checks to refuse."""
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return body
    if not isinstance(request, dict) or "publicKey" not in request:
        return body
    converted = {
        "publicKeyRequest": {
            "publicKey": request.get("publicKey"),
            "proofOfPossession": request.get("signedEmailAddress"),
        }
    }
    return json.dumps(converted).encode()


def make_server(
    ca: FulcioCA, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *, log: bool = True
) -> Server:
    """The role's HTTP server (port 0 picks a free one); `start()` it or `serve_until_signal`.

    Example:
        server = make_server(ca, "127.0.0.1", 0).start()
        ... requests.post(server.url + "/api/v2/signingCert", ...) ...
        server.stop()
    """
    return Server(make_handler(ca), host, port, name=ROLE, log=log)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the role: `fulcio [--host H] [--port P] [--config FILE]`.

    Returns 0 after SIGTERM/SIGINT, 2 for a bad config file.
    """
    parser = argparse.ArgumentParser(prog=f"sigstack {ROLE}", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--config", type=Path, default=Path(DEFAULT_CONFIG))
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format=ROLE + " %(message)s")
    try:
        ca = FulcioCA.from_config(FulcioConfig.from_file(args.config))
    except (OSError, ValueError) as exc:
        print(f"sigstack {ROLE}: {exc}", file=sys.stderr)
        return 2
    server = make_server(ca, args.host, args.port)
    server.log(f"issuing under {ca.issuing_cert.subject.rfc4514_string()}")
    return serve_until_signal(server, lambda: server.log(f"issued {ca.issued} certificates"))
