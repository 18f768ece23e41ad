"""Chaos probes: the lab's steady state, and fault checks that measure a fault is in effect.

Steady-state probes return True when the state holds (use `"tolerance": true`) and False or
raise when it does not. Fault checks (`FAULT_CHECKS`) raise `ActivityFailed` unless the fault
was measured: a latency seen, connections reset, a bandwidth limit, a container really paused.
The safe runner counts a fault as verified only when such a check in the method succeeded.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import requests
from chaoslib.exceptions import ActivityFailed  # type: ignore[import-untyped]

from harness.chaos.actions import Configuration, lab_container
from harness.chaos.vars import need
from harness.errors import CihubError
from harness.monitor import RekorMonitor, pinned_logs
from lab.errors import LabError
from lab.oci import DEFAULT_MANIFEST_ACCEPT, OciClient
from lab.toxiproxy import ToxiproxyClient

_logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
FAULT_CHECK_MARK = "__cihub_fault_check__"


def fault_check(func: F) -> F:
    """Mark a probe as a fault check: the safe runner counts a fault as verified only when a
    probe so marked succeeded in the method."""
    setattr(func, FAULT_CHECK_MARK, True)
    return func


PROBE_REPOSITORY = "cihub/chaos/probe"


def proxy_url(configuration: Configuration, proxy: str) -> str:
    """The host URL of a lab proxy, as the fault proxy lists it."""
    with ToxiproxyClient(need(configuration, "faultproxy_api_url")) as api:
        try:
            return f"http://127.0.0.1:{api.get_proxy(proxy).listen_port}"
        except LabError as exc:
            raise ActivityFailed(f"no proxy {proxy!r} in the lab: {exc}") from exc


def _health_url(configuration: Configuration, proxy: str) -> str:
    return proxy_url(configuration, proxy) + ("/v2/" if proxy == "registry" else "/healthz")


# -- steady state ------------------------------------------------------------------------------


def registry_healthy(timeout: float = 10.0, configuration: Configuration = None) -> bool:
    """The registry answers `/v2/` through the fault proxy."""
    try:
        status = requests.get(need(configuration, "registry_url") + "/v2/", timeout=timeout)
    except requests.RequestException as exc:
        _logger.info("registry: %s", exc)
        return False
    return status.status_code in (200, 401)


def answers_within(proxy: str, seconds: float, configuration: Configuration = None) -> bool:
    """A lab service answers its health check through `proxy` within `seconds`."""
    started = time.monotonic()
    try:
        ok = requests.get(_health_url(configuration, proxy), timeout=seconds).status_code < 500
    except requests.RequestException:
        return False
    return ok and time.monotonic() - started <= seconds


def answers_every_time(proxy: str, attempts: int = 30, configuration: Configuration = None) -> bool:
    """A lab service answers `attempts` fresh health checks through `proxy` in a row."""
    url = _health_url(configuration, proxy)
    for _ in range(attempts):
        try:
            with requests.Session() as session:
                if session.get(url, timeout=5).status_code >= 500:
                    return False
        except requests.RequestException:
            return False
    return True


def manifest_resolves(repository: str, reference: str, configuration: Configuration = None) -> bool:
    """A manifest resolves (by digest or tag) in the lab registry."""
    with OciClient(need(configuration, "registry_url"), retries=0) as client:
        try:
            client.resolve(repository, reference)
        except (CihubError, LabError) as exc:
            _logger.info("%s", exc)
            return False
    return True


def manifest_absent(repository: str, reference: str, configuration: Configuration = None) -> bool:
    """No manifest is referenced by `reference` (a failed push left nothing half-pushed).

    Raises:
        ActivityFailed: the registry cannot be asked (unreachable is not "absent").
    """
    url = f"{need(configuration, 'registry_url')}/v2/{repository}/manifests/{reference}"
    # Without an Accept naming OCI manifests the registry answers 404 for one that exists.
    accept = {"Accept": ", ".join(DEFAULT_MANIFEST_ACCEPT)}
    try:
        status = requests.head(url, headers=accept, timeout=10).status_code
    except requests.RequestException as exc:
        raise ActivityFailed(f"cannot ask the registry about {reference}: {exc}") from exc
    return status == 404


def log_consistent(configuration: Configuration = None) -> bool:
    """The log's signed checkpoint verifies and is consistent with the last one verified
    (kept in `<state_dir>/monitor`): no rollback, no split view.

    Raises:
        ActivityFailed: an alarm, or the log cannot be reached.
    """
    trust_config = Path(need(configuration, "trust_config"))
    try:
        pinned = pinned_logs(trust_config)[1]
        monitor = RekorMonitor(
            need(configuration, "rekor_url"),
            pinned.key,
            state_dir=Path(need(configuration, "state_dir")) / "monitor",
            key_name=pinned.name,
        )
        result = monitor.run()
    except (CihubError, KeyError) as exc:
        raise ActivityFailed(f"log check failed: {exc}") from exc
    _logger.info("log size %d (was %s)", result.current.size, result.previous)
    return True


def pushed_artifacts_verify(configuration: Configuration = None) -> bool:
    """Every artifact a push workload kept resolves by digest, and its manifest and blobs come
    back with their digests.

    Raises:
        ActivityFailed: one does not.
    """
    from harness.chaos.workloads import pushed_artifacts, verify_push

    with OciClient(need(configuration, "registry_url"), timeout=30) as client:
        for repository, manifest in pushed_artifacts(configuration):
            verify_push(client, repository, manifest)
    return True


def bundles_verify(configuration: Configuration = None) -> bool:
    """Every Sigstore bundle a signing workload kept verifies against the trust config and
    carries an inclusion proof with a checkpoint (never a bundle without a proof).

    Raises:
        ActivityFailed: a bundle does not verify or has no inclusion proof.
    """
    from harness.chaos.workloads import signed_bundles, verify_bundle_with_proof

    for artifact, bundle in signed_bundles(configuration):
        verify_bundle_with_proof(artifact, bundle, configuration)
    return True


# -- fault checks ------------------------------------------------------------------------------


@fault_check
def container_state_is(service: str, state: str, configuration: Configuration = None) -> str:
    """The lab service's container is in `state` (paused, exited, running) as the engine says.

    Raises:
        ActivityFailed: it is not.
    """
    container = lab_container(configuration, service)
    container.reload()
    found = str(container.attrs["State"]["Status"])
    if found != state:
        raise ActivityFailed(f"{service} is {found}, not {state}")
    return found


@fault_check
def latency_in_effect(
    proxy: str, min_ms: float, samples: int = 2, configuration: Configuration = None
) -> float:
    """Health checks through `proxy` take at least `min_ms` (the fastest of `samples`).

    Returns:
        the fastest answer's time in milliseconds.
    """
    url = _health_url(configuration, proxy)
    seen: list[float] = []
    for _ in range(max(1, samples)):
        started = time.monotonic()
        try:
            requests.get(url, timeout=30)
        except requests.RequestException as exc:
            raise ActivityFailed(f"{proxy}: no answer while measuring latency: {exc}") from exc
        seen.append((time.monotonic() - started) * 1000)
    fastest = min(seen)
    if fastest < min_ms:
        raise ActivityFailed(f"{proxy}: answered in {fastest:.0f} ms, expected >= {min_ms} ms")
    return round(fastest, 1)


@fault_check
def resets_in_effect(
    proxy: str, attempts: int = 20, configuration: Configuration = None
) -> dict[str, int]:
    """Of `attempts` fresh connections through `proxy`, at least one is reset by the peer.

    Returns:
        {"attempts": n, "reset": k}.
    """
    port = int(proxy_url(configuration, proxy).rsplit(":", 1)[1])
    request = b"GET /healthz HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n"
    reset = 0
    for _ in range(attempts):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(request)
                if not sock.recv(1):
                    reset += 1  # closed before answering: the toxic cut it
        except (ConnectionResetError, BrokenPipeError):
            reset += 1
        except OSError as exc:
            raise ActivityFailed(f"{proxy}: cannot connect while checking resets: {exc}") from exc
    if reset == 0:
        raise ActivityFailed(f"{proxy}: none of {attempts} connections was reset")
    return {"attempts": attempts, "reset": reset}


@fault_check
def upload_rate_at_most(
    max_kbps: float, size_kb: int = 128, configuration: Configuration = None
) -> float:
    """A blob upload to the registry through its proxy runs no faster than `max_kbps` KB/s.

    Returns:
        the measured rate in KB/s.
    """
    data = os.urandom(size_kb * 1024)
    with OciClient(need(configuration, "registry_url"), timeout=60, retries=0) as client:
        started = time.monotonic()
        try:
            client.push_blob(PROBE_REPOSITORY, data)
        except (CihubError, LabError) as exc:
            raise ActivityFailed(f"upload while measuring the rate failed: {exc}") from exc
        seconds = time.monotonic() - started
    rate = size_kb / seconds
    if rate > max_kbps:
        raise ActivityFailed(f"upload ran at {rate:.0f} KB/s, expected <= {max_kbps} KB/s")
    return round(rate, 1)


@fault_check
def no_answer_within(proxy: str, seconds: float, configuration: Configuration = None) -> float:
    """A request through `proxy` gets no answer within `seconds` (a timeout toxic, a paused
    service).

    Returns:
        how long the request waited.
    """
    started = time.monotonic()
    try:
        response = requests.get(_health_url(configuration, proxy), timeout=seconds)
    except requests.RequestException:
        return round(time.monotonic() - started, 2)
    raise ActivityFailed(f"{proxy} answered HTTP {response.status_code}: the fault is not on")
