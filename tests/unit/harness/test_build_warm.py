"""Warm builder containers without Docker: which builds share a container, and the pool."""

from __future__ import annotations

import dataclasses
import socket as pysocket
from pathlib import Path
from typing import Any

import pytest

from harness._internal.build_runner import IDLE, RUNNER
from harness.build import BuildSession, BuildSpec, ImageInfo, build_exec_environment
from harness.build_warm import can_run_warm, warm_key
from harness.variations import VariationSpec, plan_variations
from tests.support.builds import FULL_BUILDER as CAPS

PLAN = plan_variations(VariationSpec.parse("+disorderfs"), CAPS)
PER_CONTAINER = {"user_group", "domain_host"}
"""What an exec can't change (HOME and the cpuset are set per build)."""


def _spec(tmp_path: Path) -> BuildSpec:
    image = ImageInfo("img", "sha256:" + "0" * 64, {}, CAPS, "img")
    return BuildSpec(tmp_path, "make", image, ("out",))


class FakeContainer:
    def __init__(self, ident: str) -> None:
        self.id = ident
        self.name = ident
        self.removed = False
        self.engine_end: pysocket.socket | None = None

    def remove(self, **_: Any) -> None:
        self.removed = True
        if self.engine_end is not None:
            self.engine_end.close()


@pytest.mark.parametrize("name", [n for n in PLAN.applied if n != "disorderfs"])
def test_only_what_an_exec_cannot_change_needs_another_container(tmp_path: Path, name: str) -> None:
    spec = _spec(tmp_path)
    same = warm_key(spec, PLAN.experiment([name])) == warm_key(spec, PLAN.control)
    assert same is (name not in PER_CONTAINER), name


def test_disorderfs_builds_never_run_warm() -> None:
    assert can_run_warm(PLAN.control)
    assert not can_run_warm(PLAN.experiment(["disorderfs"]))


