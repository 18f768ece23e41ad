"""The lab against the real Docker engine: up, healthy through the proxy, and gone after down."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

from lab import Lab, LabConfig, labels
from lab._internal.docker import docker_client
from lab.errors import ImageBuildError, PortInUse, ServiceStartError
from lab.images import LAB_IMAGES, ImageBuilder, ImageRef, ImageSpec

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    return docker_client()


def _leftovers(client: docker.DockerClient, lab_id: str) -> list[str]:
    selector = {"label": f"{labels.LAB}={lab_id}"}
    found = [c.name for c in client.containers.list(all=True, filters=selector)]
    found += [n.name for n in client.networks.list(filters=selector)]
    found += [v.name for v in client.volumes.list(filters=selector)]
    return [str(name) for name in found]


def test_registry_answers_through_the_fault_proxy(lab: Lab) -> None:
    endpoints = lab.endpoints
    assert endpoints.registry_url.startswith("http://127.0.0.1:")
    response = requests.get(endpoints.registry_url + "/v2/", timeout=5)
    assert response.status_code == 200
    assert response.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    proxy = lab.toxiproxy.get_proxy("registry")
    registry = lab.service_container("registry")
    registry.reload()
    published = registry.attrs["NetworkSettings"]["Ports"]["5000/tcp"][0]["HostPort"]
    assert proxy.upstream == f"127.0.0.1:{published}" and proxy.enabled


def test_every_port_is_published_on_loopback_only(lab: Lab, client: docker.DockerClient) -> None:
    selector = {"label": f"{labels.LAB}={lab.config.lab_id}"}
    containers = client.containers.list(filters=selector)
    assert {c.labels[labels.SERVICE] for c in containers} == {
        "registry",
        "faultproxy",
        "rekor",
        "fulcio",
        "tsa",
    }
    bindings = [
        binding
        for container in containers
        for port_bindings in (container.attrs["NetworkSettings"]["Ports"] or {}).values()
        for binding in (port_bindings or [])
    ]
    assert bindings, "the services publish their ports for the fault proxy"
    assert {binding["HostIp"] for binding in bindings} == {"127.0.0.1"}
    # The fault proxy is on the host network: it listens on 127.0.0.1 alone.
    faultproxy = lab.service_container("faultproxy")
    assert faultproxy.attrs["HostConfig"]["NetworkMode"] == "host"
    listens = [proxy.listen for proxy in lab.toxiproxy.proxies().values()]
    assert listens and all(listen.startswith("127.0.0.1:") for listen in listens)
    assert lab.endpoints.faultproxy_api_url.startswith("http://127.0.0.1:")


def test_registry_storage_lives_on_a_labelled_named_volume(
    lab: Lab, client: docker.DockerClient
) -> None:
    volume = client.volumes.get(lab.volume_names["registry"])
    assert volume.attrs["Labels"][labels.LAB] == lab.config.lab_id
    registry = client.containers.get(f"{lab.config.lab_id}-registry")
    mounts = {m["Destination"]: m for m in registry.attrs["Mounts"]}
    assert mounts["/var/lib/docker-registry"]["Name"] == volume.name


def test_lab_facts_name_images_and_versions(lab: Lab) -> None:
    facts = lab.facts()
    assert facts["images"]["registry"]["id"].startswith("sha256:")
    assert "2.8" in facts["services"]["registry"]["version"]
    assert facts["services"]["faultproxy"]["version"] not in ("", "unknown")


def test_registry_auth_uses_generated_credentials(
    tmp_path: Path, client: docker.DockerClient
) -> None:
    config = LabConfig(registry_auth=True, evidence_dir=tmp_path)
    with Lab(config, client=client) as lab:
        creds = lab.registry_credentials
        assert creds is not None
        url = lab.endpoints.registry_url + "/v2/"
        assert requests.get(url, timeout=5).status_code == 401
        assert (
            requests.get(url, auth=(creds.username, creds.password), timeout=5).status_code == 200
        )
        assert creds.password not in repr(creds)
    logs = "".join(p.read_text() for p in (tmp_path / "lab" / config.lab_id).glob("*.log"))
    assert logs, "teardown saved the containers' logs"
    assert creds.password not in logs
    assert _leftovers(client, config.lab_id) == []


def test_a_taken_port_names_the_service_and_leaves_nothing(
    tmp_path: Path, client: docker.DockerClient
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = LabConfig(evidence_dir=tmp_path, host_ports={"registry": port})
        with pytest.raises(PortInUse, match=rf"^faultproxy: proxy registry: host port {port} "):
            Lab(config, client=client).start()
    assert _leftovers(client, config.lab_id) == []


class _BrokenRegistryImages(ImageBuilder):
    """Runs the bare base image as the registry: it never logs that it listens."""

    def ensure(self, names: object) -> dict[str, ImageRef]:
        found = ImageBuilder(self.client).ensure(["faultproxy", "sigstack"])
        return {**found, "registry": ImageBuilder(self.client).ensure_base()}


def test_a_service_that_never_gets_healthy_is_torn_down_and_its_log_kept(
    tmp_path: Path, client: docker.DockerClient
) -> None:
    # The bare base image exits at once: found within a second, whatever the timeout.
    config = LabConfig(evidence_dir=tmp_path, startup_timeout=30)
    with pytest.raises(ServiceStartError, match=r"^registry: "):
        Lab(config, client=client, builder=_BrokenRegistryImages(client)).start()
    assert (tmp_path / "lab" / config.lab_id / "registry.log").exists()
    assert _leftovers(client, config.lab_id) == []


def test_a_failing_image_build_names_the_image(
    client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        LAB_IMAGES, "broken", ImageSpec("broken", "tests/data/images/broken/Dockerfile")
    )
    with pytest.raises(ImageBuildError, match=r"^image broken: build failed: .*non-zero code: 3"):
        ImageBuilder(client).ensure(["broken"])


# -- hardening and resets ---------------------------------------------------------------------

_ROOT_ALLOWED = {"rekor"}
"""Services that run as root (with no capability at all): rekor, whose log volume is root's."""


