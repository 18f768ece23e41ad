"""CI: compose.yaml is the same lab. Bring it up once with Debian's docker-compose 1.29, check
every service is healthy through the fault proxy (and that a reset reaches the client), sign
and verify one artifact with the plain `sigstore` CLI against it, and take it down.

It runs the lab's own images (the exact tags `cihub lab up` runs, so nothing is built) and a
throwaway trust domain laid out as compose.yaml expects: `<dir>/services/<role>/` and
`<dir>/trust_config.json`.

Usage: python .ci/compose_smoke.py   (from the project root; exit 0 pass, 1 fail, 2 infra)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from lab._internal.docker import docker_client
from lab.images import ImageBuilder
from lab.sigstore_trust import LabTrustMaterial

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
THROUGH_PROXY = {
    "registry": "http://127.0.0.1:15000/v2/",
    "rekor": "http://127.0.0.1:15001/healthz",
    "fulcio": "http://127.0.0.1:15002/healthz",
    "tsa": "http://127.0.0.1:15003/healthz",
}
SERVICES = ("registry", "rekor", "fulcio", "tsa", "faultproxy")
TIMEOUT_S = 120.0


def compose(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker-compose", "-f", "compose.yaml", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def wait_healthy(env: dict[str, str]) -> None:
    client = docker_client()
    project = env["COMPOSE_PROJECT_NAME"]
    deadline = time.monotonic() + TIMEOUT_S
    health: dict[str, str] = {}
    while time.monotonic() < deadline:
        found = client.api.containers(
            all=True, filters={"label": f"com.docker.compose.project={project}"}
        )
        health = {}
        for entry in found:
            service = entry["Labels"].get("org.cihub.service", "?")
            inspected = client.api.inspect_container(entry["Id"])
            health[service] = (inspected["State"].get("Health") or {}).get("Status", "none")
        if set(health) == set(SERVICES) and set(health.values()) == {"healthy"}:
            print(f"compose: all five services healthy: {sorted(health)}")
            return
        time.sleep(0.5)
    raise SystemExit(f"compose: not all healthy within {TIMEOUT_S:.0f} s: {health}")


def check_through_proxy() -> None:
    for service, url in THROUGH_PROXY.items():
        status = requests.get(url, timeout=5).status_code
        if status != 200:
            raise SystemExit(f"compose: {service} through the fault proxy at {url}: HTTP {status}")
        print(f"compose: {service} healthy through the fault proxy ({url})")
    api = "http://127.0.0.1:8474"
    names = sorted(requests.get(f"{api}/proxies", timeout=5).json())
    if names != sorted(THROUGH_PROXY):
        raise SystemExit(
            f"compose: fault proxy routes are {names}, expected {sorted(THROUGH_PROXY)}"
        )
    toxic = {"name": "rst", "type": "reset_peer", "stream": "downstream", "attributes": {}}
    requests.post(f"{api}/proxies/registry/toxics", json=toxic, timeout=5).raise_for_status()
    try:
        with socket.create_connection(("127.0.0.1", 15000), timeout=10) as conn:
            conn.sendall(b"GET /v2/ HTTP/1.1\r\nHost: lab\r\n\r\n")
            try:
                conn.recv(1024)
            except ConnectionResetError:
                print("compose: reset_peer reached the client as ECONNRESET")
            else:
                raise SystemExit("compose: reset_peer did not reach the client as ECONNRESET")
    finally:
        requests.delete(f"{api}/proxies/registry/toxics/rst", timeout=5)


def sign_and_verify(material: LabTrustMaterial, trust_config: Path, work: Path) -> None:
    artifact = work / "artifact.txt"
    artifact.write_text("signed through the compose lab\n")
    bundle = work / "artifact.sigstore.json"
    sigstore = str(VENV_BIN / "sigstore")
    env = {**os.environ, "COLUMNS": "400"}
    sign = subprocess.run(
        [
            sigstore,
            "--trust-config",
            str(trust_config),
            "sign",
            "--identity-token",
            material.mint_identity_token(),
            "--bundle",
            str(bundle),
            str(artifact),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    if sign.returncode != 0:
        raise SystemExit(f"compose: sigstore sign failed: {sign.stderr.strip()}")
    verify = subprocess.run(
        [
            sigstore,
            "--trust-config",
            str(trust_config),
            "verify",
            "identity",
            "--bundle",
            str(bundle),
            "--cert-identity",
            material.identity,
            "--cert-oidc-issuer",
            material.issuer,
            str(artifact),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    if verify.returncode != 0:
        raise SystemExit(f"compose: sigstore verify failed: {verify.stderr.strip()}")
    print("compose: `sigstore sign` and `sigstore verify identity` passed against the lab")


def main() -> int:
    client = docker_client()
    images = ImageBuilder(client).ensure(["registry", "faultproxy", "sigstack"])
    with tempfile.TemporaryDirectory(prefix="cihub-compose-") as tmp:
        work = Path(tmp)
        domain = work / "trust-domain"
        material = LabTrustMaterial.generate()
        material.write_service_files(domain / "services")
        trust_config = material.write_trust_config(
            domain / "trust_config.json",
            {
                "rekor_url": "http://127.0.0.1:15001",
                "fulcio_url": "http://127.0.0.1:15002",
                "tsa_url": "http://127.0.0.1:15003",
            },
        )
        env = {
            **os.environ,
            "COMPOSE_PROJECT_NAME": f"cihub-compose-{os.getpid()}",
            "CIHUB_TRUST_DOMAIN": str(domain),
            "CIHUB_REKOR_ORIGIN": material.rekor_origin,
            "CIHUB_UID": str(os.getuid()),
            "CIHUB_GID": str(os.getgid()),
            "CIHUB_REGISTRY_IMAGE": images["registry"].tag,
            "CIHUB_FAULTPROXY_IMAGE": images["faultproxy"].tag,
            "CIHUB_SIGSTACK_IMAGE": images["sigstack"].tag,
        }
        up = compose(env, "up", "-d")
        try:
            if up.returncode != 0:
                print(up.stderr, file=sys.stderr)
                return 2
            wait_healthy(env)
            check_through_proxy()
            sign_and_verify(material, trust_config, work)
        finally:
            down = compose(env, "down", "-v", "--remove-orphans")
            print(f"compose: down (exit {down.returncode})")
    print(json.dumps({"compose": "passed"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
