"""The transparency logs' state: signing entries, watching them, and restoring old copies.

The Rekor logs live in the trust domain (`logs/v1.db`, `logs/v2.db`, SQLite in WAL mode,
bind-mounted into the lab's rekor container). A copy is taken, and put back, only while the
rekor container is stopped, so SQLite has checkpointed and nothing writes. Because a stale
restore rolls a log back, these steps refuse a lab on the user's own trust domain: DR drills of
the log run on a lab with a private one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import ConfigError
from harness.monitor import MonitorAlarm, MonitorResult, RekorMonitor, TilesMonitor, pinned_logs
from harness.sign import SigningSetup, sign_artifact
from lab import Lab
from lab.trust_domain import TrustDomain, trust_domain_dir


@dataclass
class SignedEntries:
    """Entries signed into the two logs: v1 by artifact digest, v2 by log index."""

    v1: list[str] = field(default_factory=list)
    v2: dict[int, str] = field(default_factory=dict)

    def extend(self, other: SignedEntries) -> None:
        self.v1.extend(other.v1)
        self.v2.update(other.v2)

    def count(self) -> int:
        return len(self.v1) + len(self.v2)


@dataclass(frozen=True)
class MonitorRun:
    """One run of both monitors: the verified sizes, or the alarm each raised."""

    sizes: Mapping[str, int]
    alarms: Mapping[str, str]

    @property
    def ok(self) -> bool:
        return not self.alarms

    def rollback_detected(self) -> bool:
        """Both logs raised a ROLLBACK alarm."""
        return set(self.alarms) == {"v1", "v2"} and all(
            "ROLLBACK" in text for text in self.alarms.values()
        )


class LogState:
    """Sign into, watch, back up and restore the logs of one lab's (private) trust domain.

    Args:
        lab: a lab whose trust domain is not the user's own.
        monitor_dir: where the monitors keep their last verified checkpoints.

    Raises:
        ConfigError: the lab runs on the user's own trust domain (its logs are not ours to
            roll back), or has no Sigstore stack.
    """

    def __init__(self, lab: Lab, monitor_dir: Path) -> None:
        domain, trust = private_log_lab(lab)
        self._lab = lab
        self.logs_dir = domain.logs_dir
        self._trust = trust
        self._v1_trust = _v1_only(trust, monitor_dir / "v1-trust-config.json")
        logs = pinned_logs(trust)
        url = lab.endpoints.proxies["rekor"].url
        self._v1 = RekorMonitor(url, logs[1].key, state_dir=monitor_dir, key_name=logs[1].name)
        self._v2 = TilesMonitor(url, logs[2].key, logs[2].name, state_dir=monitor_dir)

    def sign(self, count: int, label: str) -> SignedEntries:
        """Sign `count` fresh artifacts into each log; what was logged."""
        signed = SignedEntries()
        for _ in range(count):
            payload = f"cihub dr {label} {os.urandom(8).hex()}\n".encode()
            digest = "sha256:" + hashlib.sha256(payload).hexdigest()
            sign_artifact(payload, self._setup(self._v1_trust))
            signed.v1.append(digest)
            entry = sign_artifact(payload, self._setup(self._trust)).log_entry
            signed.v2[int(entry["logIndex"])] = digest
        return signed

    def watch(self, entries: SignedEntries | None = None) -> MonitorRun:
        """Run both monitors (checking `entries` are included); alarms are collected, not
        raised."""
        sizes: dict[str, int] = {}
        alarms: dict[str, str] = {}
        entries = entries or SignedEntries()
        runs: dict[str, Callable[[], MonitorResult]] = {
            "v1": lambda: self._v1.run(entries.v1),
            "v2": lambda: self._v2.run(entries.v2),
        }
        for name, run in runs.items():
            try:
                result = run()
            except MonitorAlarm as exc:
                alarms[name] = str(exc).splitlines()[0]
            else:
                sizes[name] = result.current.size
        return MonitorRun(sizes, alarms)

    def copy_to(self, target: Path) -> None:
        """Copy the log files into `target`, with the rekor container stopped (then started)."""
        self._stopped(lambda: shutil.copytree(self.logs_dir, target, dirs_exist_ok=True))

    def restore_from(self, source: Path) -> float:
        """Replace the log files with the copy in `source`; seconds from stop to healthy."""
        started = time.monotonic()

        def swap() -> None:
            # The copies must belong to whoever the rekor container runs as (the folder's
            # owner), or the log comes back read-only to it.
            owner = self.logs_dir.stat()
            for item in self.logs_dir.iterdir():
                item.unlink()
            shutil.copytree(source, self.logs_dir, dirs_exist_ok=True)
            for item in self.logs_dir.iterdir():
                if item.stat().st_uid != owner.st_uid:
                    os.chown(item, owner.st_uid, owner.st_gid)

        self._stopped(swap)
        return time.monotonic() - started

    def _stopped(self, action: Callable[[], object]) -> None:
        container = self._lab.service_container("rekor")
        container.stop(timeout=10)
        try:
            action()
        finally:
            container.start()
            self._lab.wait_healthy("rekor")

    def _setup(self, trust: Path) -> SigningSetup:
        lab = self._lab
        return SigningSetup(trust, lab.mint_token(), lab.config.identity, lab.config.issuer)


def private_log_lab(lab: Lab) -> tuple[TrustDomain, Path]:
    """The lab's trust domain and trust config, if the domain is not the user's own.

    Raises:
        ConfigError: no Sigstore stack, or the user's own trust domain (a log drill changes
            its logs or keys for good).
    """
    domain = lab.trust_domain
    trust = lab.endpoints.trust_config
    if domain is None or trust is None:
        raise ConfigError(f"lab {lab.config.lab_id} has no Sigstore stack: no log to drill")
    if _same(domain.path, trust_domain_dir()):
        raise ConfigError(
            f"lab {lab.config.lab_id} runs on your own trust domain {domain.path}: a log DR "
            "drill restores old logs or rotates keys, so it needs a lab on a private trust domain"
        )
    return domain, trust


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _v1_only(trust: Path, target: Path) -> Path:
    """A copy of the trust config whose signing config offers only the v1 log."""
    document = json.loads(trust.read_text())
    document["signingConfig"]["rekorTlogUrls"] = [
        s for s in document["signingConfig"]["rekorTlogUrls"] if s["majorApiVersion"] == 1
    ]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document))
    return target
