"""Warm builder containers without Docker: which builds share a container, and the pool."""

from __future__ import annotations

import dataclasses
import socket as pysocket
from pathlib import Path
from typing import Any

import pytest

from harness._internal.build_runner import IDLE, RUNNER, RUNNER_SHELL, UNTRACEABLE
from harness.build import BuildSession, BuildSpec, ImageInfo, build_exec_environment
from harness.build_warm import can_run_warm, warm_key
from harness.variations import VariationSpec, plan_variations
from tests.support.builds import FULL_BUILDER as CAPS

PLAN = plan_variations(VariationSpec.parse("+disorderfs"), CAPS)
PER_CONTAINER = {"user_group", "domain_host"}
"""What an exec can't change (HOME and the cpuset are set per build)."""


@pytest.fixture(autouse=True)
def _short_stop_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    # a fake container that still runs needs no second for the engine to notice it stopped
    from harness import build_warm

    monkeypatch.setattr(build_warm, "_STOP_WAIT_S", 0.05)


def _spec(tmp_path: Path) -> BuildSpec:
    image = ImageInfo("img", "sha256:" + "0" * 64, {}, CAPS, "img")
    subject = tmp_path / "subject"
    (subject / "a").mkdir(parents=True, exist_ok=True)
    for name in ("a/x", "a.c", "b"):
        (subject / name).write_text(name)
    return BuildSpec(subject, "make", image, ("out",))


class FakeContainer:
    def __init__(self, ident: str) -> None:
        self.id = ident
        self.name = ident
        self.removed = False
        self.stopped = False
        self.engine_end: pysocket.socket | None = None

        self.etc: dict[str, bytes] = {}
        self.puts = 0
        self.log = b"cpus=0-1\n"

    def remove(self, **_: Any) -> None:
        self.removed = True
        if self.engine_end is not None:
            self.engine_end.close()

    def kill(self) -> None:
        if self.engine_end is not None:
            self.engine_end.close()

    def put_archive(self, path: str, data: bytes) -> bool:
        import io
        import tarfile

        assert path == "/etc"
        self.puts += 1
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar:
                assert member.uid == 0 and member.mode == 0o644  # root's, read-only to others
                source = tar.extractfile(member)
                assert source is not None
                self.etc[member.name] = source.read()
        return True

    def logs(self, **_: Any) -> bytes:
        return self.log


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
    assert warm["CIHUB_CONFIG"].endswith(
        "LEASE_S=\nSUBJECT=stdin\nOUT=/out/007-A\nRESET=1\nREUSE=1\nHOME_ROOT=/home\n"
    )
    assert "SUBJECT=\n" in cold["CIHUB_CONFIG"]  # a one-off build copies /src
    assert "M=$OUT/meta" in RUNNER and "reset-ok" in RUNNER
    # the idle process ends with its stdin (the driver's stream)
    assert "while read -r _; do :; done\nexit 95" in IDLE


@pytest.mark.parametrize("env", [PLAN.control, PLAN.experiment(["user_group"])])
def test_a_warm_containers_pid_1_is_an_init_of_another_user_than_the_builds(
    tmp_path: Path, env: Any
) -> None:
    """A build can't open the lease (/proc/1/fd/0) or signal the idle process of another
    user; docker-init reaps the orphans of builds."""
    from harness.build_warm import idle_user, warm_options

    session = BuildSession(client=None, workdir=tmp_path)  # type: ignore[arg-type]
    options = warm_options(session, _spec(tmp_path), env, "n")
    assert options["init"] is True
    uid, gid = (int(x) for x in options["user"].split(":"))
    assert uid not in (0, env.uid, env.gid) and gid not in (0, env.uid, env.gid)
    nobody = dataclasses.replace(env, uid=65534, gid=65534)
    assert "65534" not in idle_user(nobody)


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
    session.give_back("k", second)  # after a cancel: removed at once, never pooled
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
    session.host_paths_seen = True  # the disorderfs build's bind mounts: checked elsewhere
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

    def exec_create(self, container: str, _cmd: Any, **options: Any) -> dict[str, str]:
        assert options["stdin"]  # the subject comes on the runner's stdin
        return {"Id": container}

    def update_container(self, container: str, cpuset_cpus: str) -> None:
        self.client.updates.append((container, cpuset_cpus))

    def inspect_container(self, container: str) -> dict[str, Any]:
        ours = self.client.by_id[container]
        return {"State": {"Running": not (ours.removed or ours.stopped)}}

    def exec_inspect(self, _exec_id: str) -> dict[str, Any]:
        return dict(self.client.exec_state)

    def exec_start(self, exec_id: str, socket: bool = False) -> Any:
        assert socket  # attached: the driver reads the stream, it never polls
        ours, engine = pysocket.socketpair()
        self.client.by_id[exec_id].engine_end = engine
        return ours


