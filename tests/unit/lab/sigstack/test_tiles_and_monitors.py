"""Rekor v2's tlog-tiles read path, the two monitors, and logs shared by several processes.

No Docker: the rekor role runs in-process (`RekorService`) or as `python3 -m sigstack rekor`
processes on the same database files, as the rekor containers of several labs do on a trust
domain's bind-mounted `logs/` folder.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from harness._cli import main as cihub
from harness.monitor import (
    MonitorAlarm,
    RekorMonitor,
    TilesMonitor,
    body_carries_digest,
    pinned_logs,
    tile_path,
)
from lab.services.sigstack import merkle
from lab.services.sigstack.entries import canonicalize_v1, canonicalize_v2
from lab.services.sigstack.rekor import RekorService, tile_index_path, tile_path_index
from lab.sigstore_trust import LabTrustMaterial

SERVICES = Path(__file__).resolve().parents[4] / "lab" / "services"
V1_NAME = "rekor.test"
V2_ORIGIN = "rekor-v2.test"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


SIGNER = ec.generate_private_key(ec.SECP256R1())


def _signed(data: bytes) -> tuple[bytes, bytes]:
    digest = hashlib.sha256(data).digest()
    return digest, SIGNER.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))


def v2_request(data: bytes) -> dict[str, Any]:
    digest, signature = _signed(data)
    der = SIGNER.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    verifier = {"publicKey": {"rawBytes": _b64(der)}, "keyDetails": "PKIX_ECDSA_P256_SHA_256"}
    return {
        "hashedRekordRequestV002": {
            "digest": _b64(digest),
            "signature": {"content": _b64(signature), "verifier": verifier},
        }
    }


def v1_request(data: bytes) -> dict[str, Any]:
    digest, signature = _signed(data)
    pem = SIGNER.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": digest.hex()}},
            "signature": {"content": _b64(signature), "publicKey": {"content": _b64(pem)}},
        },
    }


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Keys:
    def __init__(self) -> None:
        self.v1 = ec.generate_private_key(ec.SECP256R1())
        self.v2 = ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


def _service(folder: Path, keys: Keys, origin_v2: str = V2_ORIGIN) -> RekorService:
    return RekorService(
        folder / "v1.db", keys.v1, V1_NAME, keys.v2, db_v2=folder / "v2.db", origin_v2=origin_v2
    ).start()


@pytest.fixture
def service(tmp_path: Path, keys: Keys) -> Iterator[RekorService]:
    svc = _service(tmp_path / "logs", keys)
    try:
        yield svc
    finally:
        svc.stop()


def _fill_v2(service: RekorService, count: int, tag: str = "") -> dict[int, str]:
    """Append `count` v2 entries in-process; returns {index: digest}."""
    out = {}
    for n in range(count):
        data = f"v2 {tag} {n}".encode()
        stored = service.v2.append(canonicalize_v2(v2_request(data)))
        out[stored.index] = digest_of(data)
    return out


def _tiles_monitor(service: RekorService, keys: Keys, state: Path, **kw: Any) -> TilesMonitor:
    origin = kw.pop("origin", V2_ORIGIN)
    return TilesMonitor(service.url, keys.v2.public_key(), origin, state_dir=state, **kw)


# -- the read path --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("index", "path"), [(0, "000"), (5, "005"), (1000, "x001/000"), (1234067, "x001/x234/067")]
)
def test_tile_index_paths(index: int, path: str) -> None:
    assert tile_index_path(index) == path
    assert tile_path_index(path) == index
    assert tile_path(0, index, 256) == f"/tile/0/{path}"
    assert tile_path(-1, index, 7) == f"/tile/entries/{path}.p/7"
    for bad in ("1234", "x12/345", "001/002"):
        with pytest.raises(ValueError):
            tile_path_index(bad)


def test_tiles_and_entry_bundles_hold_the_tree(service: RekorService) -> None:
    _fill_v2(service, 300)
    tree = service.v2.tree
    url = service.url

    def get(path: str) -> requests.Response:
        return requests.get(url + path, timeout=10)

    full = get("/tile/0/000")
    assert full.status_code == 200 and full.headers["Content-Type"] == "application/octet-stream"
    assert full.content == b"".join(tree.leaf(i) for i in range(256))
    assert get("/tile/0/001.p/44").content == b"".join(tree.leaf(i) for i in range(256, 300))
    assert get("/tile/0/001.p/10").content == b"".join(tree.leaf(i) for i in range(256, 266))
    assert get("/tile/1/000.p/1").content == tree.node(8, 0)
    for missing in ("/tile/0/001", "/tile/0/001.p/45", "/tile/1/000", "/tile/0/002.p/1"):
        assert get(missing).status_code == 404, missing
    assert get("/tile/0/000.p/256").status_code == 404  # a full tile has no .p/256 name
    bundle = get("/tile/entries/001.p/44").content
    bodies = []
    while bundle:
        size = int.from_bytes(bundle[:2], "big")
        bodies.append(bundle[2 : 2 + size])
        bundle = bundle[2 + size :]
    assert [merkle.hash_leaf(b) for b in bodies] == [tree.leaf(i) for i in range(256, 300)]
    assert len(get("/tile/entries/000").content) > 256 * 2
    checkpoint = get("/checkpoint").text
    assert checkpoint.startswith(f"{V2_ORIGIN}\n300\n")


# -- sigstore-go's view of the origin -------------------------------------------------------


def go_style_open_checkpoint(note: str, base_url: str, public_key: bytes) -> tuple[int, bytes]:
    """An independent C2SP checkpoint check, as sigstore-go does it for a Rekor v2 tlog: the
    verifier's name is the host name of the tlog's `baseUrl`, its key id SHA-256(name ||
    0x0A || 0x01 || key), and the checkpoint's origin must equal that name.

    Raises:
        ValueError: the note's origin, key hint or signature don't match.
    """
    name = urlsplit(base_url).hostname or ""
    hint = hashlib.sha256(name.encode() + b"\n\x01" + public_key).digest()[:4]
    text, _, signatures = note.partition("\n\n")
    text += "\n"
    origin, size, root = text.split("\n")[:3]
    if origin != name:
        raise ValueError(f"checkpoint origin {origin!r} is not the log's name {name!r}")
    for line in signatures.splitlines():
        signer, _, blob = line.removeprefix("\u2014 ").partition(" ")
        raw = base64.b64decode(blob)
        if signer == name and raw[:4] == hint:
            try:
                ed25519.Ed25519PublicKey.from_public_bytes(public_key).verify(
                    raw[4:], text.encode()
                )
            except InvalidSignature as exc:
                raise ValueError("checkpoint signature does not verify") from exc
            return int(size), base64.b64decode(root)
    raise ValueError(f"no signature by {name} with key hint {hint.hex()}")


def _v2_tlog(material: LabTrustMaterial) -> tuple[str, bytes]:
    (tlog,) = [
        t for t in material.trusted_root()["tlogs"] if "ED25519" in t["publicKey"]["keyDetails"]
    ]
    raw = material.rekor_key_v2.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return str(tlog["baseUrl"]), raw


def test_v2_checkpoints_pass_a_go_style_verifier_that_derives_the_origin(
    tmp_path: Path,
) -> None:
    material = LabTrustMaterial.generate()
    base_url, raw = _v2_tlog(material)
    with RekorService(
        tmp_path / "v1.db",
        material.rekor_key,
        material.rekor_v1_name,
        material.rekor_key_v2,
        origin_v2=material.rekor_origin,
    ) as svc:
        svc.v2.append(canonicalize_v2(v2_request(b"go style")))
        note = requests.get(svc.url + "/checkpoint", timeout=10).text
    size, root = go_style_open_checkpoint(note, base_url, raw)
    assert size == 1 and len(root) == 32


def test_a_mismatched_origin_is_rejected_by_the_go_style_verifier(tmp_path: Path) -> None:
    material = LabTrustMaterial.generate()
    base_url, raw = _v2_tlog(material)
    # what the lab did before: a v2 log named like the v1 host, whatever the baseUrl says
    with RekorService(
        tmp_path / "v1.db", material.rekor_key, "rekor.cihub.lab", material.rekor_key_v2
    ) as svc:
        svc.v2.append(canonicalize_v2(v2_request(b"mismatch")))
        note = requests.get(svc.url + "/checkpoint", timeout=10).text
    with pytest.raises(ValueError, match=r"is not the log's name 'rekor-v2\.cihub\.lab'"):
        go_style_open_checkpoint(note, base_url, raw)
    with pytest.raises(ValueError, match="origin"):
        go_style_open_checkpoint(note, "https://elsewhere.example/", raw)


# -- the tiles monitor ----------------------------------------------------------------------


def test_tiles_monitor_passes_on_growth_and_proves_entries(
    service: RekorService, keys: Keys, tmp_path: Path
) -> None:
    monitor = _tiles_monitor(service, keys, tmp_path / "state")
    first = _fill_v2(service, 3, "a")
    seen = monitor.run(first)
    assert seen.previous is None and seen.current.size == 3
    more = _fill_v2(service, 700, "b")
    grown = monitor.run({i: d for i, d in more.items() if i % 97 == 0})
    assert grown.previous == seen.current and grown.current.size == 703
    assert monitor.last_reader is not None and monitor.last_reader.fetched >= 3
    assert monitor.last_verified() == grown.current
    assert monitor.run().previous == grown.current  # nothing new: same size, same root
    index, digest = next(iter(more.items()))
    with pytest.raises(MonitorAlarm, match=f"the entry at index {index} does not carry"):
        monitor.run({index: digest_of(b"something else")})
    with pytest.raises(MonitorAlarm, match="no log entry at index 5000"):
        monitor.run({5000: digest})


def test_tiles_monitor_pins_key_and_origin(
    service: RekorService, keys: Keys, tmp_path: Path
) -> None:
    _fill_v2(service, 2)
    with pytest.raises(MonitorAlarm, match=r"pinned key and origin 'rekor\.other'"):
        _tiles_monitor(service, keys, tmp_path / "s1", origin="rekor.other").run()
    stranger = ed25519.Ed25519PrivateKey.generate().public_key()
    with pytest.raises(MonitorAlarm, match="pinned key"):
        TilesMonitor(service.url, stranger, V2_ORIGIN, state_dir=tmp_path / "s2").run()


def _restart(folder: Path, keys: Keys, old: RekorService) -> RekorService:
    old.stop()
    return _service(folder, keys)


def _copy_logs(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in os.listdir(source):
        shutil.copy2(source / name, target / name)


def test_both_monitors_cry_rollback_on_a_restored_old_copy(tmp_path: Path, keys: Keys) -> None:
    logs, state = tmp_path / "logs", tmp_path / "m"

    def monitors(svc: RekorService) -> tuple[RekorMonitor, TilesMonitor]:
        key = keys.v1.public_key()
        v1 = RekorMonitor(svc.url, key, state_dir=state, key_name=V1_NAME)
        return v1, _tiles_monitor(svc, keys, state)

    service = _service(logs, keys)
    try:
        service.v1.append(canonicalize_v1(v1_request(b"v1 first")))
        _fill_v2(service, 2, "first")
        v1, v2 = monitors(service)
        v1.run([digest_of(b"v1 first")])
        v2.run()
        service.stop()  # a clean stop folds the WAL into the database file
        _copy_logs(logs, tmp_path / "old")
        service = _service(logs, keys)  # down and up again: the logs go on
        service.v1.append(canonicalize_v1(v1_request(b"v1 second")))
        _fill_v2(service, 3, "second")
        v1, v2 = monitors(service)
        assert v1.run().current.size == 2 and v2.run().current.size == 5
        service.stop()
        shutil.rmtree(logs)
        _copy_logs(tmp_path / "old", logs)
        service = _service(logs, keys)
        v1, v2 = monitors(service)
        with pytest.raises(MonitorAlarm, match=r"ROLLBACK: the log shrank from 2 to 1"):
            v1.run()
        with pytest.raises(MonitorAlarm, match=r"ROLLBACK: the log shrank from 5 to 2"):
            v2.run()
        # a restored old copy that then grows again is a fork, not a rollback
        _fill_v2(service, 4, "fork")
        with pytest.raises(MonitorAlarm, match="INCONSISTENT"):
            v2.run()
    finally:
        service.stop()


# -- v1 monitor: bodies, not the index ------------------------------------------------------


def test_body_carries_digest_reads_each_kind() -> None:
    data = b"artifact"
    wanted = digest_of(data)
    v1 = canonicalize_v1(v1_request(data)).body
    v2 = canonicalize_v2(v2_request(data)).body
    assert body_carries_digest(v1, wanted) and body_carries_digest(v2, wanted)
    other = digest_of(b"other")
    assert not body_carries_digest(v1, other) and not body_carries_digest(v2, other)
    assert not body_carries_digest(b"not json", wanted)
    assert not body_carries_digest(json.dumps({"kind": "rekord"}).encode(), wanted)


def test_v1_monitor_checks_named_entries_by_their_body(
    service: RekorService, keys: Keys, tmp_path: Path
) -> None:
    stored = service.v1.append(canonicalize_v1(v1_request(b"named")))
    monitor = RekorMonitor(
        service.url, keys.v1.public_key(), state_dir=tmp_path / "m", key_name=V1_NAME
    )
    assert monitor.run(entries={stored.index: digest_of(b"named")}).entries == {
        digest_of(b"named"): [stored.index]
    }
    with pytest.raises(MonitorAlarm, match="does not carry"):
        monitor.run(entries={stored.index: digest_of(b"another")})
    with pytest.raises(MonitorAlarm, match=r"pinned key of rekor\.cihub\.lab"):
        RekorMonitor(service.url, keys.v1.public_key(), state_dir=tmp_path / "n").run()


# -- several processes on one set of databases ----------------------------------------------


def _pem(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _spawn(folder: Path, keys: Keys) -> tuple[subprocess.Popen[bytes], str]:
    (folder / "k1.pem").write_bytes(_pem(keys.v1))
    (folder / "k2.pem").write_bytes(_pem(keys.v2))
    args = [
        os.environ.get("SIGSTACK_PYTHON", sys.executable),
        "-m",
        "sigstack",
        "rekor",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--quiet",
        "--db",
        str(folder / "logs" / "v1.db"),
        "--db-v2",
        str(folder / "logs" / "v2.db"),
        "--key",
        str(folder / "k1.pem"),
        "--key-v2",
        str(folder / "k2.pem"),
        "--origin",
        V1_NAME,
        "--origin-v2",
        V2_ORIGIN,
    ]
    env = {**os.environ, "PYTHONPATH": str(SERVICES), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if "listening on" in line:
            return proc, f"http://127.0.0.1:{int(line.rsplit(':', 1)[1])}"
    proc.kill()
    raise AssertionError("the rekor process did not start")


def test_two_processes_append_concurrently_without_forking(tmp_path: Path, keys: Keys) -> None:
    procs = [_spawn(tmp_path, keys), _spawn(tmp_path, keys)]
    try:
        urls = [url for _, url in procs]
        jobs = [(api, n) for n in range(40) for api in (1, 2)]
        barrier = threading.Barrier(8)

        def submit(job: tuple[int, int]) -> tuple[int, int, str, str]:
            api, n = job
            url = urls[n % 2]  # alternate processes
            data = f"shared {api} {n}".encode()
            if n < 8 and api == 1:
                barrier.wait(10)
            if api == 1:
                reply = requests.post(url + "/api/v1/log/entries", json=v1_request(data))
                assert reply.status_code == 201, reply.text
                index = next(iter(reply.json().values()))["logIndex"]
            else:
                reply = requests.post(url + "/api/v2/log/entries", json=v2_request(data))
                assert reply.status_code == 201, reply.text
                index = int(reply.json()["logIndex"])
            return api, int(index), digest_of(data), url

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(submit, jobs))
        for api in (1, 2):
            indexes = sorted(i for a, i, _, _ in results if a == api)
            assert indexes == list(range(40)), f"v{api} indexes forked or skipped"
        # Each process serves what the other appended; both monitors pass on either.
        v1_by_b = {i: d for a, i, d, u in results if a == 1 and u == urls[1]}
        v2_by_b = {i: d for a, i, d, u in results if a == 2 and u == urls[1]}
        state = tmp_path / "state"
        for url in urls:
            v1 = RekorMonitor(url, keys.v1.public_key(), state_dir=state, key_name=V1_NAME)
            assert v1.run(entries=v1_by_b).current.size == 40
            v2 = TilesMonitor(url, keys.v2.public_key(), V2_ORIGIN, state_dir=state)
            assert v2.run(v2_by_b).current.size == 40
        infos = [requests.get(u + "/api/v1/log", timeout=10).json() for u in urls]
        assert infos[0]["rootHash"] == infos[1]["rootHash"] and infos[0]["treeSize"] == 40
    finally:
        for proc, _ in procs:
            proc.terminate()
            proc.wait(timeout=10)


# -- the CLI --------------------------------------------------------------------------------


def test_cli_monitors_both_logs_from_a_trust_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    material = LabTrustMaterial.generate()
    with RekorService(
        tmp_path / "v1.db",
        material.rekor_key,
        material.rekor_v1_name,
        material.rekor_key_v2,
        origin_v2=material.rekor_origin,
    ) as svc:
        trust = material.write_trust_config(
            tmp_path / "trust.json", {"rekor_url": svc.url, "fulcio_url": "http://127.0.0.1:1"}
        )
        assert set(pinned_logs(trust)) == {1, 2}
        svc.v1.append(canonicalize_v1(v1_request(b"cli v1")))
        v2 = svc.v2.append(canonicalize_v2(v2_request(b"cli v2")))
        base = ["rekor", "monitor", "--rekor-url", svc.url, "--trust-config", str(trust)]
        state = ["--state-dir", str(tmp_path / "m")]
        assert cihub([*base, *state, "--digest", digest_of(b"cli v1"), "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["v1"]["current"]["size"] == 1 and out["v2"]["current"]["size"] == 1
        entry = f"{v2.index}={digest_of(b'cli v2')}"
        assert cihub([*base, *state, "--log", "v2", "--entry", entry]) == 0
        wrong = f"{v2.index}={digest_of(b'cli v1')}"
        assert cihub([*base, *state, "--log", "v2", "--entry", wrong]) == 1
        assert "does not carry" in capsys.readouterr().err
        assert cihub([*base, *state, "--log", "v2", "--digest", digest_of(b"x")]) == 2
        assert "no search index" in capsys.readouterr().err


def test_cli_state_dir_that_is_a_file_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state.json"
    state.write_text("{}")
    trust = LabTrustMaterial.generate().write_trust_config(
        tmp_path / "t.json", {"rekor_url": "http://127.0.0.1:9", "fulcio_url": "http://x"}
    )
    code = cihub(
        [
            "rekor",
            "monitor",
            "--rekor-url",
            "http://127.0.0.1:9",
            "--trust-config",
            str(trust),
            "--state-dir",
            str(state),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "not a folder" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_searches_see_what_another_process_appended(tmp_path: Path, keys: Keys) -> None:
    (proc_a, url_a), (proc_b, url_b) = _spawn(tmp_path, keys), _spawn(tmp_path, keys)
    try:
        assert requests.get(url_a + "/api/v1/log", timeout=10).json()["treeSize"] == 0
        data = b"appended through b"
        created = requests.post(url_b + "/api/v1/log/entries", json=v1_request(data), timeout=10)
        assert created.status_code == 201
        # a (POST) search on process a, whose tree has not been read since
        found = requests.post(
            url_a + "/api/v1/index/retrieve", json={"hash": digest_of(data)}, timeout=10
        )
        assert found.json() == list(created.json())
        listed = requests.post(
            url_a + "/api/v1/log/entries/retrieve", json={"logIndexes": [0]}, timeout=10
        )
        assert [next(iter(e.values()))["logIndex"] for e in listed.json()] == [0]
    finally:
        for proc in (proc_a, proc_b):
            proc.terminate()
            proc.wait(timeout=10)


def test_tiles_monitor_audit_reads_every_new_entry(
    service: RekorService, keys: Keys, tmp_path: Path
) -> None:
    monitor = _tiles_monitor(service, keys, tmp_path / "state")
    _fill_v2(service, 10, "audit a")
    monitor.run(audit=True)
    _fill_v2(service, 300, "audit b")
    assert monitor.run(audit=True).current.size == 310
    # a log whose entry bundle disagrees with its tiles is caught
    _fill_v2(service, 1, "audit c")
    service.store_v2._writer.execute(  # type: ignore[union-attr]
        "UPDATE entries SET body = ? WHERE idx = 310", (b'{"tampered": true}',)
    )
    with pytest.raises(MonitorAlarm, match="entry 310 does not hash to the leaf"):
        monitor.run(audit=True)
