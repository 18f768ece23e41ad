"""The lab against the real Docker engine: up, healthy through the proxy, and gone after down."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

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
    assert proxy.upstream == "registry:5000" and proxy.enabled


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
    assert bindings, "the fault proxy publishes its API and proxy ports"
    assert {binding["HostIp"] for binding in bindings} == {"127.0.0.1"}


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
        with pytest.raises(PortInUse, match=rf"^faultproxy: .*{port} for 15000"):
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
    config = LabConfig(evidence_dir=tmp_path, startup_timeout=3)
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


@pytest.fixture
def cli_lab(tmp_path: Path) -> Iterator[dict[str, object]]:
    up = _cihub("lab", "up", "--json", "--evidence-dir", str(tmp_path))
    assert up.returncode == 0, up.stderr
    info: dict[str, object] = json.loads(up.stdout)
    try:
        yield info
    finally:
        _cihub("lab", "down", "--lab", str(info["lab_id"]), "--evidence-dir", str(tmp_path))


def test_cli_lab_up_status_down_leaves_nothing_labelled(
    cli_lab: dict[str, object], tmp_path: Path, client: docker.DockerClient
) -> None:
    lab_id = str(cli_lab["lab_id"])
    assert requests.get(str(cli_lab["registry_url"]) + "/v2/", timeout=5).status_code == 200
    status = json.loads(_cihub("lab", "status", "--json").stdout)
    mine = [row for row in status["labs"] if row["lab_id"] == lab_id]
    assert mine and mine[0]["registry_url"] == cli_lab["registry_url"]
    again = _cihub("lab", "up")
    assert again.returncode == 2 and f"lab {lab_id} is already up" in again.stderr

    trust_config = Path(str(cli_lab["trust_config"]))
    assert json.loads(trust_config.read_text())["mediaType"].startswith(
        "application/vnd.dev.sigstore.clienttrustconfig"
    )
    token = _cihub("lab", "token", "--lab", lab_id, "--identity", "ops@cihub.test")
    assert token.returncode == 0, token.stderr
    claims = token.stdout.strip().split(".")[1]
    assert "ops@cihub.test" in base64.urlsafe_b64decode(claims + "==").decode()

    down = _cihub("lab", "down", "--evidence-dir", str(tmp_path))
    assert down.returncode == 0, down.stderr
    assert f"removed lab {lab_id}" in down.stderr
    assert _leftovers(client, lab_id) == []
    assert (tmp_path / "lab" / lab_id / "registry.log").exists()
    assert not trust_config.exists(), "lab down forgets the lab's keys and trust config"


def test_lab_down_removes_labs_left_by_crashed_runs(
    tmp_path: Path, client: docker.DockerClient
) -> None:
    script = (
        "import os\n"
        "from lab import Lab, LabConfig\n"
        f"lab = Lab(LabConfig(evidence_dir={str(tmp_path)!r})).start()\n"
        "print(lab.config.lab_id, flush=True)\n"
        "os._exit(9)\n"
    )
    crashed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert crashed.returncode == 9, crashed.stderr
    lab_id = crashed.stdout.strip()
    assert _leftovers(client, lab_id), "the crashed run left its lab behind"
    down = _cihub("lab", "down", "--evidence-dir", str(tmp_path))
    assert down.returncode == 0, down.stderr
    assert f"removed lab {lab_id} (stale)" in down.stderr
    assert _leftovers(client, lab_id) == []


def _cihub(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=300
    )
