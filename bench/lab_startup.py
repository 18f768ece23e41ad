"""How long the hardened five-service lab takes to come up, against the engine's floor.

Prints, over `--runs` cold starts each (images cached, containers new), medians of:
  - the lab: `Lab.start()` until every service (registry, fault proxy, rekor, fulcio, tsa) is
    healthy through the fault proxy, hardened (non-root, no capabilities, read-only, limits),
    with its claim, keys and trust config;
  - the engine floor for five containers: a network created and the same five images'
    containers created and started with the docker SDK, with no health checks at all;
  - the registry alone: its container started with the docker SDK until `/v2/` answers.
Ratios: lab / floor (target <= 1.3x) and lab / registry alone.

Usage: python bench/lab_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import docker
import requests

from lab import Lab, LabConfig, labels
from lab._internal.docker import docker_client
from lab.cleanup import remove_lab
from lab.config import new_lab_id
from lab.images import ImageBuilder


def registry_alone(client: docker.DockerClient, image: str) -> float:
    """Seconds from `containers.run` to the registry answering `/v2/` on its published port."""
    lab_id = new_lab_id("bench")
    # None: the engine chooses the host port (the stubs only know ints).
    ports: dict[str, Any] = {"5000/tcp": ("127.0.0.1", None)}
    started = time.monotonic()
    container = client.containers.run(
        image,
        detach=True,
        name=f"{lab_id}-registry",
        ports=ports,
        labels=labels.resource_labels(lab_id, "bench", persistent=False, service="registry"),
    )
    try:
        container.reload()
        port = container.attrs["NetworkSettings"]["Ports"]["5000/tcp"][0]["HostPort"]
        url = f"http://127.0.0.1:{port}/v2/"
        deadline = started + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(url, timeout=1).status_code == 200:
                    return time.monotonic() - started
            except requests.RequestException:
                pass
            time.sleep(0.01)
        raise RuntimeError("the registry alone did not answer within 60 s")
    finally:
        remove_lab(client, lab_id)


def engine_floor(client: docker.DockerClient, images: list[str]) -> float:
    """Seconds to create a network and create and start one container per image on it."""
    lab_id = new_lab_id("bench")
    owner = labels.resource_labels(lab_id, "bench", persistent=False)
    started = time.monotonic()
    try:
        client.networks.create(lab_id, labels=owner)
        containers = [
            client.containers.create(image, name=f"{lab_id}-{n}", network=lab_id, labels=owner)
            for n, image in enumerate(images)
        ]
        for container in containers:
            container.start()
        return time.monotonic() - started
    finally:
        remove_lab(client, lab_id)


def whole_lab(client: docker.DockerClient, evidence_dir: Path) -> float:
    """Seconds from `Lab.start()` to every service healthy through the fault proxy."""
    lab = Lab(LabConfig(evidence_dir=evidence_dir, sigstore=True), client=client)
    started = time.monotonic()
    lab.start()
    elapsed = time.monotonic() - started
    lab.stop()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    client = docker_client()
    images = ImageBuilder(client).ensure(["registry", "faultproxy", "sigstack"])
    five = [images[name].tag for name in ("faultproxy", "registry", "sigstack")] + [
        images["sigstack"].tag
    ] * 2
    alone: list[float] = []
    lab: list[float] = []
    floor: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.runs):
            # Interleaved, so drift in the machine's load hits all three the same.
            alone.append(registry_alone(client, images["registry"].tag))
            lab.append(whole_lab(client, Path(tmp)))
            floor.append(engine_floor(client, five))
    alone_s, lab_s, floor_s = (statistics.median(x) for x in (alone, lab, floor))
    ratio = lab_s / floor_s
    print(f"runs: {args.runs} each, images cached, medians")
    print(f"lab, 5 hardened services healthy through the fault proxy: {lab_s:.3f} s")
    print(f"engine floor (network + 5 containers started, no health checks): {floor_s:.3f} s")
    print(f"registry alone (docker SDK, until /v2/ answers): {alone_s:.3f} s")
    print(f"ratio lab / engine floor: {ratio:.2f}x (target <= 1.30x)")
    print(f"ratio lab / registry alone: {lab_s / alone_s:.2f}x")
    # On a shared engine the load of others swings every number: the per-run pairs show it.
    pairs = sorted(lab_run / floor_run for lab_run, floor_run in zip(lab, floor, strict=True))
    print("per-run lab / floor: " + " ".join(f"{r:.2f}" for r in pairs))
    return 0 if ratio <= 1.3 else 1


if __name__ == "__main__":
    sys.exit(main())
