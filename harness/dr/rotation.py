"""Rotating the Rekor v2 log's signing key on a running lab, and judging what still verifies.

The trust domain rotates the key (`TrustDomain.rotate_log_key`: the old key stays in the
trusted root with `validFor.end`); the lab's rekor container, stopped, gets the new key file
in its role folder and starts again; the lab's trust config is rewritten from the rotated
root. Bundles are verified with sigstore-python (through `KeylessVerifier`) against the trust
config an auditor pins, for the lab identity.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from harness.dr.log import private_log_lab
from harness.errors import InfraError
from harness.evidence.identity import IdentityPin
from harness.evidence.signer import SignatureInvalid
from harness.evidence.sigstore_verify import KeylessVerifier, PinnedRoot
from harness.monitor import TilesMonitor, pinned_logs
from harness.sign import SigningSetup, sign_artifact
from lab import Lab
from lab.containers.sigstack import CONFIG_ROOT
from lab.services.sigstack.x509util import private_key_pem
from lab.trust_domain import TrustDomain

KEY_FILE = "rekor-key-v2.pem"


@dataclass(frozen=True)
class SignedBlob:
    """An artifact signed into the v2 log: its bytes, its Sigstore bundle and the log id."""

    payload: bytes
    bundle_json: str
    log_id: str

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.payload).hexdigest()


class KeyRotation:
    """Sign, rotate and verify on a lab whose trust domain is private.

    Raises:
        ConfigError: the lab is on the user's own trust domain, or has no Sigstore stack.
    """

    def __init__(self, lab: Lab, monitor_dir: Path) -> None:
        self.domain, self._trust = private_log_lab(lab)
        self._lab = lab
        self._monitor_dir = monitor_dir

    @property
    def pinned(self) -> Path:
        """What an auditor pins: the domain's own trust config (`cihub trust export`)."""
        return self.domain.trust_config

    def sign(self, label: str) -> SignedBlob:
        lab = self._lab
        payload = f"cihub dr key rotation {label} {os.urandom(8).hex()}\n".encode()
        setup = SigningSetup(self._trust, lab.mint_token(), lab.config.identity, lab.config.issuer)
        signed = sign_artifact(payload, setup)
        return SignedBlob(payload, signed.bundle_json, str(signed.log_entry["logId"]["keyId"]))

    def watch(self) -> int:
        """Run the v2 monitor pinned to the current trust config; the verified size.

        Raises:
            MonitorAlarm: the log is not consistent with the last verified checkpoint.
        """
        log = pinned_logs(self._trust)[2]
        url = self._lab.endpoints.proxies["rekor"].url
        return TilesMonitor(url, log.key, log.name, state_dir=self._monitor_dir).run().current.size

    def rotate(self) -> TrustDomain:
        """Rotate the v2 key and put it in service: rekor restarted with it, the lab's trust
        config rewritten from the rotated root."""
        self.domain = self.domain.rotate_log_key()
        container = self._lab.service_container("rekor")
        uid, _, gid = self.domain.log_user().partition(":")
        data = private_key_pem(self.domain.material.rekor_key_v2)
        container.stop(timeout=10)
        try:
            if not container.put_archive(f"{CONFIG_ROOT}/rekor", _tar(KEY_FILE, data, uid, gid)):
                raise InfraError("rekor: the engine refused the new log key")
        finally:
            container.start()
            self._lab.wait_healthy("rekor")
        proxies = self._lab.endpoints.proxies
        urls = {
            "rekor_url": proxies["rekor"].url,
            "fulcio_url": proxies["fulcio"].url,
            "tsa_url": proxies["tsa"].url,
        }
        self.domain.write_lab_trust_config(self._trust, urls)
        return self.domain

    def verify(self, blob: SignedBlob, trust_config: Path) -> str | None:
        """None when `blob` verifies under `trust_config` for the lab identity, else why not."""
        lab = self._lab
        pin = IdentityPin(identity=lab.config.identity, issuer=lab.config.issuer)
        try:
            verifier = KeylessVerifier(PinnedRoot.load(trust_config), pin)
            verifier.verify_blob(blob.payload, blob.bundle_json.encode())
        except SignatureInvalid as exc:
            return str(exc).splitlines()[0]
        return None

    def without_retired_keys(self, target: Path) -> Path:
        """The pinned trust config with the rotated-out keys dropped (a careless rotation)."""
        return drop_retired_keys(self.pinned, target)


def drop_retired_keys(trust_config: Path, target: Path) -> Path:
    """Write to `target` the trust config without the log keys whose window has ended."""
    document = json.loads(trust_config.read_text())
    tlogs = document["trustedRoot"]["tlogs"]
    document["trustedRoot"]["tlogs"] = [
        t for t in tlogs if not t["publicKey"].get("validFor", {}).get("end")
    ]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document))
    return target


def _tar(name: str, data: bytes, uid: str, gid: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o600
        info.uid, info.gid = int(uid), int(gid or uid)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()
