"""Chaos actions: fault-proxy toxics and container faults, each with its rollback.

Module-level functions an experiment names as `{"type": "python", "module":
"harness.chaos.actions", "func": ...}`. Every function takes the lab variables as Chaos Toolkit
`configuration` (see `harness.chaos.vars`). Container faults reach only containers that carry the
lab id of that configuration (`org.cihub.lab`) and a service label; anything else is refused, and
the fault proxy itself is never faulted (every rollback goes through it). Rollbacks are
idempotent: removing a toxic that is gone or unpausing a running container succeeds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import docker.errors
import requests
from chaoslib.exceptions import ActivityFailed  # type: ignore[import-untyped]
from docker.models.containers import Container

from harness.chaos.vars import need
from lab import labels
from lab._internal.docker import docker_client
from lab.config import PROXIED_SERVICES, SIGSTORE_PROXIED_SERVICES
from lab.errors import LabError
from lab.toxiproxy import ToxiproxyAPIError, ToxiproxyClient

_logger = logging.getLogger(__name__)

Configuration = Mapping[str, Any] | None

FAULTABLE_SERVICES = ("registry", "rekor", "fulcio", "tsa")
"""Lab services a container fault may hit (not the fault proxy: rollbacks go through it)."""
_PROXIED = {p.name: p for p in (*PROXIED_SERVICES, *SIGSTORE_PROXIED_SERVICES)}
FILL_FILE = ".cihub-chaos-fill"


# -- fault-proxy toxics ------------------------------------------------------------------------


def _toxiproxy(configuration: Configuration) -> ToxiproxyClient:
    return ToxiproxyClient(need(configuration, "faultproxy_api_url"))


def add_toxic(
    proxy: str,
    type: str,
    name: str = "",
    stream: str = "downstream",
    toxicity: float = 1.0,
    attributes: Mapping[str, Any] | None = None,
    configuration: Configuration = None,
) -> dict[str, Any]:
    """Add a toxic to a lab proxy (rollback: `remove_toxic` with the same name).

    Returns:
        the toxic as the fault proxy stored it.
    """
    with _toxiproxy(configuration) as api:
        try:
            toxic = api.add_toxic(
                proxy,
                type,
                dict(attributes or {}),
                name=name or None,
                stream=stream,
                toxicity=toxicity,
            )
        except LabError as exc:
            raise ActivityFailed(f"cannot add a {type} toxic to proxy {proxy}: {exc}") from exc
    return {"name": toxic.name, "type": toxic.type, "stream": toxic.stream}


def update_toxic(
    proxy: str,
    name: str,
    attributes: Mapping[str, Any],
    toxicity: float | None = None,
    configuration: Configuration = None,
) -> dict[str, Any]:
    """Change a toxic's attributes (and toxicity) in place."""
    with _toxiproxy(configuration) as api:
        try:
            toxic = api.update_toxic(proxy, name, attributes=dict(attributes), toxicity=toxicity)
        except LabError as exc:
            raise ActivityFailed(f"cannot update toxic {name} on proxy {proxy}: {exc}") from exc
    return {"name": toxic.name, "attributes": dict(toxic.attributes)}


def remove_toxic(proxy: str, name: str, configuration: Configuration = None) -> bool:
    """Remove a toxic; True if it was there (a missing one is not an error: rollbacks repeat)."""
    with _toxiproxy(configuration) as api:
        try:
            api.remove_toxic(proxy, name)
        except ToxiproxyAPIError as exc:
            if exc.status == 404:
                return False
            raise ActivityFailed(f"cannot remove toxic {name} from proxy {proxy}: {exc}") from exc
        except LabError as exc:
            raise ActivityFailed(f"cannot remove toxic {name} from proxy {proxy}: {exc}") from exc
    return True


