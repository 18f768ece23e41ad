"""Dual builds on the real engine: the evidence of a reproducible build verifies, and bad
input fails the way it should. Each sample subject's verdict and culprits, through the CLI and
through pytest, are checked in `test_drill_runner.py`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

import harness._cli as cli
from harness import telemetry
from harness._commands import run as run_command
from harness.evidence import KeySigner, TrustPins, verify_bundle
from lab import labels
from lab._internal.docker import docker_client
from lab.resources import resource_path

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCENARIOS = resource_path("scenarios", "determinism")
SUBJECTS = resource_path("scenarios", "subjects")


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    return docker_client()


@pytest.fixture
def cihub(monkeypatch: pytest.MonkeyPatch, signing_key: Path) -> Any:
    """`cihub`, with `run` drills signing with a local key."""
    if run_command not in cli.COMMAND_MODULES:
        monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, run_command))

    def main(args: list[str]) -> int:
        if args[:1] == ["run"]:
            args = [*args, "--sign", f"key:{signing_key}"]
        return cli.main(args)

    return main


def _preloads_left() -> list[int]:
    """The diffoscope preloads (`harness.compare.preload`) this process started that run."""
    left = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if parent == str(os.getpid()) and b"cihub-diffoscope-ready" in command:
            left.append(int(entry.name))
    return left


@pytest.fixture(autouse=True)
def no_containers_left(client: docker.DockerClient) -> Iterator[None]:
    """Every build and probe container this process started is gone when a test ends, and so
    is every diffoscope it started ahead (used or not)."""
    yield
    assert _preloads_left() == []
    mine = {"label": [f"{labels.MANAGED}=true", f"{labels.OWNER_PID}={os.getpid()}"]}
    left = [
        c.name
        for c in client.containers.list(all=True, filters=mine)
        if str(c.labels.get(labels.SERVICE, "")).startswith(("build-", "probe"))
    ]
    assert left == []


def _run(cihub: Any, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    code = cihub(["run", "determinism", *args, "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


def _records(evidence: Path) -> list[dict[str, Any]]:
    path = evidence / telemetry.NDJSON_NAME
    assert telemetry.validate_ndjson(path).valid
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_cli_evidence_verify_command_passes_the_reproducible_bundle(
    cihub: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path, signing_key: Path
) -> None:
    code, result, err = _run(
        cihub,
        capsys,
        "--subject",
        str(SUBJECTS / "py-reproducible"),
        "--build",
        "umask 022; python3 -m build --wheel --no-isolation --outdir dist .",
        "--artifacts",
        "dist/*.whl",
        "--image",
        "builder-python",
        "--evidence-dir",
        str(tmp_path),
    )
    assert code == 0, err
    public = tmp_path / "key.pub.pem"
    public.write_bytes(KeySigner.from_pem_file(signing_key).public_key_pem)
    assert cihub(["evidence", "verify", result["bundle"], "--key", str(public)]) == 0
    assert cihub(["evidence", "verify", result["bundle"]]) == 1  # a key must be pinned
    capsys.readouterr()


def test_a_failing_build_is_build_failed_with_exit_codes_and_log_tails(
    cihub: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = cihub(
        [
            "run",
            "determinism",
            "--subject",
            str(SUBJECTS / "tarball"),
            "--build",
            'echo "step one"; echo "no compiler for $(hostname)" >&2; exit 3',
            "--artifacts",
            "dist/*.tar",
            "--image",
            "builder-c",
            "--evidence-dir",
            str(tmp_path),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 2, err
    assert "build failed: A exited 3" in out and "B exited 3" in out
    assert "not reproducible" not in out
    assert "| no compiler for cihub-build-a" in out
    assert "| no compiler for cihub-build-b-variant" in out
    (bundle,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    result = json.loads((bundle / "determinism/result.json").read_text())
    assert result["verdict"] == "build-failed"
    assert [b["exit_code"] for b in result["builds"]] == [3, 3]
    assert "step one" in (bundle / "determinism/logs/A.log").read_text()
    (record,) = _records(tmp_path)
    assert record["result"] == "error" and record["determinism"]["verdict"] == "build-failed"
    assert not verify_bundle(bundle).passed


def test_a_variation_that_breaks_the_build_is_named_and_the_verdict_stays_build_failed(
    cihub: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    build = 'test "$LANG" = C.UTF-8 || { echo "no $LANG here" >&2; exit 4; }; echo ok > out.txt'
    code, result, err = _run(
        cihub,
        capsys,
        "--subject",
        str(SUBJECTS / "tarball"),
        "--build",
        build,
        "--artifacts",
        "out.txt",
        "--image",
        "builder-c",
        "--evidence-dir",
        str(tmp_path),
    )
    assert code == 2, err
    assert result["verdict"] == "build-failed"
    assert [b["exit_code"] for b in result["builds"]] == [0, 4]
    assert result["culprits"] == ["locales"]
    assert result["culprit_search"]["build_breakers"] == ["locales"]
    assert "B exited 4 (no fr_CH.UTF-8 here)" in result["detail"]


def test_an_artifact_glob_that_matches_nothing_is_an_error(
    cihub: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = cihub(
        [
            "run",
            "determinism",
            "--subject",
            str(SUBJECTS / "tarball"),
            "--build",
            "sh dist.sh",
            "--artifacts",
            "dist/*.tar",
            "dist/*.zip",
            "--image",
            "builder-c",
            "--evidence-dir",
            str(tmp_path),
        ]
    )
    err = capsys.readouterr().err.replace("\n", " ")
    assert code == 2
    assert "artifact glob(s) 'dist/*.zip' matched nothing in build A" in err
    (record,) = _records(tmp_path)
    assert record["result"] == "error" and record["evidence"]["complete"] is False


def test_a_missing_subject_is_an_error(
    cihub: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = cihub(
        [
            "run",
            "determinism",
            "--subject",
            str(tmp_path / "not-there"),
            "--build",
            "make",
            "--artifacts",
            "x",
            "--evidence-dir",
            str(tmp_path / "evidence"),
        ]
    )
    assert code == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_diffoscope_timeout_is_recorded_and_the_verdict_stands(
    cihub: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, result, err = _run(
        cihub,
        capsys,
        "--scenario",
        str(SCENARIOS / "tarball.yaml"),
        "--no-culprits",
        "--diffoscope-timeout",
        "0.05",
        "--evidence-dir",
        str(tmp_path),
    )
    assert code == 1, err
    assert result["verdict"] == "not-reproducible"
    assert result["compare"]["diffoscope"]["status"] == "timeout"
    assert "culprit_search" not in result
    bundle = Path(result["bundle"])
    diff = (bundle / "determinism/diff.txt").read_text()
    assert "~ dist/app.tar: content differs" in diff and ": timeout: " in diff
    (record,) = _records(tmp_path)
    assert record["determinism"]["diffoscope"] == "timeout"
    assert record["determinism"]["culprit_search"] == {"ran": False}
    log = (bundle / "audit/commands.log").read_text()
    assert "killed after 0.05 s" in log
    assert verify_bundle(bundle).check("determinism").status == "fail"


# -- verdicts that must not be wrong (issue 13) -------------------------------------------------


def test_hold_out_a_clock_dependent_build_with_time_off_blames_no_innocent_variation(
    cihub: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, result, err = _run(
        cihub,
        capsys,
        "--subject",
        str(SUBJECTS / "tarball"),
        "--build",
        "date +%Y-%m-%dT%H:%M:%S > o.txt",
        "--artifacts",
        "o.txt",
        "--variations=-time",
        "--evidence-dir",
        str(tmp_path),
    )
    assert code == 1, err
    assert result["verdict"] == "not-reproducible"
    # A and B did not share the clock, and the result says time was not varied
    assert result["clock"] == "time not varied: B started 2 s after A on the same clock"
    assert "time not varied: B started 2 s after A" in err
    search = result["culprit_search"]
    assert search["outcome"] in ("time", "inconclusive"), search
    assert set(result["culprits"]) <= {"time"}
    assert search["controls_agree"] is False
    (record,) = _records(tmp_path)
    assert record["determinism"]["clock"].startswith("time not varied")
    assert set(record["determinism"]["culprits"]) <= {"time"}


def test_empty_folders_and_fifos_are_compared(
    cihub: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    build = (
        "mkdir -p out && echo same > out/f && "
        '{ [ "$(hostname)" = cihub-build-a ] || '
        "{ mkdir -p out/only-in-B/empty && mkfifo out/only-in-B/pipe; }; }"
    )
    code, result, err = _run(
        cihub,
        capsys,
        "--subject",
        str(SUBJECTS / "tarball"),
        "--build",
        build,
        "--artifacts",
        "out",
        "--no-culprits",
        "--evidence-dir",
        str(tmp_path),
    )
    assert code == 1, err
    differences = result["compare"]["differences"]
    assert "+ out/only-in-B/empty: only in B (folder)" in differences
    assert "+ out/only-in-B/pipe: only in B (fifo)" in differences


def test_non_utf8_and_backslash_names_are_collected_and_compared_as_bytes(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    # the compare side only; the evidence bundle's handling of such names is another branch's
    from harness.build import BuildSpec, DualBuildRequest, dual_build
    from harness.compare import CompareRequest, compare_outputs
    from harness.compare.tree import display_name
    from harness.variations import VariationSpec, plan_variations

    build = (
        "mkdir -p out && printf 1 > \"out/$(printf 'caf\\351')\" && printf 2 > 'out/a\\b' && "
        '{ [ "$(hostname)" = cihub-build-a ] || printf 3 > "out/$(printf \'\\377\')"; }'
    )
    with _builder_session(client, tmp_path, "builder-python") as (session, image):
        plan = plan_variations(VariationSpec.parse("-all,domain_host"), image.capabilities)
        spec = BuildSpec((SUBJECTS / "tarball").resolve(), build, image, ("out",))
        built = dual_build(DualBuildRequest(spec, plan.control, plan.experiment()), session)
    assert built.a.digest is not None and built.b.digest is not None
    names = [os.fsencode(e.path) for e in built.a.digest.entries]
    assert names == [b"out", b"out/a\\b", b"out/caf\xe9"]
    compared = compare_outputs(
        CompareRequest(Path("A"), Path("B"), tmp_path, built.a.digest, built.b.digest),
    )
    assert [str(d) for d in compared.differences] == [
        "+ out/\\xff: only in B (file sha256:4e07408562bedb8b… 1 bytes)"
    ]
    compared.diff_text.encode("utf-8")  # writable as UTF-8 text
    assert display_name(built.a.digest.entries[1].path) == "out/a\\\\b"


def test_a_c_subject_builds_with_the_default_image(
    cihub: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, result, err = _run(
        cihub,
        capsys,
        "--subject",
        str(SUBJECTS / "c-hello"),
        "--build",
        "make",
        "--artifacts",
        "hello",
        "--no-culprits",
        "--evidence-dir",
        str(tmp_path),
    )
    assert code in (0, 1), err
    assert result["verdict"] in ("reproducible", "not-reproducible")
    assert "preparing builder image builder-python" in err
    assert result["image"]["lab_image"] == "builder-python"


# -- hardened containers, cancellation, builds that die with their driver ------------------------

_DRIVER_SESSION = """
import sys, tempfile, time
from pathlib import Path
from harness.build import BuildSession, BuildSpec, DualBuildRequest, dual_build
from harness.build import session_builder_image
from harness.build_warm import prewarm, warm_key
from harness.determinism import prepare_image
from harness.variations import VariationSpec, plan_variations
from lab._internal.docker import docker_client