def test_every_lab_container_runs_hardened(lab: Lab, client: docker.DockerClient) -> None:
    selector = {"label": f"{labels.LAB}={lab.config.lab_id}"}
    containers = [
        c
        for c in client.containers.list(all=True, filters=selector)
        if c.labels.get(labels.SERVICE) != labels.CLAIM_SERVICE
    ]
    assert {c.labels[labels.SERVICE] for c in containers} == {
        "registry",
        "faultproxy",
        "rekor",
        "fulcio",
        "tsa",
    }
    for container in containers:
        service = container.labels[labels.SERVICE]
        host = container.attrs["HostConfig"]
        assert host["CapDrop"] == ["ALL"], service
        assert not host["CapAdd"], service
        assert "no-new-privileges:true" in host["SecurityOpt"], service
        assert host["ReadonlyRootfs"] is True, service
        assert 0 < host["PidsLimit"] <= 256, service
        assert 0 < host["Memory"] <= 512 * 2**20, service
        assert not host["Privileged"], service
        user = container.attrs["Config"]["User"]
        if service not in _ROOT_ALLOWED:
            assert user and not user.startswith(("0", "root")), f"{service} runs as {user!r}"
        # What the running process really has, not only what was asked for.
        status = container.exec_run(["cat", "/proc/1/status"]).output.decode()
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        assert int(fields["CapEff"], 16) == 0, service
        assert int(fields["CapBnd"], 16) == 0, service
        assert fields["NoNewPrivs"].strip() == "1", service
        if service not in _ROOT_ALLOWED:
            assert fields["Uid"].split()[0] != "0", service
        written = container.exec_run(["sh", "-c", "touch /probe-rootfs"])
        assert written.exit_code != 0, f"{service}: the root filesystem took a write"