def reset_toxics(configuration: Configuration = None) -> list[str]:
    """Remove every toxic of every proxy of the lab and re-enable the proxies.

    Returns:
        `<proxy>/<toxic>` of each toxic that was still there.
    """
    with _toxiproxy(configuration) as api:
        try:
            found = [f"{name}/{t.name}" for name in api.proxies() for t in api.toxics(name)]
            api.reset()
        except LabError as exc:
            raise ActivityFailed(f"cannot reset the fault proxy: {exc}") from exc
    return found


# -- container faults --------------------------------------------------------------------------


def lab_container(configuration: Configuration, service: str) -> Container:
    """The container of `service` in the configuration's lab, running or not.

    Raises:
        ActivityFailed: the service may not be faulted, or the lab has no such container.
    """
    if service not in FAULTABLE_SERVICES:
        raise ActivityFailed(
            f"service {service!r} may not be faulted (one of {', '.join(FAULTABLE_SERVICES)})"
        )
    lab_id = need(configuration, "lab_id")
    found = docker_client().containers.list(
        all=True, filters={"label": [f"{labels.LAB}={lab_id}", f"{labels.SERVICE}={service}"]}
    )
    # The engine filtered by label; check again, so nothing but the lab's container is touched.
    mine = [c for c in found if c.labels.get(labels.LAB) == lab_id]
    if len(mine) != 1:
        raise ActivityFailed(f"lab {lab_id} has {len(mine)} {service} containers, expected 1")
    return mine[0]


def _state(container: Container) -> str:
    container.reload()
    return str(container.attrs["State"]["Status"])


def kill_container(
    service: str, signal: str = "SIGKILL", configuration: Configuration = None
) -> str:
    """Kill a lab service's container (rollback: `start_container`). Returns its state."""
    container = lab_container(configuration, service)
    _engine(service, "kill", lambda: container.kill(signal=signal))
    return _wait_state(container, ("exited", "dead"), 10.0)


def stop_container(service: str, timeout: int = 5, configuration: Configuration = None) -> str:
    """Stop a lab service's container (rollback: `start_container`). Returns its state."""
    container = lab_container(configuration, service)
    _engine(service, "stop", lambda: container.stop(timeout=timeout))
    return _state(container)


def start_container(
    service: str, healthy_within: float = 60.0, configuration: Configuration = None
) -> str:
    """Start (or unpause) a lab service's container, point its proxy at the port the engine
    published it on this time, and wait until it answers through the fault proxy.
    Idempotent: a running service is only checked."""
    container = lab_container(configuration, service)
    state = _state(container)
    if state == "paused":
        _engine(service, "unpause", container.unpause)
    elif state != "running":
        _engine(service, "start", container.start)
    _repoint_proxy(configuration, service, container)
    _wait_healthy(configuration, service, healthy_within)
    return _state(container)


def restart_container(
    service: str, healthy_within: float = 60.0, configuration: Configuration = None
) -> str:
    """Restart a lab service's container and wait until it is healthy again."""
    container = lab_container(configuration, service)
    _engine(service, "restart", lambda: container.restart(timeout=5))
    _repoint_proxy(configuration, service, container)
    _wait_healthy(configuration, service, healthy_within)
    return _state(container)


def pause_container(service: str, configuration: Configuration = None) -> str:
    """Freeze a lab service's processes (rollback: `unpause_container`). Returns its state."""
    container = lab_container(configuration, service)
    _engine(service, "pause", container.pause)
    return _state(container)


def unpause_container(service: str, configuration: Configuration = None) -> str:
    """Unfreeze a lab service's container; a running one is left alone."""
    container = lab_container(configuration, service)
    if _state(container) == "paused":
        _engine(service, "unpause", container.unpause)
    return _state(container)


def disconnect_network(service: str, configuration: Configuration = None) -> bool:
    """Take a lab service off the lab network (rollback: `reconnect_network`)."""
    container = lab_container(configuration, service)
    network = docker_client().networks.get(need(configuration, "lab_id"))
    _engine(service, "disconnect", lambda: network.disconnect(container))
    return True