client = docker_client()
tag = prepare_image(client, "builder-python", "offline", None)
with tempfile.TemporaryDirectory() as tmp:
    session = BuildSession(client, Path(tmp))
    image = session_builder_image(session, tag)
    plan = plan_variations(VariationSpec(), image.capabilities)
"""
"""A driver process's prologue: a build session on builder-python (the drivers these tests kill
go on from there, indented under its `with`)."""

_DRIVER = (
    _DRIVER_SESSION
    + """\
    spec = BuildSpec(Path(sys.argv[1]), "sleep 600; echo x > o", image, ("o",), timeout_s=900)
    try:
        dual_build(DualBuildRequest(spec, plan.control, plan.experiment()), session)
    finally:
        session.close()
"""
)


def _builds_of(client: docker.DockerClient, pid: int, *, running: bool) -> list[Any]:
    """The build containers driver `pid` started (one listing call: no race with removal)."""
    mine = {"label": [f"{labels.MANAGED}=true", f"{labels.OWNER_PID}={pid}"]}
    return [
        c
        for c in client.api.containers(all=not running, filters=mine)
        if str((c.get("Labels") or {}).get(labels.SERVICE, "")).startswith("build-")
    ]


def _wait_for(predicate: Any, limit_s: float) -> float:
    """Poll until `predicate()` holds; the seconds it took (a bounded wait, not a timing check)."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > limit_s:
            raise AssertionError(f"not within {limit_s} s")
        time.sleep(0.2)
    return time.monotonic() - started