def test_reset_peer_reaches_a_host_client_as_econnreset(lab: Lab) -> None:
    port = lab.endpoints.proxies["registry"].host_port
    request = b"GET /v2/ HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n"

    def exchange() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(request)
            received = b""
            while chunk := conn.recv(65536):
                received += chunk
            return received

    assert exchange().startswith(b"HTTP/1.1 200"), "control: no toxic, a normal answer"
    with (
        lab.toxiproxy.toxic("registry", "reset_peer", {"timeout": 0}),
        pytest.raises(ConnectionResetError),
    ):
        exchange()
    assert exchange().startswith(b"HTTP/1.1 200"), "the toxic is gone again"


def test_a_restarted_service_keeps_its_port_behind_its_proxy(lab: Lab) -> None:
    # DR drills stop and start services: the fault proxy's route to them must still hold.
    registry = lab.service_container("registry")
    registry.reload()
    before = registry.attrs["NetworkSettings"]["Ports"]["5000/tcp"][0]["HostPort"]
    registry.restart(timeout=5)
    lab.wait_healthy("registry")
    registry.reload()
    assert registry.attrs["NetworkSettings"]["Ports"]["5000/tcp"][0]["HostPort"] == before
    assert requests.get(lab.endpoints.registry_url + "/v2/", timeout=5).status_code == 200


# -- the CLI, many labs per engine ------------------------------------------------------------


@dataclass
class _User:
    """A user of the CLI with a HOME, state and trust domain of their own (another owner)."""

    home: Path
    env: dict[str, str]
    evidence: Path
    started: list[str] = field(default_factory=list)

    @property
    def owner(self) -> str:
        return labels.caller_owner(self.env)

    def cihub(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "harness", *args],
            capture_output=True,
            text=True,
            timeout=300,
            env=self.env,
            stdin=subprocess.DEVNULL,
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "harness", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            stdin=subprocess.DEVNULL,
        )

    def up(self, *args: str) -> dict[str, Any]:
        done = self.cihub("lab", "up", "--json", "--evidence-dir", str(self.evidence), *args)
        assert done.returncode == 0, done.stderr
        info: dict[str, Any] = json.loads(done.stdout)
        self.started.append(str(info["lab_id"]))
        return info

    def status(self) -> dict[str, dict[str, Any]]:
        done = self.cihub("lab", "status", "--json")
        assert done.returncode == 0, done.stderr
        return {row["lab_id"]: row for row in json.loads(done.stdout)["labs"]}


def _make_user(root: Path, name: str) -> Iterator[_User]:
    home = root / name
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_STATE_HOME": str(home / "state"),
        "CIHUB_TRUST_DOMAIN": str(home / "trust-domain"),
    }
    user = _User(home, env, home / "evidence")
    try:
        yield user
    finally:
        # Only what this user started, by name; never anyone else's lab.
        for lab_id in user.started:
            user.cihub(
                "lab", "down", "--lab", lab_id, "--yes", "--evidence-dir", str(user.evidence)
            )


@pytest.fixture
def alice(tmp_path: Path) -> Iterator[_User]:
    yield from _make_user(tmp_path, "alice")


