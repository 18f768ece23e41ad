"""The trust domain: the lab's durable Sigstore identity (CA, CT key, TSA, log keys) and its log.

Labs are disposable; the trust domain is not. Like an organisation's own Sigstore deployment it
is made once, reused by every lab and kept across `cihub lab down`, so evidence signed today
still verifies next month against the same pinned trusted root.

Where it lives: `$CIHUB_TRUST_DOMAIN` if set, else `$XDG_STATE_HOME/cihub/trust-domain`, else
`~/.local/state/cihub/trust-domain` (or the folder a `LabConfig.trust_domain` names). Its
`trust_config.json` is the ClientTrustConfig an auditor pins (`cihub trust export`).

Layout (folder 0700, private keys 0600):

    trust_config.json   stable trusted root + a signing config naming the stable service names
    material/           every key and certificate (`LabTrustMaterial.save`), for tokens
    services/           what each Sigstore container needs (`write_service_files`)
    logs/               the Rekor logs: v1.db and v2.db (SQLite, WAL), bind-mounted into
                        every lab's rekor container at /var/lib/rekor; appends from several
                        labs serialize through the database
    .lock               creation lock (two labs starting at once make one domain)

Only `TrustDomain.delete` (`cihub trust delete --yes`) removes it.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.services.sigstack.x509util import spki_sha256
from lab.sigstore_trust import DEFAULT_IDENTITY, DEFAULT_ISSUER, LabTrustMaterial

TRUST_DOMAIN_ENV = "CIHUB_TRUST_DOMAIN"
"""Names the trust domain's folder, overriding the per-user default."""

TRUST_CONFIG_FILE = "trust_config.json"
"""The trust domain's ClientTrustConfig (trusted root + signing config)."""

MATERIAL_DIR = "material"
SERVICES_DIR = "services"
LOGS_DIR = "logs"
LOG_DB_V1 = "v1.db"
LOG_DB_V2 = "v2.db"
CONTAINER_LOG_USER = 65532
"""The uid:gid the rekor containers run as when the host user is root (never root itself);
the logs and the service files (`services/<role>/`) are then owned by it."""


class TrustDomainError(LabError):
    """A trust domain that can't be made, read or used as asked; the message says which."""


def trust_domain_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """The trust domain's folder (it may not exist yet)."""
    explicit = environ.get(TRUST_DOMAIN_ENV)
    if explicit:
        return Path(explicit).expanduser()
    root = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(root) / "cihub" / "trust-domain"


