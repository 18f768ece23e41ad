"""The disaster-recovery drills as a `Drill` (kind `dr`): steps only, in the order they run.

- `registry-restore`: push items, back the registry's storage up (cold), push more, destroy the
  storage, restore it from the backup (unless the scenario says not to), then replay: every
  item pushed before the backup and every digest the evidence on record pushed to this registry
  must resolve again. RPO = the items pushed after the backup that are gone, and the seconds
  between backup and destruction; RTO = seconds from the end of the destruction (storage empty,
  registry down) to the registry answering again through the fault proxy.
- `log-rollback`: sign entries into both logs, watch them, copy the logs, sign more, watch
  again, then restore the stale copy. The monitors must raise ROLLBACK on both logs (the
  scenario's expected finding `rollback-detected`); then the current logs are put back and the
  monitors must find them consistent with the last verified checkpoints again.

Each writes `dr/report.json` and the record's `dr` object. A failure half way puts things back
(the registry restored and started, the current logs restored) before the error goes on.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.cache import MANIFEST_FILE as CACHE_MANIFEST
from harness.cache import CacheCheck, RecordedCache, record_cache, verify_cache
from harness.dr.cache_poison import (
    POISON_MARK,
    Installed,
    build_wheel,
    install,
    installed,
    poisoned_wheel,
)
from harness.dr.log import LogState, MonitorRun, SignedEntries
from harness.dr.registry import RegistryStorage, StorageBackup
from harness.dr.replay import Missing, ReplayItem, evidence_items, push_items, replay
from harness.dr.rotation import KeyRotation
from harness.dr.scenario import DrScenario
from harness.drills.runner import DrillFinding, Progress
from harness.errors import ConfigError
from harness.evidence import EvidenceBundle, IdentityPin, TrustPins
from harness.monitor import MonitorAlarm
from harness.sign import SigstoreSigner
from harness.telemetry import ScenarioKind
from lab import Lab
from lab.oci import OciClient

_logger = logging.getLogger(__name__)

CHECK = "dr"
REPORT = "dr/report.json"


def _say(progress: Progress | None, message: str) -> None:
    _logger.info("%s", message)
    if progress is not None:
        progress(message)


class DrDrill:
    """One DR scenario against a lab (for `log-rollback`, a lab on a private trust domain).

    Args:
        scenario: the drill, its options and its expected finding.
        lab: the lab whose registry or logs are destroyed and restored.
        evidence_dir: where the evidence on record is (default: the bundle's parent folder).

    Example:
        >>> run = run_drill(DrDrill(load_scenario(path), lab), settings)
        >>> run.record["dr"]["rto_s"]
    """

    check = CHECK

    def __init__(self, scenario: DrScenario, lab: Lab, evidence_dir: Path | None = None) -> None:
        self.scenario = scenario
        self._lab = lab
        self._evidence_dir = evidence_dir
        self.report: dict[str, Any] | None = None

    @property
    def kind(self) -> ScenarioKind:
        return "dr"

    @property
    def name(self) -> str:
        return self.scenario.name

    @property
    def subject(self) -> Path | None:
        return None

    @property
    def required(self) -> Sequence[str]:
        return (REPORT,)

    def cancel(self) -> None:
        # Nothing runs in the background: the steps' own `finally` puts the lab back.
        _logger.warning("dr: cancelled; putting the %s back first", self.scenario.target)

    def run(self, bundle: EvidenceBundle, progress: Progress | None) -> DrillFinding:
        work = Path(tempfile.mkdtemp(prefix="cihub-dr-"))
        try:
            if self.scenario.drill == "registry-restore":
                evidence_dir = self._evidence_dir or bundle.root.parent
                return self._registry(bundle, progress, work, evidence_dir)
            if self.scenario.drill == "cache-poisoning":
                return self._cache(bundle, progress, work)
            if self.scenario.drill == "log-key-rotation":
                return self._rotation(bundle, progress, work)
            return self._log(bundle, progress, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    # -- registry-restore -----------------------------------------------------------------

    def _registry(
        self, bundle: EvidenceBundle, progress: Progress | None, work: Path, evidence_dir: Path
    ) -> DrillFinding:
        s = self.scenario
        storage = RegistryStorage(self._lab)
        url = self._lab.endpoints.registry_url
        backup: StorageBackup | None = None
        destroyed = restored = False
        try:
            with OciClient(url) as oci:
                _say(progress, f"dr: pushing {s.items_before_backup} items before the backup")
                before = push_items(
                    oci, s.repository, s.items_before_backup, s.item_bytes, "drill:before-backup"
                )
                on_record = evidence_items(evidence_dir, url)
                _say(progress, "dr: backing the registry storage up (registry stopped)")
                storage.stop()
                backup = storage.backup(work / "registry-storage.tar")
                storage.start()
                _say(progress, f"dr: pushing {s.items_after_backup} items after the backup")
                after = push_items(
                    oci, s.repository, s.items_after_backup, s.item_bytes, "drill:after-backup"
                )
                _say(progress, "dr: destroying the registry storage")
                storage.stop()
                since_backup = time.monotonic() - backup.taken_monotonic
                storage.destroy()
                destroyed = True
                left = storage.count_files()
                outage = time.monotonic()
                if s.restore:
                    _say(progress, "dr: restoring the registry storage from the backup")
                    storage.restore(backup)
                    restored = True
                storage.start()
                rto = time.monotonic() - outage
                _say(progress, "dr: replaying every digest on record")
                missing = replay(oci, [*before, *on_record, *after])
        finally:
            # Also after the negative twin's measurement: the lab gets its registry back.
            self._put_registry_back(storage, backup, destroyed and not restored)
        return self._registry_finding(
            bundle, backup, left, rto, since_backup, before, on_record, after, missing
        )

    def _put_registry_back(
        self, storage: RegistryStorage, backup: StorageBackup | None, restore: bool
    ) -> None:
        """After the steps (or a failure half way): the backup back in if the storage is still
        destroyed, and the registry up."""
        try:
            container = storage.container
            container.reload()
            if restore and backup is not None:
                if container.status == "running":
                    storage.stop()
                storage.restore(backup)
                container.reload()
            if container.status != "running":
                storage.start()
        except Exception as exc:  # the original error matters more
            _logger.error("dr: could not put the registry back: %s", exc)

    def _registry_finding(
        self,
        bundle: EvidenceBundle,
        backup: StorageBackup | None,
        left: int,
        rto: float,
        since_backup: float,
        before: list[ReplayItem],
        on_record: list[ReplayItem],
        after: list[ReplayItem],
        missing: list[Missing],
    ) -> DrillFinding:
        s = self.scenario
        assert backup is not None
        kept = {(i.repository, i.digest) for i in (*before, *on_record)}
        lost_required = [m for m in missing if (m.item.repository, m.item.digest) in kept]
        lost = [m.item.digest for m in missing if m.item.origin == "drill:after-backup"]
        observed = "digests-missing" if lost_required else "restored"
        checks = [
            _check("destroyed", left == 0, f"{left} files left in the storage after the wipe"),
            _check("healthy", True, f"registry answered again {rto:.2f} s after the destruction"),
            _check(
                "replay",
                not lost_required,
                f"{len(before) + len(on_record)} digests on record, {len(lost_required)} missing",
            ),
        ]
        problems = [f"{m.item.digest} ({m.item.origin}): {m.reason}" for m in lost_required]
        if left:
            problems.insert(0, f"the destruction left {left} files: the fault did not apply")
        rpo = {
            "items_lost": len(lost),
            "seconds_since_backup": round(since_backup, 3),
            "lost": lost,
        }
        facts: dict[str, Any] = {
            "rpo": rpo,
            "rto_s": round(rto, 3),
            "replay": {
                "checked": len(before) + len(on_record) + len(after),
                "missing": [m.item.digest for m in missing],
            },
            "rollback_detected": None,
            "consistent": None,
        }
        details = {
            "restore": s.restore,
            "backup": backup.to_json(),
            "items": {
                "before_backup": [i.to_json() for i in before],
                "after_backup": [i.to_json() for i in after],
                "on_record": [i.to_json() for i in on_record],
            },
            "missing": [m.to_json() for m in missing],
        }
        detail = (
            f"registry storage destroyed and "
            f"{'restored' if s.restore else 'NOT restored'}: "
            f"{len(lost_required)} of {len(before) + len(on_record)} digests on record missing; "
            f"RPO {len(lost)} items ({since_backup:.1f} s), RTO {rto:.2f} s"
        )
        return self._finish(bundle, observed, checks, problems, detail, facts, details)

    # -- log-rollback ---------------------------------------------------------------------

    def _log(self, bundle: EvidenceBundle, progress: Progress | None, work: Path) -> DrillFinding:
        s = self.scenario
        state = LogState(self._lab, work / "monitor")
        stale_in = False
        try:
            _say(progress, "dr: signing into both logs and watching them")
            signed = state.sign(1, "before-backup")
            baseline = state.watch(signed)
            _say(progress, "dr: copying the logs (rekor stopped)")
            state.copy_to(work / "stale")
            backup_at = time.monotonic()
            later = state.sign(s.entries_after_backup, "after-backup")
            signed.extend(later)
            grown = state.watch(later)
            _say(progress, "dr: restoring the STALE copy of the logs")
            state.copy_to(work / "current")
            since_backup = time.monotonic() - backup_at
            state.restore_from(work / "stale")
            stale_in = True
            watched: MonitorRun | None = None
            if s.monitor:
                _say(progress, "dr: watching the rolled-back logs")
                watched = state.watch()
            _say(progress, "dr: restoring the current logs")
            rto = state.restore_from(work / "current")
            stale_in = False
            final = state.watch(signed)
        finally:
            if stale_in:
                try:
                    state.restore_from(work / "current")
                except Exception as exc:  # the original error matters more
                    _logger.error("dr: could not restore the current logs: %s", exc)
        return self._log_finding(
            bundle, baseline, grown, watched, final, rto, since_backup, signed, later
        )

    def _log_finding(
        self,
        bundle: EvidenceBundle,
        baseline: MonitorRun,
        grown: MonitorRun,
        watched: MonitorRun | None,
        final: MonitorRun,
        rto: float,
        since_backup: float,
        signed: SignedEntries,
        later: SignedEntries,
    ) -> DrillFinding:
        s = self.scenario
        detected = watched is not None and watched.rollback_detected()
        consistent = final.ok and dict(final.sizes) == dict(grown.sizes)
        observed = "rollback-detected" if detected else "rollback-undetected"
        if watched is None:
            rollback_detail = "nobody watched the rolled-back logs (monitor disabled)"
        elif detected:
            rollback_detail = "; ".join(f"{k}: {v}" for k, v in sorted(watched.alarms.items()))
        else:
            rollback_detail = f"the monitors raised nothing for both logs: {watched.alarms}"
        checks = [
            _check("watched-before", baseline.ok and grown.ok, f"verified sizes {grown.sizes}"),
            _check("rollback-detected", detected, rollback_detail),
            _check(
                "consistent-after-restore",
                consistent,
                f"sizes {final.sizes} (last verified {grown.sizes}); alarms {final.alarms}",
            ),
        ]
        problems = []
        if not (baseline.ok and grown.ok):
            problems.append(f"the logs did not verify before the drill: {grown.alarms}")
        if not consistent:
            problems.append(
                f"not consistent after restoring the current logs: {final.alarms or final.sizes}"
            )
        lost = [*later.v1, *(f"v2:{i}={d}" for i, d in sorted(later.v2.items()))]
        facts: dict[str, Any] = {
            "rpo": {
                "items_lost": later.count(),
                "seconds_since_backup": round(since_backup, 3),
                "lost": lost,
            },
            "rto_s": round(rto, 3),
            "rollback_detected": detected,
            "consistent": consistent,
        }
        details = {
            "monitor": s.monitor,
            "verified": {"baseline": dict(baseline.sizes), "before_rollback": dict(grown.sizes)},
            "alarms": dict(watched.alarms) if watched is not None else None,
            "after_restore": {"sizes": dict(final.sizes), "alarms": dict(final.alarms)},
            "entries": {"v1": signed.v1, "v2": {str(i): d for i, d in signed.v2.items()}},
        }
        if detected:
            detail = f"ROLLBACK detected on both logs after the stale restore ({rollback_detail})"
        else:
            detail = f"ROLLBACK NOT detected: {rollback_detail}"
        detail += "; consistent again after the restore" if consistent else "; NOT consistent"
        return self._finish(bundle, observed, checks, problems, detail, facts, details)

    # -- log-key-rotation -----------------------------------------------------------------

    def _rotation(
        self, bundle: EvidenceBundle, progress: Progress | None, work: Path
    ) -> DrillFinding:
        s = self.scenario
        rotation = KeyRotation(self._lab, work / "monitor")
        _say(progress, "dr: signing into the v2 log with the current key")
        old = rotation.sign("before-rotation")
        size_before = rotation.watch()
        _say(progress, "dr: rotating the v2 log key (rekor restarted with the new key)")
        started = time.monotonic()
        domain = rotation.rotate()
        rto = time.monotonic() - started
        new = rotation.sign("after-rotation")
        alarm = None
        try:
            size_after = rotation.watch()
        except MonitorAlarm as exc:
            alarm, size_after = str(exc).splitlines()[0], None
        pinned = rotation.pinned
        if not s.keep_old_key:
            pinned = rotation.without_retired_keys(work / "careless-trust-config.json")
        _say(progress, "dr: verifying both bundles against the pinned trust root")
        old_problem = rotation.verify(old, pinned)
        new_problem = rotation.verify(new, pinned)
        retired = domain.material.retired_rekor_v2[-1]
        bundle.write_json("dr/trust_config.json", json.loads(pinned.read_text()))
        bundle.write_text("dr/before-rotation.sigstore.json", old.bundle_json)
        bundle.write_text("dr/after-rotation.sigstore.json", new.bundle_json)
        if old_problem is not None:
            observed = "old-entries-unverifiable"
        elif new_problem is not None:
            observed = "new-entries-unverifiable"
        else:
            observed = "rotated"
        distinct = old.log_id != new.log_id
        checks = [
            _check("old-entry-verifies", old_problem is None, old_problem or old.log_id),
            _check("new-entry-verifies", new_problem is None, new_problem or new.log_id),
            _check("new-key-signs", distinct, f"log ids {old.log_id} -> {new.log_id}"),
            _check(
                "log-consistent",
                alarm is None,
                alarm or f"grew from {size_before} to {size_after} across the rotation",
            ),
        ]
        problems = [] if distinct else ["the entry after the rotation names the old log id"]
        if alarm is not None:
            problems.append(f"the log is not consistent across the rotation: {alarm}")
        facts = {"rto_s": round(rto, 3), "consistent": alarm is None}
        details = {
            "keep_old_key": s.keep_old_key,
            "rotated_at": retired.end.isoformat().replace("+00:00", "Z"),
            "old_key_valid_for": {
                "start": retired.start.isoformat().replace("+00:00", "Z"),
                "end": retired.end.isoformat().replace("+00:00", "Z"),
            },
            "entries": {
                "before": {"digest": old.digest, "log_id": old.log_id, "problem": old_problem},
                "after": {"digest": new.digest, "log_id": new.log_id, "problem": new_problem},
            },
            "pinned": "dr/trust_config.json",
        }
        detail = (
            f"v2 log key rotated: the entry signed before "
            f"{'verifies' if old_problem is None else 'does NOT verify'} (old key), the one "
            f"after {'verifies' if new_problem is None else 'does NOT verify'} (new key)"
        )
        return self._finish(bundle, observed, checks, problems, detail, facts, details)

    # -- cache-poisoning ------------------------------------------------------------------

    def _cache(self, bundle: EvidenceBundle, progress: Progress | None, work: Path) -> DrillFinding:
        s = self.scenario
        assert s.subject is not None  # the scenario loader requires it for this drill
        lab = self._lab
        trust = lab.endpoints.trust_config
        if trust is None:
            raise ConfigError(f"lab {lab.config.lab_id} has no Sigstore stack to sign with")
        signer = SigstoreSigner(trust, lab.mint_token, lab.config.identity, lab.config.issuer)
        pins = TrustPins(
            trust_config=trust,
            identity=IdentityPin(identity=lab.config.identity, issuer=lab.config.issuer),
        )
        cache = work / "wheel-cache"
        _say(progress, f"dr: building the wheel cache of {s.subject} (pip wheel, offline)")
        wheel = build_wheel(s.subject, cache)
        _say(progress, "dr: recording the cache (cihub cache record)")
        recorded = record_cache(cache, bundle.path_for(CACHE_MANIFEST), signer)
        if s.poison:
            _say(progress, f"dr: POISONING the cache: swapping {wheel.name}")
            shutil.copyfile(poisoned_wheel(s.subject, work), wheel)
        check = None
        if s.sentinel:
            _say(progress, "dr: verifying the cache before the install (cihub cache verify)")
            check = verify_cache(
                cache, recorded.manifest.read_bytes(), recorded.signature.read_bytes(), pins
            )
        target = work / "site"
        requirement = wheel.name.split("-", 1)[0]
        if check is None or check.verdict == "intact":
            result = install(cache, target, requirement)
        else:
            result = installed(target, ran=False)
        return self._cache_finding(bundle, recorded, check, result, wheel.name)

    def _cache_finding(
        self,
        bundle: EvidenceBundle,
        recorded: RecordedCache,
        check: CacheCheck | None,
        result: Installed,
        wheel: str,
    ) -> DrillFinding:
        s = self.scenario
        if result.origin == POISON_MARK:
            observed = "poison-installed"
        elif result.ran:
            observed = "intact-installed"
        else:
            observed = "caught" if s.poison else "intact-blocked"
        cache_record: dict[str, Any] = (
            check.record_json()
            if check is not None
            else {
                "verdict": "unverified",
                "files": recorded.files,
                "manifest_digest": recorded.digest,
                "signature_verified": False,
            }
        )
        gate = (
            "no sentinel: the install trusted the cache"
            if check is None
            else f"sentinel: {check.verdict} ({'; '.join(check.lines()[1:]) or 'no difference'})"
        )
        checks = [
            _check("recorded", True, f"{recorded.files} files, {recorded.digest}"),
            _check(
                "sentinel",
                check is not None and (check.verdict != "intact") == s.poison,
                gate,
            ),
            _check(
                "poison-not-installed",
                result.origin != POISON_MARK,
                f"installed: {result.origin or 'nothing'}",
            ),
        ]
        details = {
            "poisoned": wheel if s.poison else None,
            "sentinel": s.sentinel,
            "cache": cache_record,
            "install": {"ran": result.ran, "origin": result.origin},
        }
        detail = (
            f"{'poisoned' if s.poison else 'genuine'} wheel cache; {gate}; install "
            f"{'ran' if result.ran else 'blocked'}, installed {result.origin or 'nothing'}"
        )
        return self._finish(
            bundle, observed, checks, [], detail, {}, details, record={"cache": cache_record}
        )

    # -- every drill ----------------------------------------------------------------------

    def _finish(
        self,
        bundle: EvidenceBundle,
        observed: str,
        checks: list[dict[str, Any]],
        problems: list[str],
        detail: str,
        facts: dict[str, Any],
        details: dict[str, Any],
        record: dict[str, Any] | None = None,
    ) -> DrillFinding:
        """Judge `observed` against the scenario, write `dr/report.json` and make the finding.

        Args:
            facts: what the record's `dr` object carries besides the drill, target and report
                path (RPO, RTO, ...); the report carries them too.
            details: what only the report carries.
            record: more objects for the pipeline_run record (e.g. `cache`).
        """
        s = self.scenario
        if observed != s.expect:
            problems.insert(0, f"observed {observed}, expected {s.expect}")
        met = not problems
        named = {"drill": s.drill, "target": s.target}
        report = {
            "passed": met,
            "verdict": "pass" if met else "fail",
            "observed": observed,
            "expected": s.expect,
            "checks": checks,
            "scenario": s.name,
            **named,
            **facts,
            **details,
        }
        self.report = report
        bundle.write_json(REPORT, report)
        return DrillFinding(
            observed=observed,
            expected=s.expect,
            met=met,
            detail=detail + (" (as expected)" if met else f"; expected {s.expect}"),
            lines=tuple(problems),
            record={"dr": {**named, **facts, "report": REPORT}, **(record or {})},
            problems=tuple(problems),
        )


def _check(name: str, ok: bool, detail: str) -> dict[str, Any]:
    return {"name": name, "ok": ok, "detail": detail}