class FakeEngine:
    def __init__(self) -> None:
        self.by_id: dict[str, FakeContainer] = {}
        self.updates: list[tuple[str, str]] = []
        self.exec_state: dict[str, Any] = {"Running": False, "ExitCode": 0}
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
    session.settle()  # removed in the background
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
    """An exec that says `stderr_head` on stderr (the runner's first line: it can't be traced),
    sends the runner's output archive on stdout (in small frames, split across reads) and
    `stderr_tail` on stderr, then ends."""

    def __init__(
        self, client: FakeEngine, stderr_tail: bytes, stderr_head: bytes = b"runner-untraceable\n"
    ) -> None:
        super().__init__(client)
        self.stderr_head = stderr_head
        self.stderr_tail = stderr_tail
        self.out = ""
        self.subjects: list[list[str]] = []
        self.commands: list[list[str]] = []

    def exec_create(self, container: str, cmd: Any, **options: Any) -> dict[str, str]:
        self.commands.append(list(cmd))
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
        data = _frame(2, self.stderr_head) if self.stderr_head else b""
        data += b"".join(_frame(1, archive[i : i + 700]) for i in range(0, len(archive), 700))
        data += _frame(2, b"some noise\n") + _frame(2, self.stderr_tail)

        def send() -> None:
            import tarfile

            # the runner's tar reads the subject to its end first (the engine drains stdin)
            with tarfile.open(fileobj=engine.makefile("rb"), mode="r|") as tar:
                self.subjects.append([m.name for m in tar])
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
    session.settle()  # removed in the background
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
    assert frames.first_line is None  # longer than any line a runner says first


def test_the_stream_splitter_keeps_the_first_line_of_stderr_whatever_follows() -> None:
    import io

    from harness.build_warm import _Frames

    frames = _Frames(io.BytesIO())
    data = _frame(2, b"runner-un") + _frame(1, b"abc") + _frame(2, b"traceable\nmore\n")
    data += _frame(2, b"runner-untraceable\n" * 300)  # a build saying it later changes nothing
    for i in range(len(data)):
        frames.feed(data[i : i + 1])
    assert frames.first_line == b"runner-untraceable"
    unfinished = _Frames(io.BytesIO())
    unfinished.feed(_frame(2, b"runner-untraceable"))
    assert unfinished.first_line is None


@pytest.mark.parametrize(
    "head",
    [
        b"runner-traceable\n",
        b"",
        b"noise\nrunner-untraceable\n",
        b"runner-untraceable",
        b"runner-untraceable-not\n",
    ],
)
def test_a_container_whose_runner_could_be_traced_is_never_reused(
    tmp_path: Path, head: bytes
) -> None:
    """A build that can trace its runner could forge its exit 0 and its `reset-ok` line: only a
    runner whose first stderr line (said before the build started) is `runner-untraceable` lets
    its container be reused. The build itself still counts."""
    from harness.build import run_build

    engine = FakeEngine()
    engine.api = StreamingApi(engine, b"reset-ok\n", stderr_head=head)
    session = BuildSession(engine, tmp_path / "work", lease_s=0)  # type: ignore[arg-type]
    spec = _spec(tmp_path)
    output = run_build(session, spec, PLAN.control, "A")
    assert output.ok
    assert session.ready(warm_key(spec, PLAN.control)) == 0
    session.settle()  # removed in the background
    (container,) = engine.by_id.values()
    assert container.removed


@pytest.mark.parametrize("shell", [RUNNER_SHELL, None])
def test_the_runner_runs_in_the_images_execute_only_shell_when_it_has_one(
    tmp_path: Path, shell: str | None
) -> None:
    from harness.build import run_build

    engine = FakeEngine()
    api = engine.api = StreamingApi(engine, b"reset-ok\n")
    session = BuildSession(engine, tmp_path / "work", lease_s=0)  # type: ignore[arg-type]
    spec = _spec(tmp_path)
    spec = dataclasses.replace(spec, image=dataclasses.replace(spec.image, runner_shell=shell))
    run_build(session, spec, PLAN.control, "A")
    assert api.commands == [[shell or "/bin/sh", "-c", RUNNER, "cihub-runner"]]


