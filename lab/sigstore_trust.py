"""The lab's Sigstore trust material: per-lab keys, service files, trust config, tokens.

At lab start, `LabTrustMaterial.generate()` makes fresh keys and certificates, all marked
"CIHUB LAB ONLY - NOT FOR PRODUCTION" in their subjects:

- Fulcio: a root CA and an intermediate CA (ECDSA P-384) that issues the leaves;
- the CT key (ECDSA P-256) that signs each leaf's embedded SCT, listed under `ctlogs`;
- the OIDC issuer key (ECDSA P-256, ES256) that signs identity tokens;
- the TSA: a root CA (P-384) and a signing leaf (P-256, critical EKU timeStamping);
- Rekor: an ECDSA P-256 key for the v1 API (SETs, checkpoints) and an Ed25519 key for v2
  (C2SP checkpoints).

`write_service_files()` lays out what each container needs (`fulcio/`, `tsa/`, `rekor/`);
`client_trust_config()` / `write_trust_config()` produce the `ClientTrustConfig` JSON that
unmodified Sigstore clients take with `--trust-config`; `mint_identity_token()` makes an OIDC
token for the lab's issuer. `save()`/`load()` keep the whole material (private keys included)
in one folder, so another process (`cihub lab token`) can mint tokens later.

How the trusted root ties keys to log ids:

- `tlogs[v1].logId.keyId` = SHA-256(DER SPKI of the v1 key): Rekor v1's log id, which
  sigstore-python matches against an entry's `logID` and a checkpoint's key hint.
- `tlogs[v2].logId.keyId` = the C2SP key id SHA-256(origin || 0x0A || 0x01 || raw Ed25519
  key); its first 4 bytes are the v2 checkpoint's key hint. `origin` is `rekor_origin`, which
  the rekor role must use as its v2 checkpoint origin (it is in `rekor/rekor.json`).

The trusted root is stable: its `baseUrl`s and `uri`s are fixed names
(`https://rekor.cihub.lab` for v1, `https://<rekor_origin>` for v2, ...), never a lab's ports,
so the same material gives the same trusted root for every lab. Clients derive a log's
checkpoint origin from its `baseUrl` host name (sigstore-go's note verifier for v2; rekor v1
signs "<host> - <treeID>" under the name <host>), so the rekor role is started with exactly
those names. Only the signing config carries a lab's `http://127.0.0.1:PORT` URLs.
- `ctlogs[0].logId.keyId` = SHA-256(DER SPKI of the CT key) = the SCTs' log id.
- sigstore-python's keyrings index keys by SHA-256(SPKI) and fall back to trying every key,
  so a wrong key (not a wrong id) is what makes verification fail.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab.errors import LabError
from lab.services.sigstack import jwt
from lab.services.sigstack.x509util import (
    LAB_ONLY,
    certificate_der,
    certificates_pem,
    load_certificates,
    load_private_key,
    private_key_pem,
    public_key_pem,
    rfc3339,
    signature_hash_for,
    spki_der,
    spki_sha256,
    utc_now,
    write_private,
)

DEFAULT_IDENTITY = "lab@cihub.test"
DEFAULT_ISSUER = "https://oidc.lab.cihub"
DEFAULT_REKOR_ORIGIN = "rekor-v2.cihub.lab"
"""The Rekor v2 checkpoint origin (and C2SP key name): the host name of the v2 `baseUrl`."""
REKOR_V1_NAME = "rekor.cihub.lab"
"""The Rekor v1 key name (checkpoint origin "<name> - <treeID>"): the v1 `baseUrl` host."""
FULCIO_BASE_URL = "https://fulcio.cihub.lab"
CT_BASE_URL = "https://ctfe.cihub.lab"
TSA_BASE_URL = "https://tsa.cihub.lab"
AUDIENCE = "sigstore"
OPERATOR = "cihub-lab"
TSA_POLICY = "1.3.6.1.4.1.57264.2"
BACKDATE = timedelta(minutes=5)
"""Certificates and `validFor` windows start this long before `valid_from` (clock skew)."""
CA_LIFETIME = timedelta(days=3650)

TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
SIGNING_CONFIG_MEDIA_TYPE = "application/vnd.dev.sigstore.signingconfig.v0.2+json"
CLIENT_TRUST_CONFIG_MEDIA_TYPE = "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json"

_MATERIAL_FILE = "material.json"
_RETIRED_V2_FILE = "rekor-key-v2-retired-{}.pub.pem"
_KEY_FILES = {
    "fulcio_root_key": "fulcio-root-key.pem",
    "fulcio_intermediate_key": "fulcio-intermediate-key.pem",
    "ct_key": "ct-key.pem",
    "oidc_key": "oidc-issuer-key.pem",
    "tsa_root_key": "tsa-root-key.pem",
    "tsa_key": "tsa-key.pem",
    "rekor_key": "rekor-key.pem",
    "rekor_key_v2": "rekor-key-v2.pem",
}
_CERT_FILES = {
    "fulcio_root": "fulcio-root.pem",
    "fulcio_intermediate": "fulcio-intermediate.pem",
    "tsa_root": "tsa-root.pem",
    "tsa_cert": "tsa-cert.pem",
}


class TrustMaterialError(LabError):
    """Trust material that can't be made, read or used as asked; the message says which."""


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, LAB_ONLY),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _certificate(
    *,
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    not_before: datetime,
    path_length: int | None = None,
    ca: bool = True,
    eku: Sequence[x509.ObjectIdentifier] = (),
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(_key_usage(cert_sign=ca), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if issuer is not None:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=True)
    return builder.sign(issuer_key, signature_hash_for(issuer_key))


def c2sp_ed25519_key_id(name: str, key: ed25519.Ed25519PublicKey) -> bytes:
    """The C2SP signed-note key id of an Ed25519 key: SHA-256(name || 0x0A || 0x01 || key)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(name.encode("utf-8") + b"\n\x01" + raw).digest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _base_url(url: str) -> str:
    return url.rstrip("/")


def _host_name(name: str) -> bool:
    """A DNS-style host name (what a `baseUrl` host and a C2SP key name can both be)."""
    labels = name.split(".")
    return (
        bool(name)
        and len(name) <= 253
        and all(
            label and len(label) <= 63 and label.replace("-", "").isalnum() and label.isascii()
            for label in labels
        )
    )


def _versions(rekor_versions: Sequence[int]) -> list[int]:
    versions = sorted(set(rekor_versions))
    if not versions or any(v not in (1, 2) for v in versions):
        raise TrustMaterialError(f"rekor_versions must be 1 and/or 2, not {rekor_versions}")
    return versions


@dataclass(frozen=True)
class RetiredLogKey:
    """A Rekor v2 log key that was rotated out: still in the trusted root, so entries it
    signed keep verifying, with its validity window closed at the rotation (`validFor.end`)."""

    key: ed25519.Ed25519PublicKey
    start: datetime
    end: datetime


@dataclass(frozen=True)
class LabTrustMaterial:
    """One lab's keys and certificates, and what clients and services derive from them.

    Example:
        material = LabTrustMaterial.generate()
        material.write_service_files(Path("/tmp/lab/services"))
        material.write_trust_config(
            Path("/tmp/lab/trust_config.json"),
            {"rekor_url": rekor, "fulcio_url": fulcio, "tsa_url": tsa},
        )
        token = material.mint_identity_token()
    """

    identity: str
    issuer: str
    valid_from: datetime
    rekor_origin: str
    fulcio_root_key: ec.EllipticCurvePrivateKey
    fulcio_root: x509.Certificate
    fulcio_intermediate_key: ec.EllipticCurvePrivateKey
    fulcio_intermediate: x509.Certificate
    ct_key: ec.EllipticCurvePrivateKey
    oidc_key: ec.EllipticCurvePrivateKey
    tsa_root_key: ec.EllipticCurvePrivateKey
    tsa_root: x509.Certificate
    tsa_key: ec.EllipticCurvePrivateKey
    tsa_cert: x509.Certificate
    rekor_key: ec.EllipticCurvePrivateKey
    rekor_key_v2: ed25519.Ed25519PrivateKey
    rekor_v1_name: str = REKOR_V1_NAME
    rekor_v2_since: datetime | None = None
    """When the current v2 key took over (None: since `valid_from`, never rotated)."""
    retired_rekor_v2: tuple[RetiredLogKey, ...] = ()
    """Earlier v2 keys, oldest first."""

    # -- making and keeping --

    @classmethod
    def generate(
        cls,
        *,
        identity: str = DEFAULT_IDENTITY,
        issuer: str = DEFAULT_ISSUER,
        valid_from: datetime | None = None,
        rekor_origin: str = DEFAULT_REKOR_ORIGIN,
    ) -> LabTrustMaterial:
        """Make fresh lab-only keys and certificates.

        Args:
            identity: the default identity of minted tokens (an email or a URI).
            issuer: the OIDC issuer URL tokens carry and Fulcio accepts.
            valid_from: when the material becomes valid (default: now); certificates and
                `validFor` windows start `BACKDATE` earlier.
            rekor_origin: the Rekor v2 checkpoint origin (C2SP key name).

        Raises:
            TrustMaterialError: an empty identity, issuer or origin.

        Example:
            material = LabTrustMaterial.generate(identity="https://ci.lab/workflow")
        """
        if not identity or not issuer or not _host_name(rekor_origin):
            raise TrustMaterialError(
                "identity and issuer must be non-empty, rekor_origin a host name"
            )
        start = (valid_from or utc_now()).astimezone(UTC).replace(microsecond=0)
        not_before = start - BACKDATE

        def p256() -> ec.EllipticCurvePrivateKey:
            return ec.generate_private_key(ec.SECP256R1())

        def p384() -> ec.EllipticCurvePrivateKey:
            return ec.generate_private_key(ec.SECP384R1())

        fulcio_root_key, fulcio_intermediate_key, tsa_root_key = p384(), p384(), p384()
        tsa_key = p256()
        fulcio_root = _certificate(
            subject=_name("cihub lab fulcio root"),
            key=fulcio_root_key,
            issuer=None,
            issuer_key=fulcio_root_key,
            not_before=not_before,
            path_length=1,
        )
        fulcio_intermediate = _certificate(
            subject=_name("cihub lab fulcio intermediate"),
            key=fulcio_intermediate_key,
            issuer=fulcio_root,
            issuer_key=fulcio_root_key,
            not_before=not_before,
            path_length=0,
        )
        tsa_root = _certificate(
            subject=_name("cihub lab tsa root"),
            key=tsa_root_key,
            issuer=None,
            issuer_key=tsa_root_key,
            not_before=not_before,
            path_length=0,
        )
        tsa_cert = _certificate(
            subject=_name("cihub lab tsa"),
            key=tsa_key,
            issuer=tsa_root,
            issuer_key=tsa_root_key,
            not_before=not_before,
            ca=False,
            eku=[ExtendedKeyUsageOID.TIME_STAMPING],
        )
        return cls(
            identity=identity,
            issuer=issuer,
            valid_from=start,
            rekor_origin=rekor_origin,
            fulcio_root_key=fulcio_root_key,
            fulcio_root=fulcio_root,
            fulcio_intermediate_key=fulcio_intermediate_key,
            fulcio_intermediate=fulcio_intermediate,
            ct_key=p256(),
            oidc_key=p256(),
            tsa_root_key=tsa_root_key,
            tsa_root=tsa_root,
            tsa_key=tsa_key,
            tsa_cert=tsa_cert,
            rekor_key=p256(),
            rekor_key_v2=ed25519.Ed25519PrivateKey.generate(),
        )

    def save(self, directory: Path) -> Path:
        """Keep the whole material (private keys 0600) in `directory`, for `load`.

        Returns:
            The folder.

        Example:
            material.save(state_dir / "sigstore")
        """
        directory.mkdir(parents=True, exist_ok=True)
        for attr, filename in _KEY_FILES.items():
            write_private(directory / filename, private_key_pem(getattr(self, attr)))
        for attr, filename in _CERT_FILES.items():
            (directory / filename).write_text(certificates_pem([getattr(self, attr)]))
        meta: dict[str, Any] = {
            "identity": self.identity,
            "issuer": self.issuer,
            "valid_from": rfc3339(self.valid_from),
            "rekor_origin": self.rekor_origin,
            "rekor_v1_name": self.rekor_v1_name,
            "note": LAB_ONLY,
        }
        if self.rekor_v2_since is not None:
            meta["rekor_v2_since"] = rfc3339(self.rekor_v2_since)
        retired = []
        for number, old in enumerate(self.retired_rekor_v2, 1):
            name = _RETIRED_V2_FILE.format(number)
            (directory / name).write_bytes(public_key_pem(old.key))
            retired.append({"key": name, "start": rfc3339(old.start), "end": rfc3339(old.end)})
        if retired:
            meta["retired_rekor_v2"] = retired
        _write_json(directory / _MATERIAL_FILE, meta)
        return directory

    @classmethod
    def load(cls, directory: Path) -> LabTrustMaterial:
        """Read material written by `save`.

        Raises:
            TrustMaterialError: a file is missing or holds the wrong thing (named).

        Example:
            material = LabTrustMaterial.load(state_dir / "sigstore")
        """
        try:
            meta = json.loads((directory / _MATERIAL_FILE).read_text(encoding="utf-8"))
            fields: dict[str, Any] = {
                "identity": str(meta["identity"]),
                "issuer": str(meta["issuer"]),
                "valid_from": datetime.fromisoformat(meta["valid_from"].replace("Z", "+00:00")),
                "rekor_origin": str(meta["rekor_origin"]),
                "rekor_v1_name": str(meta.get("rekor_v1_name", REKOR_V1_NAME)),
                "rekor_v2_since": _time(meta["rekor_v2_since"])
                if "rekor_v2_since" in meta
                else None,
                "retired_rekor_v2": tuple(
                    _retired(directory, item) for item in meta.get("retired_rekor_v2", [])
                ),
            }
            for attr, filename in _KEY_FILES.items():
                fields[attr] = load_private_key(directory / filename)
            for attr, filename in _CERT_FILES.items():
                fields[attr] = load_certificates(directory / filename)[0]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise TrustMaterialError(f"{directory}: unreadable trust material: {exc}") from exc
        if not isinstance(fields["rekor_key_v2"], ed25519.Ed25519PrivateKey):
            raise TrustMaterialError(f"{directory}: {_KEY_FILES['rekor_key_v2']} is not Ed25519")
        for attr in _KEY_FILES:
            if attr != "rekor_key_v2" and not isinstance(fields[attr], ec.EllipticCurvePrivateKey):
                raise TrustMaterialError(f"{directory}: {_KEY_FILES[attr]} is not an EC key")
        return cls(**fields)

    def rotate_rekor_v2_key(self, now: datetime | None = None) -> LabTrustMaterial:
        """The same material with a fresh Rekor v2 log key from `now` (default: the current
        time); the old key is kept as retired, valid until `now`.

        Example:
            rotated = material.rotate_rekor_v2_key()
            rotated.trusted_root()["tlogs"]  # v1, v2 (new key), v2 (old key, validFor.end)
        """
        when = (now or utc_now()).astimezone(UTC).replace(microsecond=0)
        start = self.rekor_v2_since or self.valid_from - BACKDATE
        if when <= start:
            raise TrustMaterialError(
                f"a key rotation at {rfc3339(when)} is not after {rfc3339(start)}"
            )
        old = RetiredLogKey(self.rekor_key_v2.public_key(), start, when)
        return dataclasses.replace(
            self,
            rekor_key_v2=ed25519.Ed25519PrivateKey.generate(),
            rekor_v2_since=when,
            retired_rekor_v2=(*self.retired_rekor_v2, old),
        )

    # -- ids --

    @property
    def rekor_log_id(self) -> bytes:
        """Rekor v1's log id: SHA-256 of the v1 key's DER SPKI."""
        return spki_sha256(self.rekor_key.public_key())

    @property
    def rekor_v2_log_id(self) -> bytes:
        """Rekor v2's log id: the C2SP key id of the Ed25519 key under `rekor_origin`."""
        return c2sp_ed25519_key_id(self.rekor_origin, self.rekor_key_v2.public_key())

    @property
    def rekor_v1_base_url(self) -> str:
        """The v1 log's stable `baseUrl` in the trusted root."""
        return f"https://{self.rekor_v1_name}"

    @property
    def rekor_v2_base_url(self) -> str:
        """The v2 log's stable `baseUrl`; its host name is the v2 checkpoint origin."""
        return f"https://{self.rekor_origin}"

    @property
    def ct_log_id(self) -> bytes:
        """The SCTs' log id: SHA-256 of the CT key's DER SPKI."""
        return spki_sha256(self.ct_key.public_key())

    # -- service files --

    def write_service_files(self, directory: Path) -> dict[str, Path]:
        """Write what each lab container needs, one folder per role.

        - `fulcio/`: `ca-key.pem` (intermediate key), `ca-chain.pem` (intermediate, root),
          `ct-key.pem`, `oidc-issuer.pem` (public key), `fulcio.json`;
        - `tsa/`: `tsa-key.pem`, `tsa-chain.pem` (signer, root), `tsa.json`;
        - `rekor/`: `rekor-key.pem` (P-256, `--key`), `rekor-key-v2.pem` (Ed25519,
          `--key-v2`), `rekor.json` (file names, the v1 key name `origin` and the v2
          checkpoint `origin_v2`, as the trusted root's base URLs name them).

        Config paths are relative to their JSON file, so a folder can be copied anywhere
        (e.g. to `/etc/cihub/sigstack/` in the container). Private keys are written 0600.

        Returns:
            `{"fulcio": path, "tsa": path, "rekor": path}`.

        Example:
            dirs = material.write_service_files(tmp / "services")
            # docker cp dirs["fulcio"]/. fulcio:/etc/cihub/sigstack/
        """
        fulcio = directory / "fulcio"
        write_private(fulcio / "ca-key.pem", private_key_pem(self.fulcio_intermediate_key))
        (fulcio / "ca-chain.pem").write_text(
            certificates_pem([self.fulcio_intermediate, self.fulcio_root])
        )
        write_private(fulcio / "ct-key.pem", private_key_pem(self.ct_key))
        (fulcio / "oidc-issuer.pem").write_bytes(public_key_pem(self.oidc_key.public_key()))
        _write_json(
            fulcio / "fulcio.json",
            {
                "ca_key": "ca-key.pem",
                "ca_chain": "ca-chain.pem",
                "ct_key": "ct-key.pem",
                "oidc_issuers": [{"issuer": self.issuer, "public_key": "oidc-issuer.pem"}],
                "audience": AUDIENCE,
                "cert_lifetime_seconds": 600,
                "clock_skew_seconds": 60,
            },
        )
        tsa = directory / "tsa"
        write_private(tsa / "tsa-key.pem", private_key_pem(self.tsa_key))
        (tsa / "tsa-chain.pem").write_text(certificates_pem([self.tsa_cert, self.tsa_root]))
        _write_json(
            tsa / "tsa.json",
            {"signer_key": "tsa-key.pem", "chain": "tsa-chain.pem", "policy": TSA_POLICY},
        )
        rekor = directory / "rekor"
        write_private(rekor / "rekor-key.pem", private_key_pem(self.rekor_key))
        write_private(rekor / "rekor-key-v2.pem", private_key_pem(self.rekor_key_v2))
        _write_json(
            rekor / "rekor.json",
            {
                "key": "rekor-key.pem",
                "key_v2": "rekor-key-v2.pem",
                "origin": self.rekor_v1_name,
                "origin_v2": self.rekor_origin,
                "log_id": self.rekor_log_id.hex(),
                "log_id_v2": self.rekor_v2_log_id.hex(),
            },
        )
        return {"fulcio": fulcio, "tsa": tsa, "rekor": rekor}

    # -- client trust config --

    def trusted_root(
        self,
        *,
        rekor_versions: Sequence[int] = (1, 2),
        include_tsa: bool = True,
        wrong_ct_key: bool = False,
        wrong_log_key: bool = False,
        wrong_fulcio_root: bool = False,
    ) -> dict[str, Any]:
        """The stable trusted root: the same for every lab of this material (no lab URLs).

        Args:
            rekor_versions: which logs to list (1, 2 or both): two separate tlogs, each with
                its own key, log ID and `baseUrl` (whose host name is its checkpoint origin).
            include_tsa: list the TSA. Without it a Rekor v2 signature has no verified time.
            wrong_ct_key: list a fresh, unrelated key in `ctlogs` (SCT checks must fail).
            wrong_log_key: list fresh, unrelated keys in `tlogs` (log checks must fail).
            wrong_fulcio_root: list an unrelated CA chain (chain building must fail).

        Raises:
            TrustMaterialError: an unknown Rekor version.
        """
        versions = _versions(rekor_versions)
        valid_for = {"start": rfc3339(self.valid_from - BACKDATE)}
        rekor_v1_key: ec.EllipticCurvePublicKey = self.rekor_key.public_key()
        rekor_v2_key: ed25519.Ed25519PublicKey = self.rekor_key_v2.public_key()
        if wrong_log_key:
            rekor_v1_key = ec.generate_private_key(ec.SECP256R1()).public_key()
            rekor_v2_key = ed25519.Ed25519PrivateKey.generate().public_key()
        ct_key = self.ct_key.public_key()
        if wrong_ct_key:
            ct_key = ec.generate_private_key(ec.SECP256R1()).public_key()
        fulcio_chain = [self.fulcio_intermediate, self.fulcio_root]
        if wrong_fulcio_root:
            other = LabTrustMaterial.generate(valid_from=self.valid_from)
            fulcio_chain = [other.fulcio_intermediate, other.fulcio_root]

        tlogs: list[dict[str, Any]] = []
        if 1 in versions:
            tlogs.append(
                {
                    "baseUrl": self.rekor_v1_base_url,
                    "hashAlgorithm": "SHA2_256",
                    "publicKey": {
                        "rawBytes": _b64(spki_der(rekor_v1_key)),
                        "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                        "validFor": valid_for,
                    },
                    "logId": {"keyId": _b64(spki_sha256(rekor_v1_key))},
                }
            )
        if 2 in versions:
            # The current key first (one-key readers take the first v2 log), then the retired
            # ones with their windows closed: entries they signed still verify.
            current = valid_for
            if self.rekor_v2_since is not None:
                current = {"start": rfc3339(self.rekor_v2_since)}
            tlogs.append(self._v2_tlog(rekor_v2_key, current))
            for old in reversed(self.retired_rekor_v2):
                window = {"start": rfc3339(old.start), "end": rfc3339(old.end)}
                tlogs.append(self._v2_tlog(old.key, window))
        trusted_root: dict[str, Any] = {
            "mediaType": TRUSTED_ROOT_MEDIA_TYPE,
            "tlogs": tlogs,
            "certificateAuthorities": [
                {
                    "subject": {"organization": LAB_ONLY, "commonName": "cihub lab fulcio"},
                    "uri": FULCIO_BASE_URL,
                    "certChain": {
                        "certificates": [
                            {"rawBytes": _b64(certificate_der(cert))} for cert in fulcio_chain
                        ]
                    },
                    "validFor": valid_for,
                }
            ],
            "ctlogs": [
                {
                    "baseUrl": CT_BASE_URL,
                    "hashAlgorithm": "SHA2_256",
                    "publicKey": {
                        "rawBytes": _b64(spki_der(ct_key)),
                        "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                        "validFor": valid_for,
                    },
                    "logId": {"keyId": _b64(spki_sha256(ct_key))},
                }
            ],
            "timestampAuthorities": [],
        }
        if include_tsa:
            trusted_root["timestampAuthorities"].append(
                {
                    "subject": {"organization": LAB_ONLY, "commonName": "cihub lab tsa"},
                    "uri": TSA_BASE_URL,
                    "certChain": {
                        "certificates": [
                            {"rawBytes": _b64(certificate_der(cert))}
                            for cert in (self.tsa_cert, self.tsa_root)
                        ]
                    },
                    "validFor": valid_for,
                }
            )
        return trusted_root

    def _v2_tlog(self, key: ed25519.Ed25519PublicKey, window: dict[str, str]) -> dict[str, Any]:
        return {
            "baseUrl": self.rekor_v2_base_url,
            "hashAlgorithm": "SHA2_256",
            "publicKey": {
                "rawBytes": _b64(spki_der(key)),
                "keyDetails": "PKIX_ED25519",
                "validFor": window,
            },
            "logId": {"keyId": _b64(c2sp_ed25519_key_id(self.rekor_origin, key))},
        }

    def signing_config(
        self,
        urls: Mapping[str, str] | None = None,
        *,
        rekor_versions: Sequence[int] = (1, 2),
        include_tsa: bool = True,
    ) -> dict[str, Any]:
        """A signing config v0.2 with a lab's URLs, or (`urls=None`) the stable names.

        Args:
            urls: `rekor_url`, `fulcio_url` and, for a TSA, `tsa_url` (base URLs as the host
                reaches them; `tsa_url` may also be the full `/api/v1/timestamp` URL);
                optionally `rekor_v2_url` (default: `rekor_url`; the rekor role serves both
                logs) and `oidc_url` (default: the issuer).
            rekor_versions: which Rekor APIs to offer (with both, clients pick v2 unless told
                `--rekor-version 1`).
            include_tsa: offer the TSA (when a `tsa_url` is given).

        Raises:
            TrustMaterialError: a missing URL or an unknown Rekor version.
        """
        versions = _versions(rekor_versions)
        if urls is None:
            urls = {
                "rekor_url": self.rekor_v1_base_url,
                "rekor_v2_url": self.rekor_v2_base_url,
                "fulcio_url": FULCIO_BASE_URL,
                "tsa_url": TSA_BASE_URL,
            }
        for needed in ("rekor_url", "fulcio_url"):
            if not urls.get(needed):
                raise TrustMaterialError(f"signing_config: urls[{needed!r}] is required")
        valid_for = {"start": rfc3339(self.valid_from - BACKDATE)}
        rekor_urls = {
            1: _base_url(urls["rekor_url"]),
            2: _base_url(urls.get("rekor_v2_url") or urls["rekor_url"]),
        }

        def service(url: str, version: int = 1) -> dict[str, Any]:
            return {
                "url": url,
                "majorApiVersion": version,
                "validFor": valid_for,
                "operator": OPERATOR,
            }

        signing_config: dict[str, Any] = {
            "mediaType": SIGNING_CONFIG_MEDIA_TYPE,
            "caUrls": [service(_base_url(urls["fulcio_url"]))],
            "oidcUrls": [service(_base_url(urls.get("oidc_url") or self.issuer))],
            "rekorTlogUrls": [service(rekor_urls[v], v) for v in sorted(versions, reverse=True)],
            "rekorTlogConfig": {"selector": "ANY"},
            "tsaUrls": [],
            "tsaConfig": {"selector": "ANY"},
        }
        tsa_url = urls.get("tsa_url")
        if include_tsa and tsa_url:
            full = _base_url(tsa_url)
            if not full.endswith("/api/v1/timestamp"):
                full += "/api/v1/timestamp"
            signing_config["tsaUrls"].append(service(full))
        return signing_config

    def client_trust_config(
        self,
        urls: Mapping[str, str] | None = None,
        *,
        rekor_versions: Sequence[int] = (1, 2),
        include_tsa: bool = True,
        wrong_ct_key: bool = False,
        wrong_log_key: bool = False,
        wrong_fulcio_root: bool = False,
    ) -> dict[str, Any]:
        """A `ClientTrustConfig`: the stable `trusted_root` + `signing_config(urls)`.

        Raises:
            TrustMaterialError: a missing URL or an unknown Rekor version.

        Example:
            config = material.client_trust_config(
                {"rekor_url": "http://127.0.0.1:3000", "fulcio_url": "http://127.0.0.1:5555",
                 "tsa_url": "http://127.0.0.1:3004"},
                rekor_versions=(2,),
            )
        """
        signing = self.signing_config(urls, rekor_versions=rekor_versions, include_tsa=include_tsa)
        root = self.trusted_root(
            rekor_versions=rekor_versions,
            include_tsa=include_tsa,
            wrong_ct_key=wrong_ct_key,
            wrong_log_key=wrong_log_key,
            wrong_fulcio_root=wrong_fulcio_root,
        )
        return {
            "mediaType": CLIENT_TRUST_CONFIG_MEDIA_TYPE,
            "trustedRoot": root,
            "signingConfig": signing,
        }

    def write_trust_config(
        self, path: Path, urls: Mapping[str, str] | None, **options: Any
    ) -> Path:
        """Write `client_trust_config(urls, **options)` to `path` (atomically) and return it.

        Raises:
            TrustMaterialError: as `client_trust_config`.

        Example:
            material.write_trust_config(lab_dir / "trust_config.json", urls)
        """
        _write_json(path, self.client_trust_config(urls, **options))
        return path

    # -- tokens --

    def mint_identity_token(
        self,
        identity: str | None = None,
        *,
        lifetime: int = 300,
        issued_at: float | None = None,
        audience: str = AUDIENCE,
        issuer: str | None = None,
        signing_key: ec.EllipticCurvePrivateKey | None = None,
    ) -> str:
        """An ES256 OIDC identity token from the lab's issuer.

        An email identity is both `sub` and `email` (with `email_verified: true`); a URI
        identity is `sub` only. sigstore-python takes `sub` as the identity for an issuer it
        doesn't know, and the fulcio role puts the same value in the certificate's SAN.

        Args:
            identity: the email or URI (default: the material's `identity`).
            lifetime: seconds from `iat` to `exp`.
            issued_at: the `iat` UNIX time (default: now); put it in the past for an
                expired token.
            audience: the `aud` claim (Sigstore's is "sigstore").
            issuer: the `iss` claim (default: the material's issuer).
            signing_key: sign with another key (default: the lab issuer key).

        Raises:
            TrustMaterialError: a non-positive lifetime or an empty identity.

        Example:
            token = material.mint_identity_token()
            expired = material.mint_identity_token(issued_at=time.time() - 3600)
        """
        who = identity or self.identity
        if not who or lifetime <= 0:
            raise TrustMaterialError("a token needs an identity and a positive lifetime")
        iat = int(time.time() if issued_at is None else issued_at)
        claims: dict[str, Any] = {
            "iss": issuer or self.issuer,
            "sub": who,
            "aud": audience,
            "iat": iat,
            "nbf": iat,
            "exp": iat + lifetime,
        }
        if "@" in who and "://" not in who:
            claims["email"] = who
            claims["email_verified"] = True
        return jwt.mint(claims, signing_key or self.oidc_key)


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_trust_config(
    path: Path, material: LabTrustMaterial, urls: Mapping[str, str], **options: Any
) -> Path:
    """Module-level form of `LabTrustMaterial.write_trust_config`.

    Raises:
        TrustMaterialError: as `LabTrustMaterial.client_trust_config`.

    Example:
        write_trust_config(lab_dir / "trust_config.json", material, urls, rekor_versions=(2,))
    """
    return material.write_trust_config(path, urls, **options)


__all__ = [
    "AUDIENCE",
    "CLIENT_TRUST_CONFIG_MEDIA_TYPE",
    "DEFAULT_IDENTITY",
    "DEFAULT_ISSUER",
    "DEFAULT_REKOR_ORIGIN",
    "REKOR_V1_NAME",
    "LabTrustMaterial",
    "TrustMaterialError",
    "c2sp_ed25519_key_id",
    "write_trust_config",
]


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _retired(directory: Path, item: Mapping[str, str]) -> RetiredLogKey:
    key = serialization.load_pem_public_key((directory / item["key"]).read_bytes())
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise TypeError(f"{item['key']} is not an Ed25519 public key")
    return RetiredLogKey(key, _time(item["start"]), _time(item["end"]))