@pytest.fixture
def driver(client: docker.DockerClient) -> Iterator[subprocess.Popen[bytes]]:
    """A process running a dual build of `sleep 600`, with both build containers up."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _DRIVER, str((SUBJECTS / "tarball").resolve())],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(lambda: len(_builds_of(client, proc.pid, running=True)) == 2, 120)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        for container in _builds_of(client, proc.pid, running=False):  # what it left
            with contextlib.suppress(docker.errors.NotFound):
                client.api.remove_container(container["Id"], force=True, v=True)


def test_build_containers_run_hardened(
    client: docker.DockerClient, driver: subprocess.Popen[bytes]
) -> None:
    for listed in _builds_of(client, driver.pid, running=True):
        container = client.containers.get(listed["Id"])
        host = container.attrs["HostConfig"]
        user = container.attrs["Config"]["User"]
        assert user and not user.startswith(("0", "root")), user
        assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd")
        assert "no-new-privileges" in host["SecurityOpt"]
        assert host["ReadonlyRootfs"] is True
        assert host["NetworkMode"] == "none"
        assert host["PidsLimit"] == 1024 and host["Memory"] == 2 * 1024**3
        assert host["MemorySwap"] == host["Memory"]
        assert not host.get("Privileged")
        # no folder of the driver's machine: the engine may be on another host
        mounts = [(m["Type"], m["Destination"]) for m in container.attrs["Mounts"]]
        assert mounts == [] and not host.get("Binds"), mounts
        assert "/cihub-etc" in host["Tmpfs"]  # the runner writes passwd and group there
        status = container.exec_run(["sh", "-c", "id -u; grep CapEff /proc/1/status"]).output
        uid, caps = status.decode().split("\n", 1)
        assert uid != "0" and caps.split()[-1] == "0000000000000000"


def test_ctrl_c_stops_the_build_containers_within_seconds(
    client: docker.DockerClient, driver: subprocess.Popen[bytes]
) -> None:
    driver.send_signal(signal.SIGINT)
    took = _wait_for(lambda: not _builds_of(client, driver.pid, running=False), 10)
    driver.wait(timeout=30)
    assert driver.returncode != 0
    print(f"SIGINT: both build containers gone after {took:.1f} s")


def test_builds_die_with_a_killed_driver_and_are_reaped(
    client: docker.DockerClient, driver: subprocess.Popen[bytes]
) -> None:
    from harness.build import LEASE_S, reap_stale_builds

    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    # the lease: the stream the driver held on each warm container's stdin ends with its
    # process, the idle process exits and the container stops with the build in it
    took = _wait_for(lambda: not _builds_of(client, driver.pid, running=True), LEASE_S + 20)
    print(f"SIGKILL: builds stopped {took:.1f} s after the driver died (lease {LEASE_S} s)")
    # stopped as their lease ended (exit 95); a lab reaper elsewhere may already have removed them
    left = _builds_of(client, driver.pid, running=False)
    assert all(c["Status"].startswith("Exited (95)") for c in left), left
    reaped = reap_stale_builds(client, owner_pid=driver.pid)
    assert len(reaped) == len(left)
    assert _builds_of(client, driver.pid, running=False) == []


_IDLE_DRIVER = (
    _DRIVER_SESSION
    + """\
    spec = BuildSpec(Path(sys.argv[1]), "true", image, ("o",))
    prewarm(session, spec, [plan.control, plan.control], workers=2)
    key = warm_key(spec, plan.control)
    taken = [session.take_idle(key), session.take_idle(key)]  # waits for both to start
    for container in taken:
        session.give_back(key, container)
    print("idle", flush=True)
    time.sleep(600)
