"""A typed client of the fault proxy's Toxiproxy v2 HTTP API (ours or a real Toxiproxy).

Example:
    client = ToxiproxyClient("http://127.0.0.1:8474")
    proxy = client.create_proxy("registry", "0.0.0.0:15000", "registry:5000")
    with client.toxic("registry", "latency", {"latency": 300}):
        ...  # every response through the proxy is 300 ms late
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import quote

import requests

from lab.errors import FaultProxyError

_logger = logging.getLogger(__name__)

DOWNSTREAM = "downstream"
UPSTREAM = "upstream"


class ToxiproxyAPIError(FaultProxyError):
    """The API answered with an error status.

    Attributes:
        status: the HTTP status code (404 missing, 409 conflict, 400 bad request, ...).
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Toxic:
    """A toxic on a proxy.

    Attributes:
        name: unique within the proxy; the server defaults it to `<type>_<stream>`.
        type: latency, bandwidth, slow_close, timeout, reset_peer, slicer, limit_data, noop.
        stream: "downstream" (server -> client) or "upstream" (client -> server).
        toxicity: probability in [0, 1] that the toxic applies to a connection.
        attributes: the type's attributes, e.g. {"latency": 300, "jitter": 0}.
    """

    name: str
    type: str
    stream: str
    toxicity: float
    attributes: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Toxic:
        """Build from the API's JSON.

        Raises:
            FaultProxyError: a field is missing or has the wrong type.
        """
        try:
            return cls(
                name=str(data["name"]),
                type=str(data["type"]),
                stream=str(data.get("stream") or DOWNSTREAM),
                toxicity=float(data.get("toxicity", 1.0)),
                attributes=dict(data.get("attributes") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FaultProxyError(f"fault proxy: malformed toxic in response: {data!r}") from exc


@dataclass(frozen=True)
class Proxy:
    """A proxy: where it listens, where it forwards, and its toxics.

    Attributes:
        name: the proxy's name.
        listen: the address it listens on, resolved ("127.0.0.1:39021" for a port 0).
        upstream: the address it forwards to.
        enabled: False when it was taken down (nothing listens).
        toxics: its toxics, upstream stream first.
    """

    name: str
    listen: str
    upstream: str
    enabled: bool
    toxics: tuple[Toxic, ...] = ()

    @property
    def listen_port(self) -> int:
        """The port part of `listen`."""
        return int(self.listen.rsplit(":", 1)[1])

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Proxy:
        """Build from the API's JSON.

        Raises:
            FaultProxyError: a field is missing or has the wrong type.
        """
        try:
            return cls(
                name=str(data["name"]),
                listen=str(data["listen"]),
                upstream=str(data["upstream"]),
                enabled=bool(data["enabled"]),
                toxics=tuple(Toxic.from_json(t) for t in data.get("toxics") or ()),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FaultProxyError(f"fault proxy: malformed proxy in response: {data!r}") from exc


class ToxiproxyClient:
    """One Toxiproxy API endpoint; all methods raise `FaultProxyError` on failure.

    Args:
        base_url: the API's URL, e.g. "http://127.0.0.1:8474".
        timeout: seconds to wait for each API call.

    Example:
        with ToxiproxyClient("http://127.0.0.1:8474") as client:
            client.add_toxic("registry", "timeout", {"timeout": 0}, name="blackhole")
            client.remove_toxic("registry", "blackhole")
    """

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()

    def __enter__(self) -> ToxiproxyClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()

    # -- server ---------------------------------------------------------------------------

    def version(self) -> str:
        """The server's version: "2.12.0" from `{"version": "2.12.0"}` (or a plain-text body,
        as Toxiproxy before 2.7 sends).

        Raises:
            FaultProxyError: the server can't be reached or answers with an error.
        """
        response = self._request("GET", "/version", what="get version")
        try:
            data = response.json()
        except ValueError:
            return response.text.strip()
        if isinstance(data, dict) and "version" in data:
            return str(data["version"])
        return response.text.strip()

    def reset(self) -> None:
        """Enable every proxy and remove every toxic.

        Raises:
            FaultProxyError: the server refused or can't be reached.
        """
        self._request("POST", "/reset", what="reset")

    # -- proxies --------------------------------------------------------------------------

    def proxies(self) -> dict[str, Proxy]:
        """Every proxy by name.

        Raises:
            FaultProxyError: the server can't be reached or answers with an error.
        """
        data = self._json(self._request("GET", "/proxies", what="list proxies"), dict)
        return {name: Proxy.from_json(value) for name, value in data.items()}

    def create_proxy(self, name: str, listen: str, upstream: str, enabled: bool = True) -> Proxy:
        """Create a proxy; a listen port 0 gets a free port, reported in the result.

        Args:
            name: the new proxy's name.
            listen: "host:port" to listen on, e.g. "0.0.0.0:15000" or "127.0.0.1:0".
            upstream: "host:port" to forward to.
            enabled: whether it starts listening right away.

        Raises:
            ToxiproxyAPIError: 409 if the name is taken, 400 for bad input, 500 if it
                can't listen.
            FaultProxyError: the server can't be reached.

        Example:
            client.create_proxy("registry", "0.0.0.0:15000", "registry:5000")
        """
        body = {"name": name, "listen": listen, "upstream": upstream, "enabled": enabled}
        response = self._request("POST", "/proxies", body, what=f"create proxy {name}")
        return Proxy.from_json(self._json(response, dict))

    def get_proxy(self, name: str) -> Proxy:
        """One proxy with its toxics.

        Raises:
            ToxiproxyAPIError: 404 when there's no such proxy.
            FaultProxyError: the server can't be reached.
        """
        response = self._request("GET", _proxy_path(name), what=f"get proxy {name}")
        return Proxy.from_json(self._json(response, dict))

    def update_proxy(
        self,
        name: str,
        *,
        listen: str | None = None,
        upstream: str | None = None,
        enabled: bool | None = None,
    ) -> Proxy:
        """Change a proxy's fields; None leaves a field as it is. A new listen or upstream
        restarts the proxy; `enabled=False` closes its listener and all its connections.

        Raises:
            ToxiproxyAPIError: 404 when there's no such proxy, 500 if it can't listen.
            FaultProxyError: the server can't be reached.

        Example:
            client.update_proxy("registry", enabled=False)  # the registry is "down"
        """
        body: dict[str, Any] = {}
        if listen is not None:
            body["listen"] = listen
        if upstream is not None:
            body["upstream"] = upstream
        if enabled is not None:
            body["enabled"] = enabled
        response = self._request("PATCH", _proxy_path(name), body, what=f"update proxy {name}")
        return Proxy.from_json(self._json(response, dict))

    def delete_proxy(self, name: str) -> None:
        """Delete a proxy, closing its connections.

        Raises:
            ToxiproxyAPIError: 404 when there's no such proxy.
            FaultProxyError: the server can't be reached.
        """
        self._request("DELETE", _proxy_path(name), what=f"delete proxy {name}")

    def populate(self, proxies: Iterable[Mapping[str, Any]]) -> list[Proxy]:
        """Create or replace proxies in bulk. A proxy whose listen and upstream already match
        is left as it is (with its toxics); one that differs is replaced.

        Args:
            proxies: dicts with "name", "listen", "upstream" and optionally "enabled".

        Raises:
            ToxiproxyAPIError: 400 for bad input (nothing is created), or the status of the
                first proxy that failed (those before it were created).
            FaultProxyError: the server can't be reached.

        Example:
            client.populate([{"name": "db", "listen": "0.0.0.0:15432", "upstream": "db:5432"}])
        """
        body = [dict(p) for p in proxies]
        names = ", ".join(str(p.get("name")) for p in body)
        response = self._request("POST", "/populate", body, what=f"populate proxies {names}")
        data = self._json(response, dict)
        return [Proxy.from_json(p) for p in data.get("proxies") or ()]

    # -- toxics ---------------------------------------------------------------------------

    def toxics(self, proxy: str) -> list[Toxic]:
        """A proxy's toxics.

        Raises:
            ToxiproxyAPIError: 404 when there's no such proxy.
            FaultProxyError: the server can't be reached.
        """
        path = f"{_proxy_path(proxy)}/toxics"
        data = self._json(self._request("GET", path, what=f"list toxics of proxy {proxy}"), list)
        return [Toxic.from_json(t) for t in data]

    def get_toxic(self, proxy: str, name: str) -> Toxic:
        """One toxic of a proxy.

        Raises:
            ToxiproxyAPIError: 404 when there's no such proxy or toxic.
            FaultProxyError: the server can't be reached.
        """
        what = f"get toxic {name} of proxy {proxy}"
        response = self._request("GET", _toxic_path(proxy, name), what=what)
        return Toxic.from_json(self._json(response, dict))

    def add_toxic(
        self,
        proxy: str,
        type: str,
        attributes: Mapping[str, Any],
        *,
        name: str | None = None,
        stream: str = DOWNSTREAM,
        toxicity: float = 1.0,
    ) -> Toxic:
        """Add a toxic to a proxy; it also affects connections that are already open.

        Args:
            proxy: the proxy's name.
            type: latency, bandwidth, slow_close, timeout, reset_peer, slicer, limit_data.
            attributes: the type's attributes, e.g. {"latency": 300, "jitter": 50}.
            name: the toxic's name; the server's default is `<type>_<stream>`.
            stream: "downstream" (responses) or "upstream" (requests).
            toxicity: probability in [0, 1] that it applies to a connection.

        Raises:
            ToxiproxyAPIError: 404 no such proxy, 409 name taken, 400 bad type/attributes.
            FaultProxyError: the server can't be reached.

        Example:
            client.add_toxic("registry", "bandwidth", {"rate": 100}, stream="upstream")
        """
        body: dict[str, Any] = {
            "type": type,
            "stream": stream,
            "toxicity": toxicity,
            "attributes": dict(attributes),
        }
        if name is not None:
            body["name"] = name
        label = name or f"{type}_{stream}"
        path = f"{_proxy_path(proxy)}/toxics"
        response = self._request("POST", path, body, what=f"add toxic {label} to proxy {proxy}")
        return Toxic.from_json(self._json(response, dict))

    def update_toxic(
        self,
        proxy: str,
        name: str,
        *,
        attributes: Mapping[str, Any] | None = None,
        toxicity: float | None = None,
    ) -> Toxic:
        """Change a toxic's attributes (merged into the current ones) or toxicity.

        Raises:
            ToxiproxyAPIError: 404 no such proxy or toxic, 400 bad attributes.
            FaultProxyError: the server can't be reached.

        Example:
            client.update_toxic("registry", "latency_downstream", attributes={"latency": 50})
        """
        body: dict[str, Any] = {}
        if attributes is not None:
            body["attributes"] = dict(attributes)
        if toxicity is not None:
            body["toxicity"] = toxicity
        what = f"update toxic {name} of proxy {proxy}"
        response = self._request("PATCH", _toxic_path(proxy, name), body, what=what)
        return Toxic.from_json(self._json(response, dict))

    def remove_toxic(self, proxy: str, name: str) -> None:
        """Remove a toxic. (Removing a `timeout` toxic closes the connections it held.)

        Raises:
            ToxiproxyAPIError: 404 no such proxy or toxic.
            FaultProxyError: the server can't be reached.
        """
        what = f"remove toxic {name} from proxy {proxy}"
        self._request("DELETE", _toxic_path(proxy, name), what=what)

    @contextmanager
    def toxic(
        self,
        proxy: str,
        type: str,
        attributes: Mapping[str, Any],
        *,
        name: str | None = None,
        stream: str = DOWNSTREAM,
        toxicity: float = 1.0,
    ) -> Iterator[Toxic]:
        """Add a toxic for the duration of a `with` block; it is removed on exit, also after
        an exception. A toxic already gone on exit (say, after `reset()`) is fine.

        Args:
            proxy, type, attributes, name, stream, toxicity: as for `add_toxic`.

        Raises:
            FaultProxyError: adding failed, or removing failed when the block succeeded.

        Example:
            with client.toxic("registry", "latency", {"latency": 300}) as toxic:
                assert toxic.name == "latency_downstream"
        """
        added = self.add_toxic(proxy, type, attributes, name=name, stream=stream, toxicity=toxicity)
        failed = False
        try:
            yield added
        except BaseException:
            failed = True
            raise
        finally:
            try:
                self.remove_toxic(proxy, added.name)
            except ToxiproxyAPIError as exc:
                if exc.status != 404 and not failed:
                    raise
                _logger.warning("%s", exc)
            except FaultProxyError as exc:
                if not failed:
                    raise
                _logger.warning("%s", exc)

    # -- plumbing -------------------------------------------------------------------------

    def _request(
        self, method: str, path: str, body: object = None, *, what: str
    ) -> requests.Response:
        url = f"{self.base_url}{path}"
        _logger.debug("fault proxy: %s %s %s", method, url, body)
        try:
            response = self._session.request(method, url, json=body, timeout=self.timeout)
        except requests.RequestException as exc:
            raise FaultProxyError(
                f"fault proxy: {what} failed: cannot reach {self.base_url} ({type(exc).__name__})"
            ) from exc
        if response.status_code >= 400:
            raise ToxiproxyAPIError(
                f"fault proxy: {what} failed: HTTP {response.status_code}: {_error_text(response)}",
                response.status_code,
            )
        return response

    @staticmethod
    def _json(response: requests.Response, kind: type[Any]) -> Any:
        try:
            data = response.json()
        except ValueError as exc:
            raise FaultProxyError(
                f"fault proxy: {response.request.method} {response.url} answered "
                f"HTTP {response.status_code} with a body that is not JSON"
            ) from exc
        if not isinstance(data, kind):
            raise FaultProxyError(
                f"fault proxy: {response.request.method} {response.url} answered "
                f"a {type(data).__name__} where a {kind.__name__} was expected"
            )
        return data


def _proxy_path(name: str) -> str:
    return f"/proxies/{quote(name, safe='')}"


def _toxic_path(proxy: str, name: str) -> str:
    return f"{_proxy_path(proxy)}/toxics/{quote(name, safe='')}"


def _error_text(response: requests.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])
    text = response.text.strip().splitlines()
    return text[0] if text else response.reason or "no body"