@pytest.fixture
def bob(tmp_path: Path) -> Iterator[_User]:
    yield from _make_user(tmp_path, "bob")


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_cli_lab_up_status_down_leaves_nothing_labelled(
    alice: _User, lab: Lab, client: docker.DockerClient
) -> None:
    info = alice.up()
    lab_id = str(info["lab_id"])
    assert lab_id == labels.default_lab_name(environ=alice.env)
    assert requests.get(str(info["registry_url"]) + "/v2/", timeout=5).status_code == 200
    mine = alice.status()[lab_id]
    assert mine["registry_url"] == info["registry_url"]
    assert mine["owner"] == alice.owner and mine["mine"] and mine["state"] == "running"
    assert mine["age_seconds"] is not None and mine["age_seconds"] >= 0

    again = alice.up()
    assert again["lab_id"] == lab_id and again["registry_url"] == info["registry_url"]

    trust_config = Path(str(info["trust_config"]))
    assert json.loads(trust_config.read_text())["mediaType"].startswith(
        "application/vnd.dev.sigstore.clienttrustconfig"
    )
    token = alice.cihub("lab", "token", "--identity", "ops@cihub.test")
    assert token.returncode == 0, token.stderr
    claims = token.stdout.strip().split(".")[1]
    assert "ops@cihub.test" in base64.urlsafe_b64decode(claims + "==").decode()

    down = alice.cihub("lab", "down", "--evidence-dir", str(alice.evidence))
    assert down.returncode == 0, down.stderr
    assert f"removed lab {lab_id}" in down.stderr
    assert _leftovers(client, lab_id) == []
    assert (alice.evidence / "lab" / lab_id / "registry.log").exists()
    assert not trust_config.exists(), "lab down forgets the lab's keys and trust config"
    # The session's own test lab is another run's: a bare `down` left it alone.
    faultproxy = lab.service_container("faultproxy")
    faultproxy.reload()  # the object's status is as of its last reload, not now
    assert faultproxy.status == "running"
    assert requests.get(lab.endpoints.registry_url + "/v2/", timeout=5).status_code == 200


def test_two_users_get_two_labs_and_down_touches_only_its_own(
    alice: _User, bob: _User, client: docker.DockerClient
) -> None:
    alices, bobs = alice.up(), bob.up()
    assert alices["lab_id"] != bobs["lab_id"]
    assert alices["registry_url"] != bobs["registry_url"]
    seen = bob.status()
    assert seen[alices["lab_id"]]["owner"] == alice.owner and not seen[alices["lab_id"]]["mine"]
    assert seen[bobs["lab_id"]]["owner"] == bob.owner and seen[bobs["lab_id"]]["mine"]

    down = bob.cihub("lab", "down", "--evidence-dir", str(bob.evidence))
    assert down.returncode == 0, down.stderr
    assert _leftovers(client, bobs["lab_id"]) == []
    assert alice.status()[alices["lab_id"]]["state"] == "running"

    # --all would remove alice's lab too: with no terminal to ask on, bob is refused.
    refused = bob.cihub("lab", "down", "--all", "--evidence-dir", str(bob.evidence))
    assert refused.returncode == 2
    assert "pass --yes" in refused.stderr and alices["lab_id"] in refused.stderr
    assert alice.status()[alices["lab_id"]]["state"] == "running"
    assert requests.get(alices["registry_url"] + "/v2/", timeout=5).status_code == 200


def test_two_ups_of_one_name_at_once_give_one_lab(
    alice: _User, client: docker.DockerClient
) -> None:
    name = _unique("labs-race")
    alice.started.append(name)
    args = ("lab", "up", "--json", "--name", name, "--evidence-dir", str(alice.evidence))
    first, second = alice.popen(*args), alice.popen(*args)
    outcomes = [(p.wait(timeout=300), *p.communicate()) for p in (first, second)]
    succeeded = [json.loads(out) for code, out, _ in outcomes if code == 0]
    refused = [err for code, _, err in outcomes if code != 0]
    assert succeeded, [err for _, _, err in outcomes]
    assert all(info["lab_id"] == name for info in succeeded)
    # Both the same lab, or one lab and one clear refusal naming it.
    if len(succeeded) == 2:
        assert succeeded[0]["registry_url"] == succeeded[1]["registry_url"]
    else:
        assert len(refused) == 1 and f"lab {name} is" in refused[0]
        assert [code for code, _, _ in outcomes].count(2) == 1
    selector = {"label": f"{labels.LAB}={name}"}
    services = [
        c.labels[labels.SERVICE] for c in client.containers.list(all=True, filters=selector)
    ]
    assert sorted(services) == sorted(
        ["claim", "registry", "faultproxy", "rekor", "fulcio", "tsa"]
    ), "exactly one lab's containers"
    assert alice.status()[name]["state"] == "running"