"""
)


def test_idle_prewarmed_containers_die_with_a_killed_driver(client: docker.DockerClient) -> None:
    """A pooled container that runs no build holds the lease the same way: killed driver,
    stopped container, whatever builds it ran or not."""
    from harness.build import LEASE_S

    proc = subprocess.Popen(
        [sys.executable, "-c", _IDLE_DRIVER, str((SUBJECTS / "tarball").resolve())],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"idle", proc.stderr.read() if proc.stderr else ""
        assert len(_builds_of(client, proc.pid, running=True)) == 2
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        took = _wait_for(lambda: not _builds_of(client, proc.pid, running=True), LEASE_S + 20)
        print(f"SIGKILL: idle warm containers stopped {took:.1f} s after the driver died")
        left = _builds_of(client, proc.pid, running=False)
        assert all(c["Status"].startswith("Exited (95)") for c in left), left
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        for container in _builds_of(client, proc.pid, running=False):
            with contextlib.suppress(docker.errors.NotFound):
                client.api.remove_container(container["Id"], force=True, v=True)


def test_end_to_end_a_non_utf8_artifact_name_is_a_reproducible_build_with_a_record(
    cihub: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path, signing_key: Path
) -> None:
    code, result, err = _run(
        cihub,
        capsys,
        "--subject",
        str(SUBJECTS / "tarball"),
        "--build",
        "mkdir -p out && printf 1 > \"out/$(printf 'caf\\351')\" && printf 2 > 'out/a\\b'",
        "--artifacts",
        "out",
        "--variations=-all,umask",
        "--evidence-dir",
        str(tmp_path),
    )
    assert code == 0, err
    assert result["verdict"] == "reproducible"
    pins = TrustPins(keys=(KeySigner.from_pem_file(signing_key).public_key_pem,))
    report = verify_bundle(Path(result["bundle"]), pins=pins)
    assert report.passed, [c.to_json() for c in report.failures]
    (record,) = _records(tmp_path)
    assert record["determinism"]["verdict"] == "reproducible"


@contextlib.contextmanager
def _builder_session(
    client: docker.DockerClient, workdir: Path, builder: str = "builder-c"
) -> Iterator[tuple[Any, Any]]:
    """A build session on an offline lab builder image: (session, image)."""
    from harness.build import BuildSession, session_builder_image
    from harness.determinism import prepare_image

    tag = prepare_image(client, builder, "offline", None)
    with BuildSession(client, workdir) as session:
        yield session, session_builder_image(session, tag)


def _warm_builds(
    client: docker.DockerClient,
    work: Path,
    build: str,
    count: int,
    prefix: str,
    reuse: bool = True,
) -> list[Any]:
    """`count` builds of `build` (artifacts: `out`) on the tarball subject in one session: each
    must succeed, all in the same warm container (reset between them, so reused), or with
    `reuse=False` (no build follows, as a drill with no culprit search says) each in its own."""
    from harness.build import BuildSpec, run_build
    from harness.variations import VariationSpec, plan_variations

    with _builder_session(client, work) as (session, image):
        session.reuse = reuse
        plan = plan_variations(VariationSpec(), image.capabilities)
        spec = BuildSpec((SUBJECTS / "tarball").resolve(), build, image, ("out",))
        outputs = [run_build(session, spec, plan.control, f"{prefix}{i}") for i in range(count)]
    assert all(o.ok for o in outputs), [o.failure() or o.log_tail() for o in outputs]
    containers = {o.container.split(":")[0] for o in outputs}
    assert len(containers) == (1 if reuse else count)
    return outputs


def _seen(outputs: list[Any]) -> list[str]:
    """What each build wrote to `out/seen`."""
    return [(o.out_dir / "out" / "seen").read_text() for o in outputs if o.out_dir]


def test_a_warm_container_is_reset_between_builds_whatever_a_build_leaves(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    """A hostile build leaves files in every writable folder (one read-only), and a process
    that keeps writing: the next build in the same warm container sees none of it."""
    build = (
        'mkdir -p out && ls -A "$HOME" /tmp /var/tmp /dev/shm /build > out/seen && '
        'echo x > "$HOME/left" && echo x > /tmp/left && echo x > /var/tmp/left && '
        "echo x > /dev/shm/left && echo x > /build/left && "
        "mkdir /tmp/ro && touch /tmp/ro/f && chmod 555 /tmp/ro && "
        "{ nohup sh -c 'while :; do echo x >> /tmp/leak; sleep 0.1; done' >/dev/null 2>&1 & }"
    )
    outputs = _warm_builds(client, tmp_path / "work", build, 3, "w")
    seen = _seen(outputs)
    assert len(seen) == 3 and seen[0] == seen[1] == seen[2]
    assert "left" not in seen[0] and "leak" not in seen[0] and "ro" not in seen[0].split()
    assert len({o.digest.digest for o in outputs if o.digest}) == 1


def test_a_session_no_build_follows_in_skips_the_reset_and_reuses_no_container(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    """`reuse=False` (a drill with no culprit search): a build's container goes as the build
    left it, without the reset, so the next build gets a container of its own and sees
    nothing of the last one; the output still comes back whole."""
    build = 'mkdir -p out && ls -A /tmp "$HOME" > out/seen && echo x > /tmp/left'
    outputs = _warm_builds(client, tmp_path / "work", build, 2, "n", reuse=False)
    seen = _seen(outputs)
    assert seen[0] == seen[1] and "left" not in seen[1]
    assert len({o.digest.digest for o in outputs if o.digest}) == 1


def test_one_warm_container_runs_home_and_num_cpus_builds_as_their_own_containers_would(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    """HOME and the cpuset are set per build in a warm container (see `harness.build_warm`):
    each build sees its own HOME (made, writable, in its passwd line) and its own CPUs."""
    from harness.build import BuildSpec, run_build
    from harness.variations import VariationSpec, plan_variations

    build = (
        'mkdir -p out && touch "$HOME/mine" && '
        'echo "$HOME $(nproc) $(grep "^$(id -un):" /etc/passwd | cut -d: -f6) '
        '$(ls -A "${HOME%/*}" | tr "\\n" ,)" > out/seen'
    )
    with _builder_session(client, tmp_path / "work") as (session, image):
        if image.capabilities.cpus < 2:
            pytest.skip("one CPU: num_cpus does not apply")
        plan = plan_variations(VariationSpec.parse("-all,home,num_cpus"), image.capabilities)
        spec = BuildSpec((SUBJECTS / "tarball").resolve(), build, image, ("out",))
        envs = [plan.control, plan.experiment(["num_cpus"]), plan.experiment(["home"])]
        outputs = [run_build(session, spec, env, f"f{i}") for i, env in enumerate(envs)]
        outputs.append(run_build(session, spec, plan.control, "f3"))
    assert all(o.ok for o in outputs), [o.failure() or o.log_tail() for o in outputs]
    assert len({o.container.split(":")[0] for o in outputs}) == 1
    seen = [(o.out_dir / "out" / "seen").read_text().split() for o in outputs if o.out_dir]
    cpus = str(image.capabilities.cpus)
    assert seen == [
        ["/home/builder", cpus, "/home/builder", "builder,"],
        ["/home/builder", "1", "/home/builder", "builder,"],
        ["/home/second-home", cpus, "/home/second-home", "second-home,"],
        ["/home/builder", cpus, "/home/builder", "builder,"],
    ]


def test_artifacts_that_cannot_all_be_collected_fail_the_build(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    """Part of the artifacts is no output (a full /out tmpfs looks the same to the runner): a
    build whose artifacts can't all be copied fails, it never compares as a difference."""
    from harness.build import BuildSpec, run_build
    from harness.variations import VariationSpec, plan_variations

    build = "mkdir -p out && echo a > out/a && echo b > out/b && chmod 000 out/b"
    with _builder_session(client, tmp_path / "work") as (session, image):
        plan = plan_variations(VariationSpec(), image.capabilities)
        spec = BuildSpec((SUBJECTS / "tarball").resolve(), build, image, ("out/*",))
        output = run_build(session, spec, plan.control, "p")
    assert not output.ok and output.exit_code == 0, output
    assert output.failure().startswith("setup failed: copying the matches of glob 0 failed")
    assert output.digest is None or not output.digest.files


