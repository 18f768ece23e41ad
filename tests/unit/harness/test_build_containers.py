"""Build containers without Docker: the hardened options each build gets, the limits, and the
session's cancellation (thread-safe, prompt, nothing started after it)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from harness import build
from harness.build import (
    BuildCancelled,
    BuildLimits,
    BuildSession,
    BuildSpec,
    ImageInfo,
    container_options,
    run_parallel,
)
from harness.errors import ConfigError
from harness.variations import CONTROL, VariationSpec, plan_variations
from tests.support.builds import FULL_BUILDER as CAPS


class FakeContainer:
    """A container whose `wait` blocks until it is removed (as the engine's does)."""

    def __init__(self, ident: str) -> None:
        self.id = ident
        self.removed = threading.Event()

    def start(self) -> None:
        if self.removed.is_set():
            raise build.docker.errors.NotFound("gone")

    def wait(self, timeout: float) -> dict[str, int]:
        if not self.removed.wait(timeout):
            raise build.requests.exceptions.ReadTimeout("timed out")
        return {"StatusCode": 137}

    def remove(self, **_: Any) -> None:
        self.removed.set()

    def kill(self) -> None:
        self.removed.set()


class FakeClient:
    def __init__(self) -> None:
        self.created: list[FakeContainer] = []
        self.containers = self

    def create(self, _image: str, **_: Any) -> FakeContainer:
        container = FakeContainer(f"c{len(self.created)}")
        self.created.append(container)
        return container

    def list(self, **_: Any) -> list[FakeContainer]:
        return []


def _spec(tmp_path: Path, **changes: Any) -> BuildSpec:
    image = ImageInfo("builder", "sha256:1", {}, CAPS, "builder-python")
    return BuildSpec(tmp_path, "make", image, ("out",), **changes)


def _session(tmp_path: Path, client: Any = None) -> BuildSession:
    session = BuildSession(client or FakeClient(), tmp_path / "work", lease_s=0, warm=False)
    session.host_paths_seen = True  # no engine here to check the bind mounts against
    session.engine_cpus = "0-1"  # what a container on every CPU would say
    return session


# -- the posture --------------------------------------------------------------------------------


def test_every_default_build_runs_hardened_as_its_build_user(tmp_path: Path) -> None:
    plan = plan_variations(VariationSpec(), CAPS)
    session = _session(tmp_path)
    for index, env in enumerate((plan.control, plan.experiment())):
        mounts = tmp_path / f"m{index}"
        options = container_options(session, _spec(tmp_path), env, "A", "n", mounts)
        assert options["user"] == f"{env.uid}:{env.gid}" and env.uid != 0
        assert options["cap_drop"] == ["ALL"] and "cap_add" not in options
        assert options["security_opt"] == ["no-new-privileges"]
        assert options["read_only"] is True and options["network_mode"] == "none"
        assert options["pids_limit"] == 1024 and options["mem_limit"] == "2g"
        assert options["memswap_limit"] == options["mem_limit"]
        assert "privileged" not in options
        # what it may write: tmpfs owned by the build user, and the output folder
        assert f"uid={env.uid},gid={env.gid}" in options["tmpfs"]["/build"]
        assert env.home in options["tmpfs"]
        assert options["volumes"][str(tmp_path)] == {"bind": "/src", "mode": "ro"}
        passwd = (mounts / "passwd").read_text()
        assert f"{env.user}:x:{env.uid}:{env.gid}:" in passwd
        assert (mounts / "out").stat().st_mode & 0o777 == 0o777


def test_only_the_opt_in_variations_add_what_they_need(tmp_path: Path) -> None:
    plan = plan_variations(VariationSpec.parse("+aslr,+disorderfs"), CAPS)
    session = _session(tmp_path)
    control = container_options(session, _spec(tmp_path), plan.control, "A", "n", tmp_path / "a")
    assert control["security_opt"] == ["no-new-privileges", "seccomp=unconfined"]
    assert control["user"] != "0:0" and "cap_add" not in control
    b = container_options(session, _spec(tmp_path), plan.experiment(), "B", "n", tmp_path / "b")
    # disorderfs mounts FUSE as root, then drops to the build user; still no-new-privileges
    assert b["user"] == "0:0" and "SYS_ADMIN" in b["cap_add"] and b["cap_drop"] == ["ALL"]
    assert "no-new-privileges" in b["security_opt"]


def test_limits_come_from_the_spec_and_are_checked(tmp_path: Path) -> None:
    spec = _spec(tmp_path, limits=BuildLimits.from_json({"memory": "512M", "pids": 64}))
    options = container_options(_session(tmp_path), spec, CONTROL, "A", "n", tmp_path / "m")
    assert (options["mem_limit"], options["pids_limit"]) == ("512m", 64)
    for bad in ({"memory": "lots"}, {"pids": 3}, {"pids": True}):
        with pytest.raises(ConfigError, match=r"build (memory|pids) limit"):
            BuildLimits.from_json(bad)


# -- cancellation -------------------------------------------------------------------------------


def test_cancel_stops_running_builds_at_once_and_nothing_starts_after(tmp_path: Path) -> None:
    client = FakeClient()
    session = _session(tmp_path, client)
    spec = _spec(tmp_path, timeout_s=600)
    errors: list[BaseException] = []

    def one() -> None:
        try:
            build.run_build(session, spec, CONTROL, "A")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while len(client.created) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    session.cancel()
    session.cancel()  # idempotent
    for thread in threads:
        thread.join(timeout=10)  # a safety net: without cancel they would wait 600 s
        assert not thread.is_alive()
    assert len(errors) == 2 and all(isinstance(e, BuildCancelled) for e in errors)
    assert all(c.removed.is_set() for c in client.created)
    with pytest.raises(BuildCancelled):
        build.run_build(session, spec, CONTROL, "late")
    assert len(client.created) == 2


def test_ctrl_c_while_waiting_cancels_the_session(tmp_path: Path) -> None:
    client = FakeClient()
    session = _session(tmp_path, client)
    spec = _spec(tmp_path, timeout_s=600)

    def waits() -> Any:
        return build.run_build(session, spec, CONTROL, "A")

    def interrupted() -> Any:
        deadline = time.monotonic() + 10
        while not client.created and time.monotonic() < deadline:
            time.sleep(0.01)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_parallel(session, [interrupted, waits], workers=2)
    assert session.cancelled and all(c.removed.is_set() for c in client.created)


@pytest.mark.parametrize(("cpus", "pinned"), [("0-1", "0"), ("2-3", "2"), ("5,7-9", "5")])
def test_num_cpus_pins_the_first_cpu_the_engine_offers_not_cpu_0(
    tmp_path: Path, cpus: str, pinned: str
) -> None:
    """An engine confined to CPUs 2-3 (a pinned dockerd) refuses a cpuset of 0."""
    plan = plan_variations(VariationSpec.parse("-all,num_cpus"), CAPS)
    session = _session(tmp_path)
    session.engine_cpus = cpus
    b = container_options(session, _spec(tmp_path), plan.experiment(), "B", "n", tmp_path / "b")
    a = container_options(session, _spec(tmp_path), plan.control, "A", "n", tmp_path / "a")
    assert b["cpuset_cpus"] == pinned and "cpuset_cpus" not in a