def test_another_subject_image_or_limit_gets_another_container(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    other = dataclasses.replace(spec, subject=tmp_path / "other")
    assert warm_key(spec, PLAN.control) != warm_key(other, PLAN.control)


def test_a_warm_build_writes_to_its_own_folder_and_resets_the_container(
    tmp_path: Path,
) -> None:
    session = BuildSession(client=None, workdir=tmp_path)  # type: ignore[arg-type]
    cold = build_exec_environment(session, _spec(tmp_path), PLAN.control)
    warm = build_exec_environment(session, _spec(tmp_path), PLAN.control, "/out/007-A")
    assert "OUT=" not in cold["CIHUB_CONFIG"] and "RESET" not in cold["CIHUB_CONFIG"]
    assert warm["CIHUB_CONFIG"].endswith("OUT=/out/007-A\nRESET=1\nHOME_ROOT=/home\n")
    assert "M=$OUT/meta" in RUNNER and "reset-ok" in RUNNER
    # the idle loop must not end when a build's `kill -1` stops its sleep
    assert "while :; do" in IDLE and "exit 95" in IDLE


def test_the_pool_hands_out_idle_containers_once_and_drops_them_after_cancel(
    tmp_path: Path,
) -> None:
    session = BuildSession(client=None, workdir=tmp_path)  # type: ignore[arg-type]
    first, second = FakeContainer("1"), FakeContainer("2")
    assert session.take_idle("k") is None
    session.give_back("k", first)
    assert session.take_idle("other") is None
    assert session.take_idle("k") is first
    assert session.take_idle("k") is None
    session.cancel()
    session.give_back("k", second)
    assert second.removed and session.take_idle("k") is None


def test_prewarm_starts_what_the_builds_want_less_what_is_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness import build_warm

    started: list[Any] = []

    def fake_start(_session: Any, _spec: Any, env: Any) -> tuple[Any, str]:
        started.append(env)
        return FakeContainer(str(len(started))), "name"

    monkeypatch.setattr(build_warm, "_start_warm", fake_start)
    monkeypatch.setenv("CIHUB_REAP_STALE_BUILDS", "0")  # no engine to ask
    session = BuildSession(client=None, workdir=tmp_path, lease_s=0)  # type: ignore[arg-type]
    spec = _spec(tmp_path)
    session.give_back(warm_key(spec, PLAN.control), FakeContainer("idle"))
    envs = [PLAN.control, PLAN.control, PLAN.control, PLAN.experiment(["domain_host"])]
    envs.append(PLAN.experiment(["disorderfs"]))  # never warm
    assert build_warm.prewarm(session, spec, envs, workers=2) == 2  # 1 control + 1 host
    host = session.take_idle(warm_key(spec, PLAN.experiment(["domain_host"])))
    assert isinstance(host, FakeContainer) and host.id in {"1", "2"}
    assert session.ready(warm_key(spec, PLAN.control)) == 2
    assert build_warm.prewarm(session, spec, envs[:3], workers=2) == 0


class FakeApi:
    """exec calls of the engine: every exec's stream stays open until its container is
    removed (the engine's end of the stream is closed then)."""

    def __init__(self, client: FakeEngine) -> None:
        self.client = client

    def exec_create(self, container: str, _cmd: Any, **_: Any) -> dict[str, str]:
        return {"Id": container}

    def update_container(self, container: str, cpuset_cpus: str) -> None:
        self.client.updates.append((container, cpuset_cpus))

    def exec_start(self, exec_id: str, socket: bool = False) -> Any:
        assert socket  # attached: the driver reads the stream, it never polls
        ours, engine = pysocket.socketpair()
        self.client.by_id[exec_id].engine_end = engine
        return ours


class FakeEngine:
    def __init__(self) -> None:
        self.by_id: dict[str, FakeContainer] = {}
        self.updates: list[tuple[str, str]] = []
        self.containers = self
        self.api = FakeApi(self)

    def create(self, _image: str, **options: Any) -> Any:
        container = FakeContainer(f"c{len(self.by_id)}")
        container.name = options.get("name", container.id)
        container.start = lambda: None  # type: ignore[attr-defined]
        container.options = options  # type: ignore[attr-defined]
        self.by_id[container.id] = container
        return container

    def list(self, **_: Any) -> list[Any]:
        return []


def test_cancel_stops_a_warm_build_at_once_and_removes_its_container(tmp_path: Path) -> None:
    import threading
    import time

    from harness.build import BuildCancelled, run_build

    engine = FakeEngine()
    session = BuildSession(engine, tmp_path / "work", lease_s=0)  # type: ignore[arg-type]
    spec = dataclasses.replace(_spec(tmp_path), timeout_s=600)
    errors: list[BaseException] = []

    def one() -> None:
        try:
            run_build(session, spec, PLAN.control, "A")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=one)
    thread.start()
    deadline = time.monotonic() + 10
    while not engine.by_id and time.monotonic() < deadline:
        time.sleep(0.01)
    (container,) = engine.by_id.values()
    assert container.options["command"][-1] == "cihub-warm"  # an idle warm builder
    assert container.options["network_mode"] == "none" and container.options["read_only"]
    session.cancel()
    thread.join(timeout=10)  # without cancel it would wait for 600 s
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], BuildCancelled)
    assert container.removed


def _frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