def test_a_build_can_neither_hold_the_lease_nor_signal_the_idle_process_and_orphans_are_reaped(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    """A hostile build tries every process it does not own: opening its stdin (the lease held
    open after the driver died) or signalling it must be refused; the processes it orphans
    (killed by the reset) must not stay as zombies in the next build."""
    build = (
        "mkdir -p out && for p in /proc/[0-9]*; do "
        '[ "$p" = /proc/1 ] || grep -q cihub-warm "$p/cmdline" 2>/dev/null || continue; '
        '(exec 9>"$p/fd/0") 2>/dev/null && echo "$p opened" >> out/held; '
        'kill -0 "${p#/proc/}" 2>/dev/null && echo "$p signalled" >> out/held; '
        "done; grep -l '^State:.*Z' /proc/[0-9]*/status > out/zombies 2>/dev/null; "
        "grep -l 'cihub-war[m]' /proc/[0-9]*/cmdline > out/checked; "
        "{ sh -c 'sleep 600 & sleep 600' >/dev/null 2>&1 & }"
    )
    outputs = _warm_builds(client, tmp_path / "work", build, 2, "h")
    for output in outputs:
        assert output.out_dir is not None
        out = output.out_dir / "out"
        assert not (out / "held").exists(), (out / "held").read_text()
        assert (out / "checked").read_text().strip(), "no idle process found"
        assert (out / "zombies").read_text() == ""  # the first build's orphans were reaped


def test_the_reset_also_empties_message_queues_sysv_ipc_and_cihub(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    """State that outlives a build's processes besides its folders: a POSIX message queue, SysV
    IPC objects, a file in /cihub, its own /etc/passwd and /etc/group (the runner writes them,
    as the build user). The next build in the same warm container sees none."""
    build = (
        "mkdir -p out && { ls -A /dev/mqueue /cihub; tail -n +2 /proc/sysvipc/msg "
        "/proc/sysvipc/shm /proc/sysvipc/sem; cat /etc/passwd /etc/group; } > out/seen 2>&1; "
        "touch /dev/mqueue/left && ipcmk -Q >/dev/null && ipcmk -M 4096 >/dev/null && "
        "ipcmk -S 1 >/dev/null && touch /cihub/abandoned /cihub/left && "
        "{ echo left:x:0:0::/:/bin/sh >> /etc/passwd; echo left:x:0:builder >> /etc/group; }"
    )
    outputs = _warm_builds(client, tmp_path / "work", build, 2, "q")
    seen = _seen(outputs)
    assert seen[0] == seen[1], seen
    assert "left" not in seen[1] and "abandoned" not in seen[1]


def test_a_process_the_build_leaves_writing_its_log_fails_no_build(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    """A daemon the build leaves running keeps writing to its inherited stdout (the build log in
    the output folder): it is ended before the output is sent, so tar never reads a log that
    changes under it ("file changed as we read it" failed good builds)."""
    build = "mkdir -p out && echo built > out/x && (while :; do echo chatter; done) &"
    _warm_builds(client, tmp_path / "work", build, 4, "d")


def test_the_reset_puts_back_the_modes_of_the_folders_the_build_user_owns(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    """The build user owns the roots of /build, HOME's tmpfs, /out and /cihub: a build that
    leaves them setgid or sticky (or with a default ACL, where the image has setfacl) must not
    change the modes the next build's folders get in the same container (a false difference)."""
    build = (
        'mkdir -p out && H="${HOME%/*}" && '
        'stat -c "%a %n" /build "$H" /out /cihub > out/seen && mkdir /build/probe && '
        "stat -c %a /build/probe >> out/seen && ls -ld /build | cut -c1-11 >> out/seen && "
        'chmod 2777 /build /out && chmod 3777 "$H" /cihub && '
        "{ ! command -v setfacl >/dev/null || setfacl -d -m o::rwx /build; }"
    )
    outputs = _warm_builds(client, tmp_path / "work", build, 3, "m")
    seen = _seen(outputs)
    assert len(seen) == 3 and seen[0] == seen[1] == seen[2], seen
    assert seen[0].splitlines()[4] == "755" and "+" not in seen[0].splitlines()[5], seen[0]


def test_a_default_acl_no_setfacl_can_remove_keeps_the_container_from_reuse(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    """The lab images have no setfacl but python3 can set a default ACL on /build (a tmpfs the
    build user owns): that build still counts, and the next runs in a fresh container where
    /build has no ACL."""
    from harness.build import BuildSpec, run_build
    from harness.variations import VariationSpec, plan_variations

    acl = "02000000" + "0100070000000000" + "0400050000000000" + "2000070000000000"
    build = (
        "mkdir -p out && ls -ld /build | cut -c1-11 > out/seen && "
        "python3 -c 'import os, sys; "
        f'os.setxattr("/build", "system.posix_acl_default", bytes.fromhex("{acl}"))\' '
        "&& ls -ld /build | cut -c1-11 > out/acl"
    )
    with _builder_session(client, tmp_path / "work") as (session, image):
        plan = plan_variations(VariationSpec(), image.capabilities)
        spec = BuildSpec((SUBJECTS / "tarball").resolve(), build, image, ("out",))
        outputs = [run_build(session, spec, plan.control, f"acl{i}") for i in range(2)]
    assert all(o.ok for o in outputs), [o.failure() or o.log_tail() for o in outputs]
    first, second = (o.out_dir / "out" for o in outputs if o.out_dir)
    assert (first / "acl").read_text().strip().endswith("+")  # the build did set it
    assert "+" not in (second / "seen").read_text()
    assert len({o.container.split(":")[0] for o in outputs}) == 2  # not reused


def test_a_warm_container_killed_from_outside_mid_build_is_an_infra_error(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    """`docker kill` of the container a build runs in ends its runner with 137: that is the
    infrastructure's failure, never the subject's (else a false culprit)."""
    import os
    import threading

    from harness.build import BuildSpec, run_build
    from harness.errors import InfraError
    from harness.variations import VariationSpec, plan_variations

    with _builder_session(client, tmp_path / "work") as (session, image):
        plan = plan_variations(VariationSpec(), image.capabilities)
        spec = BuildSpec(
            (SUBJECTS / "tarball").resolve(),
            "touch /tmp/building && sleep 60",
            image,
            ("out",),
        )
        killed: list[str] = []

        def kill_when_building() -> None:
            for _ in range(600):
                for found in _builds_of(client, os.getpid(), running=True):
                    probe = client.api.exec_create(found["Id"], ["test", "-e", "/tmp/building"])
                    client.api.exec_start(probe["Id"])
                    if client.api.exec_inspect(probe["Id"])["ExitCode"] == 0:
                        client.api.kill(found["Id"])
                        killed.append(found["Id"])
                        return
                threading.Event().wait(0.1)

        killer = threading.Thread(target=kill_when_building, daemon=True)
        killer.start()
        with pytest.raises(InfraError, match="stopped from outside while building"):
            run_build(session, spec, plan.control, "k0")
        killer.join(timeout=5)
    assert killed


# A hostile build's attack on its warm runner (x86-64): write the runner's `reset-ok` line on
# its stderr (/proc/<runner>/fd/<n>), then PTRACE_ATTACH it where it waits for the build (in a
# syscall) and make it run exit_group(0) instead: the reset is skipped, its exit 0 forged.
# What it manages goes to out/attack.
_FORGE_RESET = r"""
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
pid = os.getpid()
while open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[-2] != b"cihub-runner":
    pid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
said = open("out/attack", "w", buffering=1)
try:
    open(f"/proc/{pid}/mem", "r+b").close()
    said.write("mem opened\n")
except OSError:
    said.write("mem refused\n")
try:  # the exec stderr: the first of the pipes the runner saved on high fds for the build
    fds = sorted(int(fd) for fd in os.listdir(f"/proc/{pid}/fd"))
    fd = [n for n in fds if os.readlink(f"/proc/{pid}/fd/{n}").startswith("pipe:")][0]
    with open(f"/proc/{pid}/fd/{fd}", "wb") as pipe:
        pipe.write(b"reset-ok\n")
    said.write("stderr written\n")
    time.sleep(0.5)  # sent on before the stream ends with the runner
except OSError:
    said.write("stderr refused\n")
if libc.ptrace(16, pid, None, None) != 0:  # PTRACE_ATTACH
    said.write("ptrace refused\n")
else:
    os.waitpid(pid, 0x40000000)  # __WALL
    regs = (ctypes.c_ulong * 27)()
    libc.ptrace(12, pid, None, ctypes.addressof(regs))  # PTRACE_GETREGS
    regs[16] -= 2  # rip: back on the syscall instruction it waits in
    regs[15] = 2**64 - 1  # orig_rax: no syscall to restart
    regs[10], regs[14] = 231, 0  # rax, rdi: exit_group(0)
    libc.ptrace(13, pid, None, ctypes.addressof(regs))  # PTRACE_SETREGS
    libc.ptrace(17, pid, None, None)  # PTRACE_DETACH
    said.write("ptrace forged\n")
"""
# It attacks in a clean container only: in the dirty one it would leave, it builds (so the
# next build of a culprit search differs).
_HOSTILE_TO_ITS_RUNNER = (
    "mkdir -p out && ls -A /tmp > out/seen && { [ -e /tmp/left ] || { touch /tmp/left && "
    f"python3 -c '{_FORGE_RESET}'; }}; }}"
)


def _forging_builds(client: docker.DockerClient, work: Path, untraceable: bool) -> list[Any]:
    """Two builds of `_HOSTILE_TO_ITS_RUNNER` in one session, the runner in the image's
    execute-only shell or (`untraceable` False) in /bin/sh."""
    import dataclasses
    import platform

    from harness.build import BuildSpec, run_build
    from harness.variations import VariationSpec, plan_variations

    if platform.machine() != "x86_64":
        pytest.skip("the attack's registers are x86-64's")
    with _builder_session(client, work) as (session, image):
        assert image.runner_shell is not None
        if not untraceable:
            image = dataclasses.replace(image, runner_shell=None)
        plan = plan_variations(VariationSpec(), image.capabilities)
        spec = BuildSpec((SUBJECTS / "tarball").resolve(), _HOSTILE_TO_ITS_RUNNER, image, ("out",))
        return [run_build(session, spec, plan.control, f"t{i}") for i in range(2)]


def test_a_build_can_neither_ptrace_its_runner_nor_write_its_memory_to_skip_the_reset(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    """The runner runs as the build user: a build that could ptrace it (or write its memory)
    could make it skip the reset and exit 0, and the next build would run in a dirty container.
    The runner's shell is execute-only (the kernel makes it non-dumpable): the attack is refused,
    the reset runs, and the container is reused clean."""
    first, second = _forging_builds(client, tmp_path / "work", untraceable=True)
    assert second.out_dir is not None
    assert "left" not in (second.out_dir / "out" / "seen").read_text()  # the reset ran
    for output in (first, second):
        assert output.ok, output.failure() or output.log_tail()
        assert output.out_dir is not None
        said = (output.out_dir / "out" / "attack").read_text().split("\n")
        assert said[:3] == ["mem refused", "stderr refused", "ptrace refused"], said
    assert first.container.split(":")[0] == second.container.split(":")[0]  # reused


def test_a_runner_a_build_can_ptrace_never_leaves_its_container_for_reuse(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    """An image without the execute-only shell: the runner (in /bin/sh) says first, before the
    build starts, that it can be traced, and whatever it says and exits with after the build,
    its container is not reused. (The build attacks only in a clean container: in the one it
    left dirty it would build, ok.)"""
    outputs = _forging_builds(client, tmp_path / "work", untraceable=False)
    for output in outputs:  # each runner made to exit 0 before sending the output
        assert not output.ok and output.setup_error is not None, output
        assert output.setup_error.startswith("the runner stopped before"), output.setup_error
    assert len({o.container.split(":")[0] for o in outputs}) == 2  # not reused
