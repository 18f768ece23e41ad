"""Append throughput and latency of the lab's Rekor logs (lab/services/sigstack), against
SQLite, and the time the tiles monitor takes to prove consistency across new entries.

Prints, in one run, for each log (`--api both`: v1 then v2, each its own database):
  - appends per second, each answered with an inclusion proof and a signed checkpoint, and
    the p50/p99 latency of one append, from `--clients` concurrent HTTP clients (keep-alive
    sessions) posting hashedrekord entries (v1 with SETs, v2 0.0.2) to the rekor role
    started as its own process (`python3 -m sigstack rekor`) on loopback;
  - the floor: a plain SQLite insert loop on the same kind of file with the same durability
    (WAL, synchronous=FULL, one commit per row, one thread), rows of the same size;
  - their ratios. The log groups concurrent appends into one commit, so it can beat the floor.
Every returned proof is verified after the timed run (outside the timing).
  - with `--monitor-entries N` (default 10000): `TilesMonitor.run()` verifying the v2 log's
    new checkpoint and its consistency with the previous one across N new entries, reading
    only tiles over HTTP (the time and the number of tiles fetched).

Usage: python bench/tlog.py [--appends 2000] [--clients 4] [--api both|v2|v1]
                            [--monitor-entries 10000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import NameOID

from harness.monitor import TilesMonitor
from lab.services.sigstack import merkle

SERVICES = Path(__file__).resolve().parents[1] / "lab" / "services"
ORIGIN = "rekor.bench.lab"


def _pem(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_requests(count: int, api: str) -> list[dict[str, Any]]:
    """`count` distinct, validly signed hashedrekord requests (one test certificate)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")])
    now = time.time()
    start = dt.datetime.fromtimestamp(now - 60, dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    der = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    pem = base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode()
    out: list[dict[str, Any]] = []
    for i in range(count):
        digest = hashlib.sha256(f"artifact {i} {now}".encode()).digest()
        sig = base64.b64encode(key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))).decode()
        if api == "v2":
            out.append(
                {
                    "hashedRekordRequestV002": {
                        "digest": base64.b64encode(digest).decode(),
                        "signature": {
                            "content": sig,
                            "verifier": {
                                "x509Certificate": {"rawBytes": der},
                                "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                            },
                        },
                    }
                }
            )
        else:
            out.append(
                {
                    "apiVersion": "0.0.1",
                    "kind": "hashedrekord",
                    "spec": {
                        "data": {"hash": {"algorithm": "sha256", "value": digest.hex()}},
                        "signature": {"content": sig, "publicKey": {"content": pem}},
                    },
                }
            )
    return out


ORIGIN_V2 = "rekor-v2.bench.lab"
KEY_V2 = ed25519.Ed25519PrivateKey.generate()


def start_service(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The rekor role as its own process, as in the lab image; returns (process, base URL)."""
    v1 = ec.generate_private_key(ec.SECP256R1())
    (folder / "rekor.key").write_bytes(_pem(v1))
    (folder / "rekor-v2.key").write_bytes(_pem(KEY_V2))
    env = {**os.environ, "PYTHONPATH": str(SERVICES), "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, "-m", "sigstack", "rekor", "--host", "127.0.0.1", "--port", "0"]
    args += ["--db", str(folder / "v1.db"), "--db-v2", str(folder / "v2.db")]
    args += ["--key", str(folder / "rekor.key"), "--key-v2", str(folder / "rekor-v2.key")]
    args += ["--origin", ORIGIN, "--origin-v2", ORIGIN_V2, "--quiet"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if "listening on" in line:
            return proc, f"http://127.0.0.1:{line.rsplit(':', 1)[1].strip()}"
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit("the rekor role did not start")


def run_clients(
    url: str, api: str, batches: list[list[dict[str, Any]]]
) -> tuple[float, list[float], list[dict[str, Any]]]:
    """Post every batch from its own thread; returns (seconds, latencies, responses)."""
    path = f"{url}/api/{api}/log/entries"
    latencies: list[list[float]] = [[] for _ in batches]
    responses: list[list[dict[str, Any]]] = [[] for _ in batches]
    barrier = threading.Barrier(len(batches) + 1)
    failures: list[str] = []

    def client(i: int) -> None:
        session = requests.Session()
        session.post(f"{url}/healthz")  # open the connection before the clock starts
        barrier.wait()
        for request in batches[i]:
            t0 = time.perf_counter()
            response = session.post(path, json=request)
            latencies[i].append(time.perf_counter() - t0)
            if response.status_code != 201:
                failures.append(response.text)
                return
            responses[i].append(response.json())

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"append failed: {failures[0]}")
    return elapsed, [x for xs in latencies for x in xs], [r for rs in responses for r in rs]


def _body(api: str, response: dict[str, Any]) -> bytes:
    if api == "v2":
        return base64.b64decode(response["canonicalizedBody"])
    return base64.b64decode(next(iter(response.values()))["body"])


def verify_responses(api: str, responses: list[dict[str, Any]]) -> int:
    """Check every inclusion proof against its root; returns the number of distinct indexes."""
    indexes = set()
    for response in responses:
        if api == "v2":
            proof = response["inclusionProof"]
            body = base64.b64decode(response["canonicalizedBody"])
            index, size = int(proof["logIndex"]), int(proof["treeSize"])
            hashes_ = [base64.b64decode(h) for h in proof["hashes"]]
            root = base64.b64decode(proof["rootHash"])
        else:
            entry = next(iter(response.values()))
            proof = entry["verification"]["inclusionProof"]
            body = base64.b64decode(entry["body"])
            index, size = proof["logIndex"], proof["treeSize"]
            hashes_ = [bytes.fromhex(h) for h in proof["hashes"]]
            root = bytes.fromhex(proof["rootHash"])
        merkle.verify_inclusion(merkle.hash_leaf(body), index, size, hashes_, root)
        indexes.add(index)
    return len(indexes)


def sqlite_floor(path: Path, count: int, row_size: int) -> tuple[float, list[float]]:
    """A plain insert loop: WAL, synchronous=FULL, one commit per row."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE entries (idx INTEGER PRIMARY KEY, leaf BLOB, body BLOB)")
    latencies = []
    started = time.perf_counter()
    for i in range(count):
        body = os.urandom(row_size)
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO entries VALUES (?, ?, ?)", (i, hashlib.sha256(body).digest(), body)
        )
        conn.execute("COMMIT")
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed, latencies


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by the nearest-rank method."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def bench_api(args: argparse.Namespace, api: str, folder: Path) -> None:
    """Append `args.appends` entries to one log and print the figures."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = make_requests(args.appends, api)
    batches = [entries[i :: args.clients] for i in range(args.clients)]
    proc, url = start_service(folder)
    try:
        elapsed, latencies, responses = run_clients(url, api, batches)
        metrics = requests.get(f"{url}/metrics").text
    finally:
        proc.terminate()
        proc.wait(10)
    distinct = verify_responses(api, responses)
    if distinct != args.appends:
        raise SystemExit(f"{distinct} distinct indexes for {args.appends} appends")
    batches_line = next(
        line for line in metrics.splitlines() if line.startswith("rekor_append_batches_total ")
    )
    commits = int(batches_line.split()[1])
    server = {
        line.split()[0]: float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith(
            ("rekor_append_latency_seconds_sum", "rekor_append_latency_seconds_count")
        )
    }
    server_mean = server["rekor_append_latency_seconds_sum"] / max(
        1.0, server["rekor_append_latency_seconds_count"]
    )
    row_size = statistics.mean(len(_body(api, r)) for r in responses[:100])
    floor_elapsed, floor_latencies = sqlite_floor(folder / "floor.db", args.appends, int(row_size))

    rate = args.appends / elapsed
    floor_rate = args.appends / floor_elapsed
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    f50, f99 = percentile(floor_latencies, 0.50), percentile(floor_latencies, 0.99)
    print(f"rekor {api} appends with proof: {args.appends} from {args.clients} clients")
    print(f"  rekor role (HTTP, process)       : {rate:10,.0f} appends/s ({elapsed:.2f} s)")
    print(f"  append latency p50 / p99         : {p50 * 1000:8.2f} / {p99 * 1000:.2f} ms")
    print(f"  of which inside the service, mean: {server_mean * 1000:8.2f} ms")
    print(
        f"  commits (group commit batches)   : {commits:10,d} ({args.appends / commits:.1f}/commit)"
    )
    print(
        f"  SQLite insert loop, FULL + WAL   : {floor_rate:10,.0f} rows/s ({floor_elapsed:.2f} s)"
    )
    print(f"  insert latency p50 / p99         : {f50 * 1000:8.2f} / {f99 * 1000:.2f} ms")
    print(f"  ratio appends/s / SQLite rows/s  : {rate / floor_rate:10.2f}")
    print(f"  ratio p50 latency / SQLite p50   : {p50 / f50:10.2f}")
    print(f"  proofs verified                  : {len(responses):10,d}, indexes distinct")


def bench_tiles_monitor(args: argparse.Namespace, folder: Path) -> None:
    """Time the tiles monitor proving consistency across `args.monitor_entries` new entries."""
    folder.mkdir(parents=True, exist_ok=True)
    proc, url = start_service(folder)
    try:
        monitor = TilesMonitor(url, KEY_V2.public_key(), ORIGIN_V2, state_dir=folder / "state")
        first = make_requests(args.clients, "v2")
        run_clients(url, "v2", [[r] for r in first])
        before = monitor.run().current.size
        more = make_requests(args.monitor_entries, "v2")
        run_clients(url, "v2", [more[i :: args.clients] for i in range(args.clients)])
        saved = monitor.state_file.read_bytes()
        started = time.perf_counter()
        result = monitor.run()
        elapsed = time.perf_counter() - started
        fetched = monitor.last_reader.fetched if monitor.last_reader else 0
        monitor.state_file.write_bytes(saved)  # the same step again, with every entry read
        started = time.perf_counter()
        monitor.run(audit=True)
        audit_elapsed = time.perf_counter() - started
        audit_fetched = monitor.last_reader.fetched if monitor.last_reader else 0
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"tiles monitor: checkpoint {before} -> {result.current.size} (v2, tlog-tiles only)")
    print(f"  verify signature, origin and consistency: {elapsed * 1000:8.1f} ms")
    print(f"  hash tiles fetched over HTTP            : {fetched:8d}")
    print(f"  the same, re-hashing every new entry    : {audit_elapsed * 1000:8.1f} ms")
    print(f"  hash tiles fetched (+ entry bundles)    : {audit_fetched:8d}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--appends", type=int, default=2000, help="appends in total, per log")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients")
    parser.add_argument("--api", choices=("both", "v2", "v1"), default="both", help="which log")
    parser.add_argument(
        "--monitor-entries",
        type=int,
        default=10000,
        help="new v2 entries the tiles monitor proves consistency across (0: skip)",
    )
    parser.add_argument("--dir", type=Path, help="where the databases go (default: a temp dir)")
    args = parser.parse_args()
    if args.appends < args.clients or args.clients < 1:
        parser.error("--appends must be at least --clients, and --clients at least 1")

    folder = args.dir or Path(tempfile.mkdtemp(prefix="bench-tlog-"))
    for api in ("v1", "v2") if args.api == "both" else (args.api,):
        bench_api(args, api, folder / api)
    if args.monitor_entries > 0:
        bench_tiles_monitor(args, folder / "monitor")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