def test_a_warm_runner_says_whether_it_can_be_traced_before_the_build_starts() -> None:
    """Said first (see `harness.build_warm`): before the runner reads the subject and starts
    the build, which could say it for a runner it can trace."""
    said = RUNNER.index(f"echo {UNTRACEABLE} >&2")
    assert said < RUNNER.index('tar -C "$SRC_DIR" -xpf -') < RUNNER.index("/cihub/build.sh'")
    # untraceable only when the runner's memory file is there and the subshell can't open it
    check = RUNNER.index('[ -e "/proc/$$/mem" ] && ! [ -O "/proc/$$/mem" ]')
    assert check < said < RUNNER.index("echo runner-traceable >&2")


def test_the_traceable_check_says_traceable_for_a_dumpable_shell() -> None:
    """The check as the runner runs it, in a plain (dumpable) shell here: its /proc files are
    its own user's, so it says "traceable" whether or not it may open its memory (as root it
    may; an LSM refusing the open by path would not make it untraceable either)."""
    import re
    import subprocess

    found = re.search(r'(?ms)^if \[ "\$RESET" = 1 \]; then\n(.*?)^fi$', RUNNER)
    assert found is not None and "/proc/$$/mem" in found.group(1)
    said = subprocess.run(
        ["sh", "-c", "RESET=1\n" + found.group(0)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert said.stderr.strip() == "runner-traceable"


def test_one_warm_container_serves_home_and_cpus_builds_fitted_per_build(tmp_path: Path) -> None:
    from harness.build import run_build

    engine = FakeEngine()
    engine.api = StreamingApi(engine, b"reset-ok\n")
    session = BuildSession(engine, tmp_path / "work", lease_s=0)  # type: ignore[arg-type]
    spec = _spec(tmp_path)
    envs = [PLAN.control, PLAN.experiment(["num_cpus"]), PLAN.experiment(["home"]), PLAN.control]
    homes, puts = [], []
    for i, env in enumerate(envs):
        assert run_build(session, spec, env, f"b{i}").ok
        (container,) = engine.by_id.values()  # the same container all along
        passwd = container.etc["passwd"].decode()
        homes.append(next(x for x in passwd.splitlines() if x.startswith("builder:")))
        puts.append(container.puts)
    (container,) = engine.by_id.values()
    # started for a build on every CPU: no cpuset at all, whatever the engine's CPUs are
    assert "cpuset_cpus" not in container.options
    assert (
        "/home" in container.options["tmpfs"] and "/home/builder" not in container.options["tmpfs"]
    )
    # the cpuset changes only when a build wants another one, and "every CPU" is what the
    # idle process said it had (this engine's CPUs are 0-1)
    assert engine.updates == [(container.id, "0"), (container.id, "0-1")]
    assert [h.split(":")[5] for h in homes] == [
        "/home/builder",
        "/home/builder",
        "/home/second-home",
        "/home/builder",
    ]
    assert puts == [1, 1, 2, 3]  # /etc/passwd is written again only when HOME changes


def _cpu_list(cpus: str) -> set[int]:
    chosen: set[int] = set()
    for part in cpus.split(","):
        low, _, high = part.partition("-")
        chosen.update(range(int(low), int(high or low) + 1))
    return chosen


def _confined_engine(cpus: str, refusal: str | None = None) -> FakeEngine:
    """An engine whose CPUs are `cpus` (a dockerd confined to them): its containers say so, and
    it refuses a cpuset outside them, at create and update, in dockerd's words (or `refusal`)."""
    import docker.errors

    engine = FakeEngine()
    engine.api = StreamingApi(engine, b"reset-ok\n")
    original_create, original_update = engine.create, engine.api.update_container

    def check(cpuset: str | None) -> None:
        if cpuset and not _cpu_list(cpuset) <= _cpu_list(cpus):
            said = refusal or (
                f"Requested CPUs are not available - requested {cpuset}, available: {cpus}"
            )
            raise docker.errors.APIError("400 Client Error", explanation=said)

    def create(image: str, **options: Any) -> Any:
        check(options.get("cpuset_cpus"))
        container = original_create(image, **options)
        container.log = f"cpus={cpus}\n".encode()
        return container

    def update(container: str, cpuset_cpus: str) -> None:
        check(cpuset_cpus)
        original_update(container, cpuset_cpus)

    engine.create = create  # type: ignore[method-assign]
    engine.api.update_container = update  # type: ignore[method-assign]
    return engine


def test_every_cpu_is_the_engines_own_cpuset_not_0_to_n(tmp_path: Path) -> None:
    """An engine confined to CPUs 2-3 (a pinned dockerd): num_cpus's guess of CPU 0 is refused
    and the engine's first CPU pinned instead; a narrowed warm container is widened back to
    2-3, never to the 0-1 that counting CPUs from 0 would give (and the engine refuse)."""
    from harness.build import run_build

    engine = _confined_engine("2-3")
    session = BuildSession(engine, tmp_path / "work", lease_s=0)  # type: ignore[arg-type]
    spec = _spec(tmp_path)
    for i, env in enumerate([PLAN.control, PLAN.experiment(["num_cpus"]), PLAN.control]):
        assert run_build(session, spec, env, f"c{i}").ok
    (container,) = engine.by_id.values()
    assert engine.updates == [(container.id, "2"), (container.id, "2-3")]


def test_a_first_build_on_one_cpu_learns_which_cpu_is_the_engines_first(tmp_path: Path) -> None:
    """No container has said the engine's CPUs yet: the num_cpus build's container asks for
    CPU 0, the engine refuses it naming its CPUs, and it starts on the first of them (no
    container is started only to ask, which would hold B back behind a third start)."""
    from harness.build import run_build

    engine = _confined_engine("2-3")
    session = BuildSession(engine, tmp_path / "work", lease_s=0)  # type: ignore[arg-type]
    spec = _spec(tmp_path)
    assert run_build(session, spec, PLAN.experiment(["num_cpus"]), "n").ok
    (container,) = engine.by_id.values()
    assert container.options["cpuset_cpus"] == "2" and engine.updates == []
    assert run_build(session, spec, PLAN.control, "a").ok  # the same one, widened back
    assert len(engine.by_id) == 1 and engine.updates == [(container.id, "2-3")]


def test_on_an_engine_with_cpu_0_num_cpus_pins_it_at_once(tmp_path: Path) -> None:
    from harness.build import run_build

    engine = _confined_engine("0-1")
    session = BuildSession(engine, tmp_path / "work", lease_s=0)  # type: ignore[arg-type]
    assert run_build(session, _spec(tmp_path), PLAN.experiment(["num_cpus"]), "n").ok
    (container,) = engine.by_id.values()
    assert container.options["cpuset_cpus"] == "0" and engine.updates == []


def test_an_engine_that_refuses_cpu_0_without_naming_its_cpus_fails_on_one_line(
    tmp_path: Path,
) -> None:
    from harness.build import run_build
    from harness.errors import InfraError

    engine = _confined_engine("2-3", refusal="cpuset not allowed here")
    session = BuildSession(engine, tmp_path / "work", lease_s=0)  # type: ignore[arg-type]
    with pytest.raises(InfraError, match=r"could not start a warm builder \(cpuset not allowed"):
        run_build(session, _spec(tmp_path), PLAN.experiment(["num_cpus"]), "n")


@pytest.mark.parametrize(
    ("cpus", "first"),
    [("0-3", "0"), ("2-3", "2"), ("5,7-9", "5"), (" 12\n", "12"), ("", None), ("x", None)],
)
def test_the_first_cpu_of_a_cpuset_list(cpus: str, first: str | None) -> None:
    from harness.build_warm import first_cpu

    assert first_cpu(cpus) == first


def test_the_subject_goes_over_the_api_in_the_order_asked_for(tmp_path: Path) -> None:
    from harness.build import run_build

    engine = FakeEngine()
    engine.api = StreamingApi(engine, b"reset-ok\n")
    session = BuildSession(engine, tmp_path / "work", lease_s=0)  # type: ignore[arg-type]
    spec = _spec(tmp_path)
    assert run_build(session, spec, PLAN.control, "A").ok
    assert run_build(session, spec, PLAN.experiment(["fileordering"]), "B").ok
    # `find . | sort` with LC_ALL=C: "./a.c" < "./a/x" ('.' < '/'); reversed for B
    assert engine.api.subjects == [
        ["./a", "./a.c", "./a/x", "./b"],
        ["./b", "./a/x", "./a.c", "./a"],
    ]
    (container,) = engine.by_id.values()
    options = container.options
    # nothing of this machine is mounted: no host folder the engine would have to see
    assert "volumes" not in options
    assert [(m["Type"], m["Target"]) for m in options["mounts"]] == [("volume", "/etc")]
    assert not [m for m in options["mounts"] if m["Type"] == "bind"]
    assert options["stdin_open"] is True and "/out" in options["tmpfs"]


class TruncatingApi(StreamingApi):
    """An exec that sends half of an output archive, then hangs until killed."""

    def exec_start(self, exec_id: str, socket: bool = False) -> Any:
        ours, engine = pysocket.socketpair()
        self.client.by_id[exec_id].engine_end = engine
        archive = _output_archive(self.out.rsplit("/", 1)[-1], {"meta/build.log": b"x" * 9000})
        engine.sendall(_frame(1, archive[:2000]))
        return ours


def test_a_timed_out_build_is_timed_out_whatever_its_stream_held(tmp_path: Path) -> None:
    from harness.build import run_build

    engine = FakeEngine()
    engine.api = TruncatingApi(engine, b"")
    session = BuildSession(engine, tmp_path / "work", lease_s=0)  # type: ignore[arg-type]
    spec = dataclasses.replace(_spec(tmp_path), timeout_s=0.5)
    output = run_build(session, spec, PLAN.control, "A")  # not an InfraError (unreadable tar)
    assert output.timed_out and not output.ok and output.failure() == "timed out"
    assert output.setup_error is None and output.digest is None
    session.settle()  # removed in the background
    (container,) = engine.by_id.values()
    assert container.removed  # never reused after a timeout


def test_a_disorderfs_build_on_an_engine_that_cannot_see_this_machine_fails_up_front(
    tmp_path: Path,
) -> None:
    import docker.errors

    from harness import build_warm
    from harness.errors import ConfigError

    class Blind(FakeEngine):
        def create(self, _image: str, *_: Any, **options: Any) -> Any:
            container = super().create(_image, **options)

            def get_archive(path: str) -> Any:
                raise docker.errors.NotFound(f"{path}: no such file")

            container.get_archive = get_archive  # type: ignore[attr-defined]
            return container

    engine = Blind()
    session = BuildSession(engine, tmp_path / "work", lease_s=0)  # type: ignore[arg-type]
    envs = [PLAN.control, PLAN.experiment(["disorderfs"])]
    with pytest.raises(ConfigError, match=r"disorderfs variation .* does not see them"):
        build_warm.prewarm(session, _spec(tmp_path), envs, workers=1)
    # only the check's container was made (and removed): no build started
    session.settle()  # removed in the background
    (probe,) = engine.by_id.values()
    assert probe.removed and probe.options["mounts"][0]["Type"] == "bind"


@pytest.mark.parametrize("linked", [True, False])
def test_the_identity_files_go_where_the_image_reads_them(tmp_path: Path, linked: bool) -> None:
    """The lab builder images link /etc/passwd into /cihub-etc, a tmpfs the runner writes per
    build (no engine call); another image gets all of /etc as a volume the engine fills from
    the image, written with `put_archive`."""
    from harness.build_warm import warm_options

    spec = _spec(tmp_path)
    spec = dataclasses.replace(spec, image=dataclasses.replace(spec.image, identity_linked=linked))
    session = BuildSession(client=None, workdir=tmp_path)  # type: ignore[arg-type]
    options = warm_options(session, spec, PLAN.control, "n")
    environment = build_exec_environment(session, spec, PLAN.experiment(["home"]), "/out/1-A")
    if linked:
        assert "mounts" not in options and "uid=1000" in options["tmpfs"]["/cihub-etc"]
        assert ":/home/second-home:" in environment["CIHUB_PASSWD"]
        assert environment["CIHUB_GROUP"].startswith("root:x:0:\n")
    else:
        (mount,) = options["mounts"]
        assert (mount["Type"], mount["Target"], mount["Source"]) == ("volume", "/etc", None)
        assert not mount.get("VolumeOptions", {}).get("NoCopy")
        assert "CIHUB_PASSWD" not in environment
    # a one-off build has its identity files bind-mounted
    assert "CIHUB_PASSWD" not in build_exec_environment(session, spec, PLAN.control)


def test_a_linked_image_changes_home_without_an_engine_call(tmp_path: Path) -> None:
    from harness.build import run_build

    engine = FakeEngine()
    engine.api = StreamingApi(engine, b"reset-ok\n")
    seen: list[str] = []
    create = engine.api.exec_create

    def record(container: str, cmd: Any, **options: Any) -> dict[str, str]:
        seen.append(options["environment"]["CIHUB_PASSWD"])
        return create(container, cmd, **options)

    engine.api.exec_create = record  # type: ignore[method-assign]
    session = BuildSession(engine, tmp_path / "work", lease_s=0)  # type: ignore[arg-type]
    spec = _spec(tmp_path)
    spec = dataclasses.replace(spec, image=dataclasses.replace(spec.image, identity_linked=True))
    for i, env in enumerate([PLAN.control, PLAN.experiment(["home"]), PLAN.control]):
        assert run_build(session, spec, env, f"h{i}").ok
    (container,) = engine.by_id.values()
    assert container.puts == 0
    assert [
        line.split(":")[5] for x in seen for line in x.splitlines() if "build user" in line
    ] == [
        "/home/builder",
        "/home/second-home",
        "/home/builder",
    ]


class EmptyStreamApi(StreamingApi):
    """An exec whose stream ends with nothing on it: the runner ended before writing anything,
    or the engine's connection dropped (what `exec_inspect` then says tells them apart)."""

    def exec_start(self, exec_id: str, socket: bool = False) -> Any:
        ours, engine = pysocket.socketpair()
        engine.close()
        return ours


@pytest.mark.parametrize(
    ("state", "said"),
    [
        (None, "lost the engine while building"),  # can't be asked (the ssh connection dropped)
        # the stream dropped, the build still runs
        ({"Running": True, "ExitCode": None}, "the build's stream ended but its exec is still"),
        ({"Running": False, "ExitCode": None}, "gives the build's exec no exit status"),
    ],
)
def test_losing_the_engine_mid_build_is_an_infra_error_not_the_builds_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state: dict[str, Any] | None, said: str
) -> None:
    from harness import build_warm
    from harness.build import run_build
    from harness.errors import InfraError

    monkeypatch.setattr(build_warm, "_EXIT_WAIT_S", 0.1)
    engine = FakeEngine()
    engine.api = EmptyStreamApi(engine, b"")
    if state is None:

        def gone(_exec_id: str) -> dict[str, Any]:
            import requests

            raise requests.ConnectionError("ssh: connection reset")

        engine.api.exec_inspect = gone  # type: ignore[method-assign]
    else:
        engine.exec_state = state
    session = BuildSession(engine, tmp_path / "work", lease_s=0)  # type: ignore[arg-type]
    with pytest.raises(InfraError, match=said):
        run_build(session, _spec(tmp_path), PLAN.control, "A")
    session.settle()  # removed in the background
    (container,) = engine.by_id.values()
    assert container.removed


def test_a_runner_that_ended_without_output_is_still_a_setup_failure(tmp_path: Path) -> None:
    from harness.build import run_build

    engine = FakeEngine()
    engine.api = EmptyStreamApi(engine, b"")
    engine.exec_state = {"Running": False, "ExitCode": 137}  # e.g. killed out of memory
    session = BuildSession(engine, tmp_path / "work", lease_s=0)  # type: ignore[arg-type]
    output = run_build(session, _spec(tmp_path), PLAN.control, "A")
    assert not output.ok and output.failure().startswith("setup failed")


def test_a_runner_killed_after_saying_reset_ok_fails_and_its_container_is_not_reused(
    tmp_path: Path,
) -> None:
    """A build can write `reset-ok` on the runner's stderr and kill the runner: the exit status
    says so."""
    from harness.build import run_build

    engine = FakeEngine()
    engine.api = StreamingApi(engine, b"reset-ok\n")
    engine.exec_state = {"Running": False, "ExitCode": 137}
    session = BuildSession(engine, tmp_path / "work", lease_s=0)  # type: ignore[arg-type]
    spec = _spec(tmp_path)
    output = run_build(session, spec, PLAN.control, "A")
    assert not output.ok and "status 137" in output.failure()
    assert session.ready(warm_key(spec, PLAN.control)) == 0
    session.settle()  # removed in the background
    (container,) = engine.by_id.values()
    assert container.removed


def test_a_container_stopped_from_outside_mid_build_is_an_infra_error_not_a_culprit(
    tmp_path: Path,
) -> None:
    """`docker kill` of a pooled container: its runner's exec ends with 137, which must not
    read as the subject's build failing (the culprit search would blame a variation)."""
    from harness.build import run_build
    from harness.errors import InfraError

    engine = FakeEngine()
    engine.api = EmptyStreamApi(engine, b"")
    engine.exec_state = {"Running": False, "ExitCode": 137}
    create = engine.create

    def stopped_at_once(image: str, **options: Any) -> Any:
        container = create(image, **options)
        container.stopped = True
        return container

    engine.create = stopped_at_once  # type: ignore[method-assign]
    session = BuildSession(engine, tmp_path / "work", lease_s=0)  # type: ignore[arg-type]
    with pytest.raises(InfraError, match=r"stopped from outside while building .*status 137"):
        run_build(session, _spec(tmp_path), PLAN.control, "A")
    session.settle()  # removed in the background
    (container,) = engine.by_id.values()
    assert container.removed


@pytest.mark.parametrize(("code", "ok"), [(92, True), (91, False)])
def test_a_build_that_could_not_be_reset_counts_but_its_container_is_not_reused(
    tmp_path: Path, code: int, ok: bool
) -> None:
    """92: built, but the container could not be emptied (a reset-ok line the build forged
    doesn't change that)."""
    from harness.build import run_build

    engine = FakeEngine()
    engine.api = StreamingApi(engine, b"reset-ok\n")
    engine.exec_state = {"Running": False, "ExitCode": code}
    session = BuildSession(engine, tmp_path / "work", lease_s=0)  # type: ignore[arg-type]
    spec = _spec(tmp_path)
    output = run_build(session, spec, PLAN.control, "A")
    assert output.setup_error is None if ok else output.setup_error is not None
    assert session.ready(warm_key(spec, PLAN.control)) == 0
    session.settle()  # removed in the background
    (container,) = engine.by_id.values()
    assert container.removed


def test_an_idle_container_that_stopped_is_replaced_by_a_fresh_one(tmp_path: Path) -> None:
    import docker.errors
    import requests

    from harness.build import run_build

    engine = FakeEngine()
    api = StreamingApi(engine, b"reset-ok\n")
    engine.api = api
    session = BuildSession(engine, tmp_path / "work", lease_s=0)  # type: ignore[arg-type]
    spec = _spec(tmp_path)
    assert run_build(session, spec, PLAN.control, "A").ok
    (stopped,) = engine.by_id.values()
    create = api.exec_create

    def refused(container: str, cmd: Any, **options: Any) -> dict[str, str]:
        if container == stopped.id:
            response = requests.Response()
            response.status_code = 409
            raise docker.errors.APIError("is not running", response=response)
        return create(container, cmd, **options)

    api.exec_create = refused  # type: ignore[method-assign]
    output = run_build(session, spec, PLAN.control, "B")
    assert output.ok
    session.settle()  # removed in the background
    first, second = engine.by_id.values()
    assert first is stopped and stopped.removed and not second.removed
    assert session.ready(warm_key(spec, PLAN.control)) == 1


def test_an_image_gone_from_the_engine_does_not_read_as_a_blind_engine(tmp_path: Path) -> None:
    import docker.errors

    from harness.build import check_host_paths
    from harness.errors import InfraError

    class NoImage(FakeEngine):
        def create(self, _image: str, *_: Any, **options: Any) -> Any:
            raise docker.errors.ImageNotFound("No such image: sha256:0000")

    session = BuildSession(NoImage(), tmp_path / "work", lease_s=0)  # type: ignore[arg-type]
    with pytest.raises(InfraError, match="gone from the engine") as caught:
        check_host_paths(session, _spec(tmp_path), PLAN.experiment(["disorderfs"]))
    assert "see them" not in str(caught.value)
    assert not session.host_paths_seen


def _refusing_start(engine: FakeEngine, said: str, when: Any) -> list[bool]:
    """`engine`'s containers refuse to start, with the engine's `said`, when `when(options)`;
    returns the `init` option of every container created."""
    import docker.errors
    import requests

    inits: list[bool] = []
    create = engine.create

    def create_refusing(image: str, **options: Any) -> Any:
        container = create(image, **options)
        inits.append(options["init"])

        def start() -> None:
            if when(options):
                response = requests.Response()
                response.status_code = 500
                raise docker.errors.APIError("500 Server Error", response, explanation=said)

        container.start = start
        return container

    engine.create = create_refusing  # type: ignore[method-assign]
    return inits


def test_an_engine_without_an_init_binary_is_named_not_worked_around(tmp_path: Path) -> None:
    """No retry without docker-init: a pid 1 that reaps nothing would fill a reused container's
    pids limit with zombies. The one-line error carries the engine's words."""
    from harness.build import run_build
    from harness.errors import InfraError

    engine = FakeEngine()
    engine.api = StreamingApi(engine, b"reset-ok\n")
    said = 'failed to create task: exec: "docker-init": executable file not found in $PATH'
    inits = _refusing_start(engine, said, lambda options: options["init"])
    session = BuildSession(engine, tmp_path / "work", lease_s=0)  # type: ignore[arg-type]
    with pytest.raises(InfraError, match=r'could not start a warm builder .*"docker-init"'):
        run_build(session, _spec(tmp_path), PLAN.control, "A")
    assert inits == [True]
    session.settle()  # removed in the background
    assert all(c.removed for c in engine.by_id.values())


def test_a_warm_builder_the_engine_refuses_says_why_on_one_line(tmp_path: Path) -> None:
    from harness.build import run_build
    from harness.errors import InfraError

    engine = FakeEngine()
    engine.api = StreamingApi(engine, b"reset-ok\n")
    inits = _refusing_start(engine, "no space left\non device", lambda _options: True)
    session = BuildSession(engine, tmp_path / "work", lease_s=0)  # type: ignore[arg-type]
    with pytest.raises(
        InfraError, match=r"could not start a warm builder \(no space left on device\)$"
    ):
        run_build(session, _spec(tmp_path), PLAN.control, "A")
    assert inits == [True]  # not an init problem: no second try
    session.settle()  # removed in the background
    assert all(c.removed for c in engine.by_id.values())


def test_a_session_reads_the_subject_once_per_file_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every build of a drill gets the same snapshot of the subject: it is archived once per
    file order, not once per build (a culprit search runs a dozen builds)."""
    import harness.build_warm as build_warm
    from harness.build import run_build

    archived: list[bool] = []
    real = build_warm.write_subject_archive

    def counted(subject: Path, sink: Any, *, reverse: bool) -> None:
        archived.append(reverse)
        real(subject, sink, reverse=reverse)

    monkeypatch.setattr(build_warm, "write_subject_archive", counted)
    engine = FakeEngine()
    engine.api = StreamingApi(engine, b"reset-ok\n")
    session = BuildSession(engine, tmp_path / "work", lease_s=0)  # type: ignore[arg-type]
    spec = _spec(tmp_path)
    envs = [PLAN.control, PLAN.experiment(["fileordering"]), PLAN.control, PLAN.control]
    for i, env in enumerate(envs):
        assert run_build(session, spec, env, f"s{i}").ok
    assert sorted(archived) == [False, True]


@pytest.mark.parametrize(
    ("said", "learned"),
    [
        ("Requested CPUs are not available - requested 0, available: 2-3", "2-3"),
        ("Requested CPUs are not available - requested 0, available: 5,7-9", "5,7-9"),
        ("Requested CPUs are not available - requested 0, available: ", None),
        ("Requested CPUs are not available - requested 0, available: x-y", None),
        ("no such image", None),
    ],
)
def test_only_the_engines_own_refusal_naming_its_cpus_is_learned(
    tmp_path: Path, said: str, learned: str | None
) -> None:
    import docker.errors

    from harness.build_warm import first_engine_cpu, learned_engine_cpus

    session = BuildSession(FakeEngine(), tmp_path / "work", lease_s=0)  # type: ignore[arg-type]
    refusal = docker.errors.APIError("400 Client Error", explanation=said)
    assert first_engine_cpu(session) == "0"
    assert learned_engine_cpus(session, refusal) is (learned is not None)
    assert session.engine_cpus == learned
    if learned is not None:
        assert first_engine_cpu(session) == learned[0]
        assert not learned_engine_cpus(session, refusal)  # the same answer: no second try
