"""One contract for the Toxiproxy HTTP API, run by three clients against two servers.

Clients: our `lab.toxiproxy.ToxiproxyClient`, and the unmodified PyPI clients
`toxiproxy-python` (module `toxiproxy`) and `chaostoolkit-toxiproxy` (module `chaostoxi`).
Servers: our fault proxy (lab/services/toxiproxy) started in-process, and a real Toxiproxy
when `TOXIPROXY_URL` is set (e.g. the compose `upstream` profile's http://127.0.0.1:18474).
The raw-HTTP tests at the end pin the protocol facts the clients rely on.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Protocol
from urllib.parse import urlsplit

import pytest
import requests
import toxiproxy
import toxiproxy.api
import toxiproxy.exceptions
from chaostoxi import toxiproxyapi
from chaostoxi.proxy import actions as chaos_proxy
from chaostoxi.proxy import probes as chaos_probes
from chaostoxi.toxic import actions as chaos_toxic

from lab.errors import FaultProxyError
from lab.services.toxiproxy import VERSION, ServerThread
from lab.toxiproxy import ToxiproxyAPIError, ToxiproxyClient

UPSTREAM_ENV = "TOXIPROXY_URL"
# An address nothing needs to answer on: these tests exercise the API, not the data path.
UPSTREAM = "127.0.0.1:1"


@pytest.fixture(scope="module")
def _cihub_server() -> Iterator[str]:
    with ServerThread() as server:
        yield server.url


@pytest.fixture(params=["cihub-server", "real-toxiproxy"])
def server_url(request: pytest.FixtureRequest) -> str:
    if request.param == "real-toxiproxy":
        real = os.environ.get(UPSTREAM_ENV)
        if not real:
            pytest.skip(f"{UPSTREAM_ENV} is not set: no real Toxiproxy to hold the contract to")
        return real.rstrip("/")
    ours: str = request.getfixturevalue("_cihub_server")
    return ours


@pytest.fixture
def name(server_url: str) -> Iterator[str]:
    """A fresh proxy name, deleted again after the test."""
    proxy = f"cihub-contract-{uuid.uuid4().hex[:10]}"
    yield proxy
    requests.delete(f"{server_url}/proxies/{proxy}", timeout=5)


# -- drivers: the same operations through each client -----------------------------------------


class Driver(Protocol):
    conflict: type[BaseException]

    def create(self, name: str, listen: str, upstream: str) -> dict[str, Any]: ...
    def get(self, name: str) -> dict[str, Any] | None: ...
    def set_enabled(self, name: str, enabled: bool) -> None: ...
    def delete(self, name: str) -> None: ...
    def add_toxic(
        self, proxy: str, name: str, type: str, attributes: dict[str, Any], stream: str
    ) -> None: ...
    def toxic_names(self, proxy: str) -> set[str]: ...
    def remove_toxic(self, proxy: str, name: str) -> None: ...
    def reset(self) -> None: ...


class CihubDriver:
    conflict = ToxiproxyAPIError

    def __init__(self, url: str) -> None:
        self.client = ToxiproxyClient(url)

    def version(self) -> str:
        return self.client.version()

    def create(self, name: str, listen: str, upstream: str) -> dict[str, Any]:
        proxy = self.client.create_proxy(name, listen, upstream)
        return {"listen": proxy.listen, "upstream": proxy.upstream, "enabled": proxy.enabled}

    def get(self, name: str) -> dict[str, Any] | None:
        if name not in self.client.proxies():
            return None
        proxy = self.client.get_proxy(name)
        return {"listen": proxy.listen, "upstream": proxy.upstream, "enabled": proxy.enabled}

    def set_enabled(self, name: str, enabled: bool) -> None:
        self.client.update_proxy(name, enabled=enabled)

    def delete(self, name: str) -> None:
        self.client.delete_proxy(name)

    def add_toxic(
        self, proxy: str, name: str, type: str, attributes: dict[str, Any], stream: str
    ) -> None:
        self.client.add_toxic(proxy, type, attributes, name=name, stream=stream)

    def toxic_names(self, proxy: str) -> set[str]:
        return {toxic.name for toxic in self.client.toxics(proxy)}

    def remove_toxic(self, proxy: str, name: str) -> None:
        self.client.remove_toxic(proxy, name)

    def reset(self) -> None:
        self.client.reset()


class ToxiproxyPythonDriver:
    """toxiproxy-python keeps its server address in class attributes of `APIConsumer`."""

    conflict = toxiproxy.exceptions.ProxyExists

    def __init__(self, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        parts = urlsplit(url)
        monkeypatch.setattr(toxiproxy.api.APIConsumer, "host", parts.hostname)
        monkeypatch.setattr(toxiproxy.api.APIConsumer, "port", parts.port)
        self.server = toxiproxy.Toxiproxy()

    def version(self) -> str:
        raw = self.server.version()
        assert isinstance(raw, bytes)
        try:
            return str(json.loads(raw)["version"])
        except (ValueError, KeyError, TypeError):
            return raw.decode().strip()

    @staticmethod
    def _fields(proxy: Any) -> dict[str, Any]:
        return {"listen": proxy.listen, "upstream": proxy.upstream, "enabled": proxy.enabled}

    def create(self, name: str, listen: str, upstream: str) -> dict[str, Any]:
        return self._fields(self.server.create(upstream=upstream, name=name, listen=listen))

    def get(self, name: str) -> dict[str, Any] | None:
        proxy = self.server.get_proxy(name)
        return None if proxy is None else self._fields(proxy)

    def set_enabled(self, name: str, enabled: bool) -> None:
        proxy = self.server.get_proxy(name)
        if enabled:
            proxy.enable()
        else:
            proxy.disable()

    def delete(self, name: str) -> None:
        assert self.server.destroy(self.server.get_proxy(name))

    def add_toxic(
        self, proxy: str, name: str, type: str, attributes: dict[str, Any], stream: str
    ) -> None:
        self.server.get_proxy(proxy).add_toxic(
            name=name, type=type, stream=stream, attributes=attributes
        )

    def toxic_names(self, proxy: str) -> set[str]:
        return set(self.server.get_proxy(proxy).toxics())

    def remove_toxic(self, proxy: str, name: str) -> None:
        assert self.server.get_proxy(proxy).destroy_toxic(name)

    def reset(self) -> None:
        assert self.server.reset()


class ChaostoxiDriver:
    """chaostoolkit-toxiproxy's activities, given a Chaos Toolkit configuration dict."""

    conflict = AssertionError  # create_proxy raises it when the server refuses

    def __init__(self, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        parts = urlsplit(url)
        self.configuration: dict[str, Any] = {
            "toxiproxy_host": parts.hostname,
            "toxiproxy_port": parts.port,
        }
        self.monkeypatch = monkeypatch

    def create(self, name: str, listen: str, upstream: str) -> dict[str, Any]:
        # create_proxy also exports "<name>_PORT" to os.environ: undo that after the test.
        self.monkeypatch.setenv(f"{name}_PORT", "")
        listen_host, listen_port = listen.rsplit(":", 1)
        upstream_host, upstream_port = upstream.rsplit(":", 1)
        assert chaos_proxy.create_proxy(
            proxy_name=name,
            upstream_host=upstream_host,
            upstream_port=int(upstream_port),
            listen_host=listen_host,
            listen_port=int(listen_port),
            configuration=self.configuration,
        )
        port = self.configuration[f"{name}_PORT"]
        assert os.environ[f"{name}_PORT"] == port
        found = self.get(name)
        assert found is not None
        assert found["listen"].endswith(f":{port}")
        return found

    def get(self, name: str) -> dict[str, Any] | None:
        if not chaos_probes.proxy_exist(name, configuration=self.configuration):
            return None
        return {
            field: chaos_probes.get_proxy_attribute(name, field, configuration=self.configuration)
            for field in ("listen", "upstream", "enabled")
        }

    def set_enabled(self, name: str, enabled: bool) -> None:
        action = chaos_proxy.enable_proxy if enabled else chaos_proxy.disable_proxy
        assert action(name, configuration=self.configuration)

    def delete(self, name: str) -> None:
        chaos_proxy.delete_proxy(name, configuration=self.configuration)

    def add_toxic(
        self, proxy: str, name: str, type: str, attributes: dict[str, Any], stream: str
    ) -> None:
        assert chaos_toxic.create_toxic(
            for_proxy=proxy,
            toxic_name=name,
            toxic_type=type,
            stream=stream,
            attributes=attributes,
            configuration=self.configuration,
        )

    def toxic_names(self, proxy: str) -> set[str]:
        found = toxiproxyapi.read_proxy(proxy, configuration=self.configuration)
        assert found is not None
        return {toxic["name"] for toxic in found["toxics"]}

    def remove_toxic(self, proxy: str, name: str) -> None:
        assert chaos_toxic.delete_toxic(proxy, name, configuration=self.configuration)

    def reset(self) -> None:
        assert chaos_proxy.reset(configuration=self.configuration)


DriverFactory = Callable[[str, pytest.MonkeyPatch], Any]
DRIVERS: dict[str, DriverFactory] = {
    "cihub-client": lambda url, _: CihubDriver(url),
    "toxiproxy-python": ToxiproxyPythonDriver,
    "chaostoxi": ChaostoxiDriver,
}


@pytest.fixture(params=sorted(DRIVERS))
def driver(request: pytest.FixtureRequest, server_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    return DRIVERS[request.param](server_url, monkeypatch)


# -- the contract -----------------------------------------------------------------------------


# chaostoolkit-toxiproxy has no version call, so it is not part of this one.
@pytest.mark.parametrize("client", ["cihub-client", "toxiproxy-python"])
def test_version(
    client: str, server_url: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    version = DRIVERS[client](server_url, monkeypatch).version()
    assert re.fullmatch(r"\d+\.\d+\.\d+.*|git", version), version
    if request.node.callspec.params["server_url"] == "cihub-server":
        assert version == VERSION


def test_proxy_lifecycle(driver: Driver, name: str) -> None:
    assert driver.get(name) is None
    created = driver.create(name, "127.0.0.1:0", UPSTREAM)
    assert created["upstream"] == UPSTREAM
    assert created["enabled"] is True
    host, port = created["listen"].rsplit(":", 1)
    assert host == "127.0.0.1"
    assert int(port) > 0  # port 0 was resolved
    assert driver.get(name) == created
    driver.set_enabled(name, False)
    assert driver.get(name) == {**created, "enabled": False}
    driver.set_enabled(name, True)
    assert driver.get(name) == created  # listening on the same address again
    driver.delete(name)
    assert driver.get(name) is None


def test_a_duplicate_name_is_refused(driver: Driver, name: str) -> None:
    driver.create(name, "127.0.0.1:0", UPSTREAM)
    with pytest.raises(driver.conflict):
        driver.create(name, "127.0.0.1:0", UPSTREAM)


def test_toxics_are_added_and_removed(driver: Driver, name: str) -> None:
    driver.create(name, "127.0.0.1:0", UPSTREAM)
    assert driver.toxic_names(name) == set()
    driver.add_toxic(name, "slow", "latency", {"latency": 100, "jitter": 10}, "downstream")
    driver.add_toxic(name, "cut", "limit_data", {"bytes": 1000}, "upstream")
    assert driver.toxic_names(name) == {"slow", "cut"}
    driver.remove_toxic(name, "slow")
    assert driver.toxic_names(name) == {"cut"}


def test_reset_enables_proxies_and_removes_toxics(driver: Driver, name: str) -> None:
    driver.create(name, "127.0.0.1:0", UPSTREAM)
    driver.add_toxic(name, "hold", "timeout", {"timeout": 0}, "downstream")
    driver.set_enabled(name, False)
    driver.reset()
    found = driver.get(name)
    assert found is not None
    assert found["enabled"] is True
    assert driver.toxic_names(name) == set()


# -- the protocol facts behind it, in raw HTTP --------------------------------------------------


def test_status_codes_and_shapes(server_url: str, name: str) -> None:
    body = {"name": name, "listen": "127.0.0.1:0", "upstream": UPSTREAM}
    created = requests.post(f"{server_url}/proxies", json=body, timeout=5)
    assert created.status_code == 201
    assert set(created.json()) == {"name", "listen", "upstream", "enabled", "toxics"}
    duplicate = requests.post(f"{server_url}/proxies", json=body, timeout=5)
    assert (duplicate.status_code, duplicate.json()) == (
        409,
        {"error": "proxy already exists", "status": 409},
    )
    missing = requests.get(f"{server_url}/proxies/{name}-missing", timeout=5)
    assert (missing.status_code, missing.json()) == (
        404,
        {"error": "proxy not found", "status": 404},
    )
    toxic = requests.post(
        f"{server_url}/proxies/{name}/toxics",
        json={"type": "latency", "attributes": {"latency": 10}},
        timeout=5,
    )
    assert toxic.status_code == 200  # not 201
    assert toxic.json() == {
        "attributes": {"latency": 10, "jitter": 0},
        "name": "latency_downstream",
        "type": "latency",
        "stream": "downstream",
        "toxicity": 1,
    }
    bad_type = requests.post(f"{server_url}/proxies/{name}/toxics", json={"type": "x"}, timeout=5)
    assert (bad_type.status_code, bad_type.json()["error"]) == (400, "invalid toxic type")
    patched = requests.patch(
        f"{server_url}/proxies/{name}/toxics/latency_downstream",
        json={"attributes": {"jitter": 5}},
        timeout=5,
    )
    assert patched.json()["attributes"] == {"latency": 10, "jitter": 5}
    gone = requests.delete(f"{server_url}/proxies/{name}/toxics/latency_downstream", timeout=5)
    assert (gone.status_code, gone.content) == (204, b"")
    toxic_missing = requests.get(f"{server_url}/proxies/{name}/toxics/nope", timeout=5)
    assert toxic_missing.json() == {"error": "toxic not found", "status": 404}
    no_name = requests.post(f"{server_url}/proxies", json={"upstream": UPSTREAM}, timeout=5)
    assert no_name.json() == {"error": "missing required field: name", "status": 400}


def test_version_and_populate_formats(server_url: str, name: str) -> None:
    version = requests.get(f"{server_url}/version", timeout=5)
    assert version.headers["Content-Type"] == "application/json;charset=utf-8"
    assert set(version.json()) == {"version"}
    body = [{"name": name, "listen": "127.0.0.1:0", "upstream": UPSTREAM}]
    populated = requests.post(f"{server_url}/populate", json=body, timeout=5)
    assert populated.status_code == 201
    (proxy,) = populated.json()["proxies"]
    assert proxy["name"] == name
    assert proxy["enabled"] is True
    reset = requests.post(f"{server_url}/reset", timeout=5)
    assert (reset.status_code, reset.content) == (204, b"")


def test_our_client_wraps_errors(server_url: str, name: str) -> None:
    client = ToxiproxyClient(server_url)
    with pytest.raises(ToxiproxyAPIError, match=rf"proxy {name}.*HTTP 404") as caught:
        client.get_proxy(name)
    assert caught.value.status == 404
    client.create_proxy(name, "127.0.0.1:0", UPSTREAM)
    with pytest.raises(ToxiproxyAPIError, match="HTTP 409") as conflict:
        client.create_proxy(name, "127.0.0.1:0", UPSTREAM)
    assert conflict.value.status == 409
    with pytest.raises(FaultProxyError, match="cannot reach"):
        ToxiproxyClient("http://127.0.0.1:1", timeout=1).version()


def test_our_client_covers_the_whole_api(server_url: str, name: str) -> None:
    client = ToxiproxyClient(server_url)
    (populated,) = client.populate([{"name": name, "listen": "127.0.0.1:0", "upstream": UPSTREAM}])
    assert populated.listen_port > 0
    assert client.proxies()[name] == populated
    moved = client.update_proxy(name, upstream="127.0.0.1:2")
    assert (moved.upstream, moved.listen) == ("127.0.0.1:2", populated.listen)
    added = client.add_toxic(name, "bandwidth", {"rate": 10}, stream="upstream", toxicity=0.5)
    assert (added.name, added.toxicity, dict(added.attributes)) == (
        "bandwidth_upstream",
        0.5,
        {"rate": 10},
    )
    updated = client.update_toxic(name, added.name, attributes={"rate": 20}, toxicity=1.0)
    assert (updated.toxicity, dict(updated.attributes)) == (1.0, {"rate": 20})
    assert client.get_toxic(name, added.name) == updated
    assert client.get_proxy(name).toxics == (updated,)
    client.remove_toxic(name, added.name)
    assert client.toxics(name) == []
    client.delete_proxy(name)
    assert name not in client.proxies()


def test_the_toxic_context_removes_it_even_after_an_exception(server_url: str, name: str) -> None:
    client = ToxiproxyClient(server_url)
    client.create_proxy(name, "127.0.0.1:0", UPSTREAM)
    with client.toxic(name, "latency", {"latency": 50}, name="ctx") as toxic:
        assert toxic.name == "ctx"
        assert [t.name for t in client.toxics(name)] == ["ctx"]
    assert client.toxics(name) == []
    with pytest.raises(RuntimeError, match="boom"), client.toxic(name, "timeout", {"timeout": 0}):
        assert len(client.toxics(name)) == 1
        raise RuntimeError("boom")
    assert client.toxics(name) == []
    with client.toxic(name, "slicer", {"average_size": 10}):
        client.reset()  # the toxic is already gone on exit: that's fine
    assert client.toxics(name) == []