def reconnect_network(service: str, configuration: Configuration = None) -> bool:
    """Put a lab service back on the lab network, under its service name; False if it was
    on it already."""
    container = lab_container(configuration, service)
    network = docker_client().networks.get(need(configuration, "lab_id"))
    container.reload()
    if network.name in (container.attrs["NetworkSettings"]["Networks"] or {}):
        return False
    _engine(service, "reconnect", lambda: network.connect(container, aliases=[service]))
    _repoint_proxy(configuration, service, container)
    return True


def fill_volume(
    service: str, path: str, megabytes: int, configuration: Configuration = None
) -> int:
    """Write `megabytes` of zeros into a file under `path` (a volume) inside the service's
    container, to run it out of space (rollback: `release_volume`). Returns the bytes written."""
    container = lab_container(configuration, service)
    target = f"{path.rstrip('/')}/{FILL_FILE}"
    result = container.exec_run(
        ["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={int(megabytes)}"]
    )
    size = container.exec_run(["stat", "-c", "%s", target])
    if size.exit_code != 0:
        raise ActivityFailed(f"cannot fill {path} in {service}: {result.output!r}")
    output = size.output if isinstance(size.output, bytes) else b""
    return int(output.decode().strip() or 0)


def release_volume(service: str, path: str, configuration: Configuration = None) -> bool:
    """Remove the file `fill_volume` wrote; True if it was there."""
    container = lab_container(configuration, service)
    result = container.exec_run(["rm", f"{path.rstrip('/')}/{FILL_FILE}"])
    return result.exit_code == 0


# -- helpers -----------------------------------------------------------------------------------


def _engine(service: str, verb: str, call: Callable[[], Any]) -> None:
    """Ask the engine to do something to a service's container; its refusal as ActivityFailed."""
    try:
        call()
    except docker.errors.APIError as exc:
        raise ActivityFailed(f"cannot {verb} {service}: {exc.explanation}") from exc


def _wait_state(container: Container, states: tuple[str, ...], within: float) -> str:
    deadline = time.monotonic() + within
    state = _state(container)
    while state not in states and time.monotonic() < deadline:
        time.sleep(0.1)
        state = _state(container)
    return state


def _repoint_proxy(configuration: Configuration, service: str, container: Container) -> None:
    """A restarted container may be published on another host port: point its proxy there."""
    proxied = _PROXIED.get(service)
    if proxied is None:
        return
    deadline = time.monotonic() + 10.0
    bindings: list[Any] = []
    while time.monotonic() < deadline:
        container.reload()
        ports = container.attrs["NetworkSettings"]["Ports"] or {}
        bindings = ports.get(f"{proxied.upstream_port}/tcp") or []
        if bindings:
            break
        time.sleep(0.1)
    if not bindings:
        raise ActivityFailed(f"{service}: port {proxied.upstream_port} is not published")
    upstream = f"127.0.0.1:{bindings[0]['HostPort']}"
    with _toxiproxy(configuration) as api:
        if api.get_proxy(proxied.name).upstream != upstream:
            _logger.info("%s is now on %s: repointing its proxy", service, upstream)
            api.update_proxy(proxied.name, upstream=upstream)


def _wait_healthy(configuration: Configuration, service: str, within: float) -> None:
    url = _service_url(configuration, service)
    path, ok = ("/v2/", (200, 401)) if service == "registry" else ("/healthz", (200,))
    deadline = time.monotonic() + within
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            status = requests.get(url + path, timeout=2).status_code
        except requests.RequestException as exc:
            last = type(exc).__name__
        else:
            if status in ok:
                return
            last = f"HTTP {status}"
        time.sleep(0.2)
    raise ActivityFailed(f"{service} is not healthy within {within:.0f} s (last: {last})")


def _service_url(configuration: Configuration, service: str) -> str:
    if service == "registry":
        return need(configuration, "registry_url")
    if service == "rekor":
        return need(configuration, "rekor_url")
    with _toxiproxy(configuration) as api:
        return f"http://127.0.0.1:{api.get_proxy(service).listen_port}"