def _wait_for_container(client: docker.DockerClient, name: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.containers.list(all=True, filters={"name": f"^/{name}$"}, sparse=True):
            return
        time.sleep(0.02)
    raise AssertionError(f"{name} never appeared")


def test_a_sigkilled_lab_up_is_stale_and_reaped(alice: _User, client: docker.DockerClient) -> None:
    name = _unique("labs-killed")
    alice.started.append(name)
    for reaper in ("down", "up"):
        starting = alice.popen("lab", "up", "--name", name, "--evidence-dir", str(alice.evidence))
        try:
            _wait_for_container(client, f"{name}-claim")
            # Half way: the claim is taken and the services are being made.
            _wait_for_container(client, f"{name}-registry")
        finally:
            starting.send_signal(signal.SIGKILL)
            starting.wait(timeout=30)
        row = alice.status()[name]
        assert row["state"] == "stale", row
        if reaper == "down":
            down = alice.cihub("lab", "down", "--evidence-dir", str(alice.evidence))
            assert down.returncode == 0, down.stderr
            assert f"removed lab {name} (stale)" in down.stderr
            assert _leftovers(client, name) == []
        else:
            info = alice.up("--name", name)
            assert info["lab_id"] == name
            assert alice.status()[name]["state"] == "running"


def test_lab_down_removes_labs_left_by_crashed_runs(
    alice: _User, client: docker.DockerClient
) -> None:
    script = (
        "import os\n"
        "from lab import Lab, LabConfig\n"
        f"lab = Lab(LabConfig(evidence_dir={str(alice.evidence)!r})).start()\n"
        "print(lab.config.lab_id, flush=True)\n"
        "os._exit(9)\n"
    )
    crashed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=alice.env
    )
    assert crashed.returncode == 9, crashed.stderr
    lab_id = crashed.stdout.strip()
    alice.started.append(lab_id)
    assert _leftovers(client, lab_id), "the crashed run left its lab behind"
    assert alice.status()[lab_id]["state"] == "stale"
    down = alice.cihub("lab", "down", "--evidence-dir", str(alice.evidence))
    assert down.returncode == 0, down.stderr
    assert f"removed lab {lab_id} (stale)" in down.stderr
    assert _leftovers(client, lab_id) == []


_INNER_SUITE = """
import requests

def test_uses_its_own_lab(lab):
    assert lab.config.lab_id != {user_lab!r}
    assert lab.config.lab_id.startswith("cihub-test-")
    assert requests.get(lab.endpoints.registry_url + "/v2/", timeout=5).status_code == 200
"""


def test_a_user_lab_survives_the_test_suites_lab_and_cleanup(
    alice: _User, client: docker.DockerClient, tmp_path: Path
) -> None:
    # The demo lab of `make demo`: same owner as the test run that follows.
    demo = alice.up()
    suite = tmp_path / "inner" / "test_inner.py"
    suite.parent.mkdir()
    suite.write_text(_INNER_SUITE.format(user_lab=demo["lab_id"]))
    inner = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite)],
        capture_output=True,
        text=True,
        timeout=600,
        env=alice.env,
        cwd=suite.parent,
    )
    assert inner.returncode == 0, inner.stdout + inner.stderr
    assert "1 passed" in inner.stdout
    row = alice.status()[demo["lab_id"]]
    assert row["state"] == "running" and row["registry_url"] == demo["registry_url"]
    assert requests.get(demo["registry_url"] + "/v2/", timeout=5).status_code == 200
    leftover_test_labs = [
        lab_id
        for lab_id, r in alice.status().items()
        if lab_id.startswith("cihub-test-") and r["owner"] == alice.owner
    ]
    assert leftover_test_labs == [], "the inner run removed its own lab"