def _output_archive(top: str, files: dict[str, bytes]) -> bytes:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(f"{top}/{path}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class StreamingApi(FakeApi):
    """An exec that sends the runner's output archive on stdout (in small frames, split across
    reads) and `stderr_tail` on stderr, then ends."""

    def __init__(self, client: FakeEngine, stderr_tail: bytes) -> None:
        super().__init__(client)
        self.stderr_tail = stderr_tail
        self.out = ""

    def exec_create(self, container: str, _cmd: Any, **options: Any) -> dict[str, str]:
        config = options["environment"]["CIHUB_CONFIG"]
        self.out = next(line[4:] for line in config.splitlines() if line.startswith("OUT="))
        return {"Id": container}

    def exec_start(self, exec_id: str, socket: bool = False) -> Any:
        assert socket
        ours, engine = pysocket.socketpair()
        archive = _output_archive(
            self.out.rsplit("/", 1)[-1],
            {"meta/exit-code": b"0\n", "meta/matches": b"0 1\n", "artifacts/out/x": b"hello\n"},
        )
        data = b"".join(_frame(1, archive[i : i + 700]) for i in range(0, len(archive), 700))
        data += _frame(2, b"some noise\n") + _frame(2, self.stderr_tail)

        def send() -> None:
            for i in range(0, len(data), 333):  # frames split across reads
                engine.sendall(data[i : i + 333])
            engine.close()

        import threading

        threading.Thread(target=send, daemon=True).start()
        return ours


@pytest.mark.parametrize(("tail", "reused"), [(b"reset-ok\n", True), (b"", False)])
def test_a_warm_build_reads_its_output_from_the_exec_stream(
    tmp_path: Path, tail: bytes, reused: bool
) -> None:
    from harness.build import run_build

    engine = FakeEngine()
    engine.api = StreamingApi(engine, tail)
    session = BuildSession(engine, tmp_path / "work", lease_s=0)  # type: ignore[arg-type]
    spec = _spec(tmp_path)
    output = run_build(session, spec, PLAN.control, "A")  # FakeContainer has no get_archive
    assert output.ok and output.matches == (1,)
    assert output.digest is not None and [e.path for e in output.digest.files] == ["out/x"]
    assert output.out_dir is not None and (output.out_dir / "out" / "x").read_bytes() == b"hello\n"
    # only a container whose runner said it reset goes back to the pool
    assert session.ready(warm_key(spec, PLAN.control)) == (1 if reused else 0)
    (container,) = engine.by_id.values()
    assert container.removed is not reused


def test_the_stream_splitter_keeps_stdout_whole_and_the_tail_of_stderr() -> None:
    import io

    from harness.build_warm import _Frames

    out = io.BytesIO()
    frames = _Frames(out)
    data = _frame(1, b"abc") + _frame(2, b"x" * 5000) + _frame(1, b"def") + _frame(2, b"end\n")
    for i in range(len(data)):
        frames.feed(data[i : i + 1])
    assert out.getvalue() == b"abcdef"
    assert frames.stderr.endswith(b"xend\n") and len(frames.stderr) == 4096


def test_one_warm_container_serves_home_and_cpus_builds_fitted_per_build(tmp_path: Path) -> None:
    from harness.build import run_build

    engine = FakeEngine()
    engine.api = StreamingApi(engine, b"reset-ok\n")
    session = BuildSession(engine, tmp_path / "work", lease_s=0)  # type: ignore[arg-type]
    spec = _spec(tmp_path)
    envs = [PLAN.control, PLAN.experiment(["num_cpus"]), PLAN.experiment(["home"]), PLAN.control]
    inodes, homes = [], []
    for i, env in enumerate(envs):
        assert run_build(session, spec, env, f"b{i}").ok
        (container,) = engine.by_id.values()  # the same container all along
        passwd = tmp_path / "work" / ".mounts" / container.name / "passwd"
        inodes.append(passwd.stat().st_ino)
        homes.append(next(x for x in passwd.read_text().splitlines() if x.startswith("builder:")))
    (container,) = engine.by_id.values()
    assert container.options["cpuset_cpus"] == "0-1"  # every CPU, said explicitly
    assert (
        "/home" in container.options["tmpfs"] and "/home/builder" not in container.options["tmpfs"]
    )
    # the cpuset changes only when a build wants another one
    assert engine.updates == [(container.id, "0"), (container.id, "0-1")]
    assert len(set(inodes)) == 1  # rewritten in place: the bind mount keeps showing it
    assert [h.split(":")[5] for h in homes] == [
        "/home/builder",
        "/home/builder",
        "/home/second-home",
        "/home/builder",
    ]