def local_trust_config(environ: Mapping[str, str] = os.environ) -> Path | None:
    """The local trust domain's trust config file, or None when no trust domain was made yet."""
    path = trust_domain_dir(environ) / TRUST_CONFIG_FILE
    return path if path.is_file() else None


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (folder / ".lock").open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@dataclass(frozen=True)
class TrustDomain:
    """An open trust domain: its folder and its material (private keys included).

    Example:
        domain = TrustDomain.open()                   # made on first use
        domain.write_lab_trust_config(state / "trust_config.json", urls)
        token = domain.material.mint_identity_token()
    """

    path: Path
    material: LabTrustMaterial

    @classmethod
    def open(
        cls,
        path: Path | None = None,
        *,
        create: bool = True,
        identity: str = DEFAULT_IDENTITY,
        issuer: str = DEFAULT_ISSUER,
    ) -> TrustDomain:
        """Open the trust domain at `path` (default: `trust_domain_dir()`), making it if asked.

        Args:
            path: the folder.
            create: make a new domain when there is none (with `identity` and `issuer`).
            identity: the default identity of tokens in a new domain.
            issuer: the OIDC issuer of a new domain; an existing one must have the same.

        Raises:
            TrustDomainError: none there (and `create` is false), unreadable material, a
                different issuer, or a path that is not a folder.
        """
        folder = (path or trust_domain_dir()).expanduser().absolute()
        if folder.exists() and not folder.is_dir():
            raise TrustDomainError(f"{folder}: the trust domain path is not a folder")
        material_dir = folder / MATERIAL_DIR
        if not create and not (material_dir / "material.json").is_file():
            raise TrustDomainError(f"{folder}: no trust domain (a lab makes one on `lab up`)")
        with _locked(folder):
            os.chmod(folder, 0o700)
            if (material_dir / "material.json").is_file():
                material = _load(material_dir)
            else:
                material = LabTrustMaterial.generate(identity=identity, issuer=issuer)
                material.save(material_dir)
            domain = cls(folder, material)
            domain._complete()
        if material.issuer != issuer and create:
            raise TrustDomainError(
                f"{folder}: the trust domain trusts the issuer {material.issuer}, not {issuer}"
            )
        return domain

    @staticmethod
    def delete(path: Path | None = None) -> Path:
        """Remove a trust domain for good (keys, logs, trust config); returns its folder.

        Raises:
            TrustDomainError: nothing there, or the folder is not a trust domain.
        """
        folder = (path or trust_domain_dir()).expanduser().absolute()
        if not (folder / MATERIAL_DIR).is_dir() and not (folder / TRUST_CONFIG_FILE).is_file():
            raise TrustDomainError(f"{folder}: no trust domain to delete")
        shutil.rmtree(folder)
        return folder

    # -- files --------------------------------------------------------------------------

    @property
    def trust_config(self) -> Path:
        """The domain's ClientTrustConfig: what verify pins by default and auditors export."""
        return self.path / TRUST_CONFIG_FILE

    @property
    def material_dir(self) -> Path:
        return self.path / MATERIAL_DIR

    @property
    def logs_dir(self) -> Path:
        """The Rekor databases (v1.db, v2.db), shared by every lab of this domain."""
        return self.path / LOGS_DIR

    def service_dirs(self) -> dict[str, Path]:
        """Each Sigstore role's folder of keys and config (`fulcio`, `tsa`, `rekor`)."""
        root = self.path / SERVICES_DIR
        return {role: root / role for role in ("fulcio", "tsa", "rekor")}

    def log_user(self) -> str:
        """`uid:gid` for the rekor containers: the host user, or a fixed non-root id when the
        host user is root (the logs folder is then handed to that id)."""
        if os.geteuid() != 0:
            return f"{os.geteuid()}:{os.getegid()}"
        return f"{CONTAINER_LOG_USER}:{CONTAINER_LOG_USER}"

    def write_lab_trust_config(self, path: Path, urls: Mapping[str, str]) -> Path:
        """Write a lab's ClientTrustConfig: the domain's trusted root + a signing config with
        the lab's `urls` (`rekor_url`, `fulcio_url`, `tsa_url`)."""
        return self.material.write_trust_config(path, urls)

    def _complete(self) -> None:
        """Write whatever derived file is missing (called under the lock)."""
        if not self.trust_config.is_file():
            self.material.write_trust_config(self.trust_config, None)
        if not all((d / f"{d.name}.json").is_file() for d in self.service_dirs().values()):
            self.material.write_service_files(self.path / SERVICES_DIR)
        self.logs_dir.mkdir(exist_ok=True, mode=0o700)
        if os.geteuid() == 0:
            # The Sigstore containers run as a non-root id: hand it the logs and the service
            # keys (files are copied into a container with their owner and mode 0600).
            roles = [f for d in self.service_dirs().values() for f in [d, *d.iterdir()]]
            for item in [self.logs_dir, *self.logs_dir.iterdir(), *roles]:
                os.chown(item, CONTAINER_LOG_USER, CONTAINER_LOG_USER)

    def rotate_log_key(self, now: datetime | None = None) -> TrustDomain:
        """Rotate the Rekor v2 log's signing key (see `LabTrustMaterial.rotate_rekor_v2_key`).

        The material, `trust_config.json` and `services/rekor/` are rewritten under the lock;
        the old key stays in the trusted root with `validFor.end` set, so entries it signed
        keep verifying. Running labs sign with the old key until their rekor container gets
        the new key file and restarts, and must rewrite their trust config.

        Returns:
            the domain with its new material.
        """
        with _locked(self.path):
            material = _load(self.material_dir).rotate_rekor_v2_key(now)
            material.save(self.material_dir)
            material.write_trust_config(self.trust_config, None)
            material.write_service_files(self.path / SERVICES_DIR)
            domain = TrustDomain(self.path, material)
            domain._complete()
        return domain

    # -- what it contains ---------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Where the domain lives and what its trusted root holds (for `cihub trust show`)."""
        root = json.loads(self.trust_config.read_text(encoding="utf-8"))["trustedRoot"]
        material = self.material

        def window(item: Mapping[str, Any]) -> dict[str, Any]:
            valid = item.get("validFor") or item.get("publicKey", {}).get("validFor") or {}
            return {"start": valid.get("start"), "end": valid.get("end")}

        tlogs = []
        for tlog in root["tlogs"]:
            v2 = tlog["publicKey"]["keyDetails"] == "PKIX_ED25519"
            host = tlog["baseUrl"].split("://", 1)[-1].split("/", 1)[0]
            tlogs.append(
                {
                    "api": "v2" if v2 else "v1",
                    "base_url": tlog["baseUrl"],
                    "log_id": _hex(tlog["logId"]["keyId"]),
                    "key_details": tlog["publicKey"]["keyDetails"],
                    "checkpoint_origin": host if v2 else f"{host} - <treeID>",
                    "database": str(self.logs_dir / (LOG_DB_V2 if v2 else LOG_DB_V1)),
                    "valid_for": window(tlog),
                }
            )
        return {
            "path": str(self.path),
            "trust_config": str(self.trust_config),
            "issuer": material.issuer,
            "default_identity": material.identity,
            "valid_from": material.valid_from.isoformat(),
            "tlogs": tlogs,
            "certificate_authorities": [
                {
                    "subject": ca["subject"],
                    "uri": ca["uri"],
                    "fingerprints_sha256": [
                        _fingerprint(c["rawBytes"]) for c in ca["certChain"]["certificates"]
                    ],
                    "valid_for": window(ca),
                }
                for ca in root["certificateAuthorities"]
            ],
            "ctlogs": [
                {
                    "base_url": c["baseUrl"],
                    "log_id": _hex(c["logId"]["keyId"]),
                    "valid_for": window(c),
                }
                for c in root["ctlogs"]
            ],
            "timestamp_authorities": [
                {
                    "subject": t["subject"],
                    "uri": t["uri"],
                    "fingerprints_sha256": [
                        _fingerprint(c["rawBytes"]) for c in t["certChain"]["certificates"]
                    ],
                    "valid_for": window(t),
                }
                for t in root["timestampAuthorities"]
            ],
            "oidc_issuer_key_sha256": _spki_sha256_hex(material),
        }


def _load(material_dir: Path) -> LabTrustMaterial:
    try:
        return LabTrustMaterial.load(material_dir)
    except LabError as exc:
        raise TrustDomainError(str(exc)) from exc


def _hex(b64: str) -> str:
    return base64.b64decode(b64).hex()


def _fingerprint(b64_der: str) -> str:
    return hashlib.sha256(base64.b64decode(b64_der)).hexdigest()


def _spki_sha256_hex(material: LabTrustMaterial) -> str:
    return spki_sha256(material.oidc_key.public_key()).hex()
