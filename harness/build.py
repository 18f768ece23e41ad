"""The build step: build a subject twice, in parallel, in isolated, hardened builder containers.

Build A is the control and build B the experiment (see `harness.variations`). Each build runs in
its own container from a lab builder image, started with the build runner (a POSIX shell script)
as its command and its inputs in environment variables. The container is hardened: it runs as
the (non-root) build user with every capability dropped, `no-new-privileges`, pids and memory
limits, `network_mode="none"` and a read-only root filesystem; what it may write is on tmpfs
(the build folder, HOME, /tmp) or in one host folder mounted at `/out`. The build user's
`/etc/passwd` and `/etc/group` lines are mounted read-only. Only the opt-in `disorderfs`
variation needs root and SYS_ADMIN (a FUSE mount): that build sets up as root with just the
capabilities it needs and drops to the build user with `setpriv`.

1. the subject is bind-mounted read-only at `/src` and copied by the build user (in the order
   the file ordering variation asks for) to the build path; for the time variation the copies'
   mtimes are moved back (an older checkout). Its files must be readable by others;
2. the build command runs with exactly the build environment (`env -i`), the umask and, for
   the time variation, libfaketime moving the clock ahead;
3. every entry matching the artifact globs (files, links, fifos, empty folders) is copied to
   `/out/artifacts`, which is read back with `get_archive` after the container exits, digested
   on the way.

Builds die with their driver: the session touches a lease file every `HEARTBEAT_S` seconds;
a watchdog in each container kills the build when the lease is older than `LEASE_S` (a warm
container ends with the stream its driver holds instead), and the next session reaps the
containers of drivers that are gone (`reap_stale_builds`).
`BuildSession.cancel()` (thread-safe) stops every build at once; a KeyboardInterrupt while
builds run calls it, so Ctrl-C (or SIGTERM turned into it) stops the containers within seconds.

By default a build runs in a warm container of its session (`harness.build_warm`): the same
hardening (`hardened_options`), started once and reused through `docker exec`, with no folder
of this machine mounted (the subject comes on the exec's stdin, the output goes back on its
stdout, `/out` and `/etc` are the container's own), so the engine may be on another host;
emptied after each build. disorderfs builds and sessions with `warm=False` get a container of
their own, as above, bind mounts included: `check_host_paths` refuses them, up front, on an
engine that can't see this machine's folders.

Split by job: `harness.build_session` (session, lease, cancellation, reaping),
`harness.builder_image` (finding and probing the image), `harness._internal.build_runner` (the
runner script); this module runs builds and re-exports what callers used from it.

Containers carry the lab's labels (`org.cihub.lab`, `org.cihub.session`, a `build-*` service)
and are removed when the build ends, whatever happened.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import shutil
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

import docker
import docker.errors
import docker.types
import requests

from harness._internal.build_runner import RUNNER
from harness.build_session import HEARTBEAT_S as HEARTBEAT_S
from harness.build_session import LEASE_S as LEASE_S
from harness.build_session import BuildCancelled as BuildCancelled
from harness.build_session import BuildSession as BuildSession
from harness.build_session import reap_stale_builds as reap_stale_builds
from harness.build_session import remove_container, run_parallel
from harness.build_warm import (
    can_run_warm,
    first_engine_cpu,
    home_root,
    learned_engine_cpus,
    run_warm_build,
)
from harness.builder_image import HARDENED
from harness.builder_image import ImageInfo as ImageInfo
from harness.builder_image import inspect_builder_image as inspect_builder_image
from harness.builder_image import session_builder_image as session_builder_image
from harness.compare.tree import TreeDigest, extract_and_digest
from harness.errors import CihubError, ConfigError, InfraError
from harness.variations import FIRST_CPU, BuildEnv, build_environment
from lab import labels
from lab.images import DEFAULT_SOURCE_DATE_EPOCH

_logger = logging.getLogger(__name__)

Progress = Callable[[str], None]

LOG_TAIL_LINES = 20
MAX_LOG_BYTES = 1024 * 1024
"""The most of a build log kept (its tail)."""

_DISORDERFS_CAPS = ["SYS_ADMIN", "CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID"]
"""What the disorderfs build needs as root: a FUSE mount, handing the source over, dropping to
the build user."""


# -- globs --------------------------------------------------------------------------------------


def check_glob(glob: str) -> str:
    """`glob` with a leading `./` removed, checked to stay inside the build folder.

    Raises:
        ConfigError: the glob is empty, absolute or climbs out with `..`.
    """
    text = glob.strip()
    while text.startswith("./"):
        text = text[2:]
    if not text or text.startswith("/") or ".." in PurePosixPath(text).parts:
        raise ConfigError(
            f"artifact glob {glob!r}: must be a non-empty path pattern relative to the subject"
        )
    return text


def glob_to_regex(glob: str) -> str:
    """A POSIX extended regex matching `glob` as `find .` prints paths.

    `*` and `?` stay within one folder, `**/` spans folders, `[...]` is a class (`[!...]`
    negated). A glob that names a folder also matches everything below it.

    Example:
        >>> glob_to_regex("dist/*.whl")
        '\\./dist/[^/]*\\.whl(/.*)?'
    """
    text = check_glob(glob)
    out = ["\\./"]
    i = 0
    while i < len(text):
        char = text[i]
        if text.startswith("**/", i):
            out.append("(.*/)?")
            i += 3
            continue
        if text.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = text.find("]", i + 2 if text[i + 1 : i + 2] in ("!", "]") else i + 1)
            if end == -1:
                out.append("\\[")
            else:
                body = text[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                body = body.replace("\\", "")
                _check_class(glob, body)
                out.append("[" + body + "]")
                i = end
        elif char in ".^$+(){}|\\":
            out.append("\\" + char)
        else:
            out.append(char)
        i += 1
    out.append("(/.*)?")
    return "".join(out)


def _check_class(glob: str, body: str) -> None:
    """A `[...]` class `find` can compile: a reversed range (`[z-a]`) would make find fail
    before it walks, which reads as "matched nothing" (one line naming the glob instead)."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # `[[:alpha:]]`: POSIX, fine
            re.compile("[" + body + "]")
    except re.error as exc:
        raise ConfigError(f"artifact glob {glob!r}: bad [...] class ({exc.msg})") from exc


# -- requests and results -----------------------------------------------------------------------


_MEMORY = re.compile(r"^[1-9][0-9]*[kmg]?$")
DEFAULT_BUILD_MEMORY = "2g"
DEFAULT_BUILD_PIDS = 1024


@dataclass(frozen=True)
class BuildLimits:
    """Resource limits of each build container.

    Attributes:
        memory: Docker's memory limit (`512m`, `2g`, or bytes); swap is not added on top.
        pids: the most processes and threads the build may have at once.

    Raises:
        ConfigError: a value is malformed.
    """

    memory: str = DEFAULT_BUILD_MEMORY
    pids: int = DEFAULT_BUILD_PIDS

    def __post_init__(self) -> None:
        if not _MEMORY.match(str(self.memory).lower()):
            raise ConfigError(f"build memory limit {self.memory!r}: expected e.g. 512m or 2g")
        if isinstance(self.pids, bool) or not isinstance(self.pids, int) or self.pids < 16:
            raise ConfigError(f"build pids limit {self.pids!r}: expected a number >= 16")

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | None) -> BuildLimits:
        """From a scenario's `limits` object (missing keys take the defaults)."""
        value = value or {}
        return cls(
            str(value.get("memory", DEFAULT_BUILD_MEMORY)).lower(),
            value.get("pids", DEFAULT_BUILD_PIDS),
        )

    def to_json(self) -> dict[str, Any]:
        return {"memory": self.memory, "pids": self.pids}


@dataclass(frozen=True)
class BuildSpec:
    """What to build, the same for A and B.

    Attributes:
        subject: the project folder (bind-mounted read-only, copied to the build path).
        command: the build command, run by /bin/sh in the build path.
        image: the builder image (its probe gives its environment and capabilities).
        artifacts: globs, relative to the build path, of the files to compare.
        source_date_epoch: SOURCE_DATE_EPOCH of both builds.
        timeout_s: wall-clock seconds a build may take before it is killed.
        limits: memory and pids limits of each build container.
    """

    subject: Path
    command: str
    image: ImageInfo
    artifacts: tuple[str, ...]
    source_date_epoch: int = DEFAULT_SOURCE_DATE_EPOCH
    timeout_s: float = 900.0
    limits: BuildLimits = field(default_factory=BuildLimits)

    def __post_init__(self) -> None:
        if not self.command.strip():
            raise ConfigError("the build command is empty")
        if not self.artifacts:
            raise ConfigError("no artifact glob: name the files the build produces")
        for glob in self.artifacts:
            glob_to_regex(glob)  # checked whole, [...] classes too, before any build


@dataclass(frozen=True)
class BuildOutput:
    """One finished build.

    Attributes:
        label: A, B, or a culprit-search label such as `umask-B`.
        env: the environment it ran with.
        exit_code: the build command's exit status (None: it never ran to the end).
        timed_out: killed at the wall-clock limit.
        setup_error: the runner could not set the build up (None when it could).
        duration_s: the container's wall time.
        log: the build's output (its last `MAX_LOG_BYTES`).
        matches: how many files each artifact glob matched, in glob order.
        digest: the tree digest of the collected artifacts.
        out_dir: where the artifacts were written on this machine.
        notes: what the runner reported (e.g. an opt-in variation that could not apply).
        container: the container's name.
    """

    label: str
    env: BuildEnv
    exit_code: int | None
    timed_out: bool
    setup_error: str | None
    duration_s: float
    log: bytes
    matches: tuple[int, ...]
    digest: TreeDigest | None
    out_dir: Path | None
    notes: tuple[str, ...] = ()
    container: str = ""

    @property
    def ok(self) -> bool:
        """The build command ran and exited 0."""
        return self.exit_code == 0 and not self.timed_out and self.setup_error is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last `lines` lines of the build log."""
        text = self.log.decode(errors="replace").rstrip("\n")
        return "\n".join(text.splitlines()[-lines:])

    def failure(self) -> str:
        """Why the build failed, in a few words (empty when it succeeded)."""
        if self.setup_error:
            return f"setup failed: {self.setup_error}"
        if self.timed_out:
            return "timed out"
        if self.exit_code != 0:
            return f"exited {self.exit_code}"
        return ""

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "exit_code": self.exit_code,
            "timed_out": self.timed_out,
            "setup_error": self.setup_error,
            "duration_s": round(self.duration_s, 3),
            "matches": list(self.matches),
            "digest": self.digest.digest if self.digest else None,
            "files": len(self.digest.files) if self.digest else 0,
            "notes": list(self.notes),
            "container": self.container,
        }


class BuildFailed(CihubError):
    """A build command failed (exit code, timeout or setup): the verdict is "build failed",
    never "not reproducible". Exit code 2: reproducibility could not be judged."""

    def __init__(self, message: str, builds: Sequence[BuildOutput]) -> None:
        super().__init__(message)
        self.builds = tuple(builds)


class NoArtifacts(ConfigError):
    """An artifact glob matched nothing in the control build (bad input: exit code 2)."""

    def __init__(self, message: str, builds: Sequence[BuildOutput] = ()) -> None:
        super().__init__(message)
        self.builds = tuple(builds)


@dataclass(frozen=True)
class PairResult:
    """A control and an experiment build run side by side."""

    a: BuildOutput
    b: BuildOutput
    wall_s: float

    @property
    def identical(self) -> bool:
        """Both built and their artifact digests are equal."""
        return (
            self.a.ok
            and self.b.ok
            and self.a.digest is not None
            and self.b.digest is not None
            and self.a.digest.digest == self.b.digest.digest
        )


# -- running builds -----------------------------------------------------------------------------


def _config_text(spec: BuildSpec, env: BuildEnv) -> str:
    regexes = [glob_to_regex(g) for g in spec.artifacts]
    values: dict[str, str] = {
        "BUILD_PATH": env.build_path,
        "BUILD_USER": env.user,
        "BUILD_GROUP": env.group,
        "BUILD_UID": str(env.uid),
        "BUILD_GID": str(env.gid),
        "BUILD_HOME": env.home,
        "SORT_FLAGS": "-r" if env.file_order == "reverse" else "",
        "MTIME_SHIFT": f"-{env.source_age_days} days" if env.source_age_days else "",
        "ASLR_OFF": "0" if env.aslr else "1",
        "DISORDERFS": "1" if env.disorderfs else "0",
        "NGLOBS": str(len(regexes)),
    }
    values.update({f"GLOB_{i}": regex for i, regex in enumerate(regexes)})
    return "".join(f"{key}={shlex.quote(value)}\n" for key, value in values.items())


def _env_text(environment: Mapping[str, str]) -> str:
    return "".join(f"export {key}={shlex.quote(value)}\n" for key, value in environment.items())


def build_environment_for(spec: BuildSpec, env: BuildEnv) -> dict[str, str]:
    """The exact environment the build command gets in a container with `env`."""
    return build_environment(
        env,
        image_env=spec.image.env,
        source_date_epoch=spec.source_date_epoch,
        faketime_library=spec.image.capabilities.faketime_library,
    )


def identity_files(env: BuildEnv) -> dict[str, bytes]:
    """`/etc/passwd` and `/etc/group` of a build (by name): root, nobody and the build user."""
    passwd = (
        "root:x:0:0:root:/root:/bin/sh\n"
        f"{env.user}:x:{env.uid}:{env.gid}:cihub build user:{env.home}:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
    group = f"root:x:0:\n{env.group}:x:{env.gid}:\nnogroup:x:65534:\n"
    return {"passwd": passwd.encode(), "group": group.encode()}


def write_identity_files(env: BuildEnv, folder: Path) -> tuple[Path, Path]:
    """`identity_files` in `folder`, for a one-off build's read-only bind mounts."""
    paths = []
    for name, data in identity_files(env).items():
        path = folder / name
        path.write_bytes(data)
        os.chmod(path, 0o644)
        paths.append(path)
    return paths[0], paths[1]


def build_exec_environment(
    session: BuildSession, spec: BuildSpec, env: BuildEnv, out: str | None = None
) -> dict[str, str]:
    """The build runner's inputs; `out`: a warm build's own output folder. A warm build reads
    the subject on its stdin and resets the container after collecting (unless the session
    says no build follows), and has no watchdog: its container dies with the driver (see
    `harness.build_warm`)."""
    config = _config_text(spec, env)
    if out is None:
        config += f"LEASE_S={session.lease_s if session.lease_s > 0 else ''}\nSUBJECT=\n"
    else:
        config += (
            f"LEASE_S=\nSUBJECT=stdin\nOUT={shlex.quote(out)}\nRESET=1\n"
            f"REUSE={1 if session.reuse else 0}\n"
            f"HOME_ROOT={shlex.quote(home_root(env))}\n"
        )
    environment = {
        "CIHUB_CONFIG": config,
        "CIHUB_BUILD_ENV": _env_text(build_environment_for(spec, env)),
        "CIHUB_BUILD_SCRIPT": f"umask {env.umask}\n{spec.command}\n",
    }
    if out is not None and spec.image.identity_linked:
        identity = identity_files(env)
        environment["CIHUB_PASSWD"] = identity["passwd"].decode()
        environment["CIHUB_GROUP"] = identity["group"].decode()
    return environment


def hardened_options(
    session: BuildSession, spec: BuildSpec, env: BuildEnv, label: str, name: str
) -> dict[str, Any]:
    """The `containers.create` options every build container gets, one-off or warm: hardened,
    with its limits and tmpfs folders, and no mount of this machine's folders."""
    owner = f"uid={env.uid},gid={env.gid}"
    tmpfs = {
        "/build": f"rw,exec,nosuid,nodev,mode=0755,{owner}",
        "/cihub": f"rw,nosuid,nodev,noexec,mode=0755,{owner}",
        env.home: f"rw,exec,nosuid,nodev,mode=0755,{owner}",
        "/tmp": "rw,exec,nosuid,nodev,mode=1777",
        "/var/tmp": "rw,exec,nosuid,nodev,mode=1777",
    }
    options: dict[str, Any] = {
        **HARDENED,
        "command": ["/bin/sh", "-c", RUNNER, "cihub-runner"],
        "environment": build_exec_environment(session, spec, env),
        "user": "0:0" if env.disorderfs else f"{env.uid}:{env.gid}",
        "hostname": env.hostname,
        "domainname": env.domainname,
        "working_dir": "/",
        "tmpfs": tmpfs,
        "mem_limit": spec.limits.memory,
        "memswap_limit": spec.limits.memory,
        "pids_limit": spec.limits.pids,
        "labels": labels.resource_labels(
            session.lab_id, session.session, persistent=False, service=f"build-{label}"
        ),
        "name": name,
    }
    if env.cpuset == FIRST_CPU:
        options["cpuset_cpus"] = first_engine_cpu(session)
    elif env.cpuset is not None:
        options["cpuset_cpus"] = env.cpuset
    security: list[str] = list(HARDENED["security_opt"])
    if not env.aslr:
        security.append("seccomp=unconfined")
    if env.disorderfs:
        options["cap_add"] = list(_DISORDERFS_CAPS)
        options["devices"] = ["/dev/fuse:/dev/fuse:rwm"]
        security.append("apparmor=unconfined")
    options["security_opt"] = security
    return options


def container_options(
    session: BuildSession, spec: BuildSpec, env: BuildEnv, label: str, name: str, mounts: Path
) -> dict[str, Any]:
    """The `containers.create` options of a one-off build: `hardened_options` and the folders of
    this machine it bind-mounts (so its engine must see them, see `check_host_paths`).

    `mounts` is the build's host folder: `out/` (mounted at /out) and the identity files are
    made in it.
    """
    out = mounts / "out"
    out.mkdir(parents=True)
    os.chmod(out, 0o777)  # the build user, whatever its uid, writes its output there
    passwd, group = write_identity_files(env, mounts)
    volumes = {
        str(spec.subject): {"bind": "/src", "mode": "ro"},
        str(out): {"bind": "/out", "mode": "rw"},
        str(passwd): {"bind": "/etc/passwd", "mode": "ro"},
        str(group): {"bind": "/etc/group", "mode": "ro"},
    }
    if session.lease_s > 0 and session.lease_dir.is_dir():
        volumes[str(session.lease_dir)] = {"bind": "/cihub-lease", "mode": "ro"}
    return {**hardened_options(session, spec, env, label, name), "volumes": volumes}


def check_host_paths(session: BuildSession, spec: BuildSpec, env: BuildEnv) -> None:
    """Make sure the engine sees this machine's folders before a one-off build bind-mounts them
    (once per session): a container is created, never started, with the subject and a fresh
    folder of the session mounted, and a file written there is read back through the engine.
    An engine on another host (`DOCKER_HOST=ssh://...`, or a forwarded socket) fails this: one
    clear error, up front (`harness.build_warm.prewarm` checks before any build starts).

    Raises:
        ConfigError: the engine does not see this machine's folders (the message says which
            build needed them and what to do).
        InfraError: the engine failed.
    """
    if session.host_paths_seen:
        return
    probe = session.workdir / ".mounts" / f".host-{uuid.uuid4().hex[:12]}"
    probe.mkdir(parents=True)
    token = uuid.uuid4().hex
    (probe / "token").write_text(token, encoding="utf-8")
    os.chmod(probe, 0o755)
    container = None
    seen = b""
    try:
        container = session.client.containers.create(
            spec.image.image_id,
            ["true"],
            mounts=[
                docker.types.Mount("/cihub-host", str(probe), type="bind", read_only=True),
                docker.types.Mount("/src", str(spec.subject), type="bind", read_only=True),
            ],
            labels=labels.resource_labels(
                session.lab_id, session.session, persistent=False, service="build-probe"
            ),
            name=session.next_name("host-paths"),
            **HARDENED,
        )
        stream, _ = container.get_archive("/cihub-host/token")
        seen = b"".join(stream)
    except docker.errors.ImageNotFound as exc:  # a 404 too, but nothing to do with mounts
        raise InfraError(
            f"builder image {spec.image.image_id}: gone from the engine while checking it "
            "sees this machine"
        ) from exc
    except docker.errors.APIError as exc:
        if exc.status_code is not None and exc.status_code >= 500 and "mount" not in str(exc):
            raise InfraError("the engine failed while checking it sees this machine") from exc
    except requests.RequestException as exc:
        raise InfraError("the engine failed while checking it sees this machine") from exc
    finally:
        if container is not None:
            remove_container(container)
        _remove_tree(probe)
    if token.encode() not in seen:
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        why = (
            "the disorderfs variation (root and a FUSE mount per build)"
            if env.disorderfs
            else "one-off build containers"
        )
        raise ConfigError(
            f"{why} bind-mount folders of this machine, but the Docker engine at {where} does "
            "not see them (it runs on another host): leave disorderfs out, or run the drill on "
            "the engine's host"
        )
    session.host_paths_seen = True


def run_build(
    session: BuildSession, spec: BuildSpec, env: BuildEnv, label: str, *, keep: bool = True
) -> BuildOutput:
    """Run one build in its own hardened container and collect its artifacts.

    Args:
        session: labels, names, scratch space, lease and cancellation.
        spec: what to build.
        env: the environment to build in.
        label: names the container and the output folder (`<workdir>/<label>`).
        keep: keep the artifacts in `<workdir>/<label>` (else only their digest is kept).

    Raises:
        BuildCancelled: the session was cancelled before or while the build ran.
        InfraError: the engine failed (create, start, wait, archive).
    """
    if session.warm and can_run_warm(env):
        return run_warm_build(session, spec, env, label, keep=keep)
    session.check_cancelled()
    check_host_paths(session, spec, env)
    session.start_heartbeat()
    name = session.next_name(label)
    mounts = session.workdir / ".mounts" / name
    client = session.client
    container = None
    started = time.monotonic()
    timed_out = False
    try:
        options = container_options(session, spec, env, label, name, mounts)
        try:
            try:
                container = client.containers.create(spec.image.image_id, **options)
            except docker.errors.APIError as exc:
                if env.cpuset != FIRST_CPU or not learned_engine_cpus(session, exc):
                    raise
                # 0 is none of the engine's CPUs: the first of those it named instead
                options["cpuset_cpus"] = first_engine_cpu(session)
                container = client.containers.create(spec.image.image_id, **options)
            session.register(container)
            container.start()
        except (docker.errors.APIError, requests.RequestException) as exc:
            session.check_cancelled()
            raise InfraError(f"container {name}: could not start the build") from exc
        try:
            container.wait(timeout=spec.timeout_s)
        except requests.exceptions.ConnectionError as exc:
            session.check_cancelled()
            if "timed out" not in str(exc).lower() and "timeout" not in type(exc).__name__.lower():
                raise InfraError(f"container {name}: lost the engine while building") from exc
            timed_out = True
        except requests.exceptions.Timeout:
            timed_out = True
        except docker.errors.APIError as exc:
            session.check_cancelled()
            raise InfraError(f"container {name}: lost the engine while building") from exc
        session.check_cancelled()
        if timed_out:
            with contextlib.suppress(docker.errors.APIError, requests.RequestException):
                container.kill()
            with contextlib.suppress(docker.errors.APIError, requests.RequestException):
                container.wait(timeout=30)
        duration = time.monotonic() - started
        out_dir = session.workdir / label
        if out_dir.exists():
            out_dir = session.workdir / name
        try:
            output, _ = collect_output(
                container, name, label, env, duration, timed_out, out_dir, keep
            )
        except InfraError:
            session.check_cancelled()
            raise
        session.add_finished(output)
        return output
    finally:
        if container is not None:
            session.unregister(container)
            remove_container(container)
        _remove_tree(mounts)


def collect_output(
    container: Any,
    name: str,
    label: str,
    env: BuildEnv,
    duration: float,
    timed_out: bool,
    out_dir: Path,
    keep: bool,
    root: str = "/out",
    archive: IO[bytes] | None = None,
) -> tuple[BuildOutput, frozenset[str]]:
    """The build whose runner wrote to `root` in `container`, and the names of its meta files.

    `archive`: `root` as a tar archive the runner already sent (a warm build's stream); else
    it is read from the container."""
    digest: TreeDigest | None = None
    top = PurePosixPath(root).name
    with contextlib.ExitStack() as stack:
        spool: IO[bytes]
        if archive is not None:
            spool = archive
        else:
            spool = stack.enter_context(tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024))
            _read_archive(container, name, root, spool)
        meta: dict[str, bytes] = {}
        if spool.tell():
            spool.seek(0)
            meta = _read_meta(spool, top)
            spool.seek(0)
            try:
                digest = extract_and_digest(spool, f"{top}/artifacts", out_dir)
            finally:
                if not keep:
                    _remove_tree(out_dir)
    exit_text = meta.get("exit-code", b"").decode().strip()
    matches: list[int] = []
    for line in meta.get("matches", b"").decode().splitlines():
        index, _, count = line.partition(" ")
        if index.isdigit() and count.strip().isdigit():
            matches.append(int(count))
    setup_error = meta.get("setup-error", b"").decode(errors="replace").strip() or None
    if setup_error is None and not exit_text and not timed_out:
        setup_error = "the runner stopped before the build finished"
    output = BuildOutput(
        label=label,
        env=env,
        exit_code=int(exit_text) if exit_text.lstrip("-").isdigit() else None,
        timed_out=timed_out,
        setup_error=setup_error,
        duration_s=duration,
        log=meta.get("build.log", b"")[-MAX_LOG_BYTES:],
        matches=tuple(matches),
        digest=digest,
        out_dir=out_dir if keep else None,
        notes=tuple(meta.get("notes", b"").decode(errors="replace").splitlines()),
        container=name,
    )
    return output, frozenset(meta)


def _read_archive(container: Any, name: str, root: str, spool: IO[bytes]) -> None:
    try:
        stream, _ = container.get_archive(root)
        for chunk in stream:
            spool.write(chunk)
    except docker.errors.NotFound:
        spool.truncate(0)
    except (docker.errors.APIError, requests.RequestException) as exc:
        raise InfraError(f"container {name}: could not read the build output") from exc


def _read_meta(handle: IO[bytes], top: str = "out") -> dict[str, bytes]:
    meta: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=handle, mode="r|") as tar:
            for member in tar:
                parts = member.name.strip("/").split("/")
                if len(parts) == 3 and parts[:2] == [top, "meta"] and member.isfile():
                    source = tar.extractfile(member)
                    if source is not None:
                        data = source.read()
                        meta[parts[2]] = data[-MAX_LOG_BYTES:]
    except tarfile.TarError as exc:
        raise InfraError(f"build output archive: unreadable ({exc})") from exc
    return meta


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def run_pair(
    session: BuildSession,
    spec: BuildSpec,
    control: BuildEnv,
    experiment: BuildEnv,
    *,
    labels_ab: tuple[str, str] = ("A", "B"),
    keep: bool = True,
    b_delay_s: float = 0.0,
) -> PairResult:
    """Run the control and the experiment build at the same time; return both.

    Args:
        b_delay_s: start B this many seconds after A (so they don't share the clock).

    Raises:
        BuildCancelled: the session was cancelled (Ctrl-C stops both containers at once).
        InfraError: the engine failed for either build.
    """
    started = time.monotonic()

    def a() -> BuildOutput:
        return run_build(session, spec, control, labels_ab[0], keep=keep)

    def b() -> BuildOutput:
        if b_delay_s > 0 and session.wait_cancelled(b_delay_s):
            session.check_cancelled()
        return run_build(session, spec, experiment, labels_ab[1], keep=keep)

    results = run_parallel(session, [a, b], workers=2)
    return PairResult(results[0], results[1], time.monotonic() - started)


# -- the step -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DualBuildRequest:
    """The input of the build step: what to build, and A's and B's environments."""

    spec: BuildSpec
    control: BuildEnv
    experiment: BuildEnv


CLOCK_GAP_S = 2.0
"""When the time variation is not applied, B starts this long after A: they never read the same
clock, so a build that embeds the time (to the second) is not called reproducible."""


def clock_note(control: BuildEnv, experiment: BuildEnv, b_delay_s: float) -> str:
    """How A's and B's clocks differ, in a few words (says "time not varied" when it isn't)."""
    if experiment.fake_clock:
        return f"B's clock pinned at {experiment.fake_clock.lstrip('@')} (libfaketime)"
    if experiment.time_offset_days != control.time_offset_days:
        return f"B's clock {experiment.time_offset_days} days ahead (libfaketime)"
    return (
        f"time not varied: B started {b_delay_s:g} s after A on the same clock"
        if b_delay_s > 0
        else "time not varied: A and B ran on the same clock"
    )


@dataclass(frozen=True)
class DualBuildResult:
    """Both builds of the step, with their artifacts on disk and digested.

    Attributes:
        clock: how A's and B's clocks differed (`clock_note`).
    """

    a: BuildOutput
    b: BuildOutput
    wall_s: float
    clock: str = ""

    @property
    def identical(self) -> bool:
        return (
            self.a.digest is not None
            and self.b.digest is not None
            and self.a.digest.digest == self.b.digest.digest
        )


def dual_build(
    request: DualBuildRequest, session: BuildSession, progress: Progress | None = None
) -> DualBuildResult:
    """Build the subject as A (control) and B (experiment) in parallel.

    Returns:
        both builds; their artifacts are in `<session.workdir>/A` and `/B`.

    Raises:
        BuildFailed: a build command failed, timed out or could not be set up (the message
            gives each build's exit code; `exc.builds` has their logs).
        NoArtifacts: an artifact glob matched nothing in build A.
        InfraError: the engine failed.

    Example:
        >>> result = dual_build(DualBuildRequest(spec, plan.control, plan.experiment()), session)
        >>> result.identical
        True
    """
    control, experiment = request.control, request.experiment
    same_clock = not (experiment.time_offset_days or experiment.fake_clock)
    delay = CLOCK_GAP_S if same_clock else 0.0
    clock = clock_note(control, experiment, delay)
    if progress:
        progress(f"building A (control) and B (experiment) in parallel; {clock}")
    pair = run_pair(session, request.spec, control, experiment, b_delay_s=delay)
    if not (pair.a.ok and pair.b.ok):
        raise BuildFailed(build_failure_message(pair.a, pair.b), (pair.a, pair.b))
    check_matches(request.spec.artifacts, pair.a, (pair.a, pair.b))
    return DualBuildResult(pair.a, pair.b, pair.wall_s, clock)


def build_failure_message(*builds: BuildOutput) -> str:
    """`build failed: A exited 0, B exited 2 (last line: ...)`."""
    parts = []
    for build in builds:
        state = build.failure() or "exited 0"
        last = build.log_tail(1) if not build.ok else ""
        parts.append(f"{build.label} {state}" + (f" ({last.strip()[:160]})" if last else ""))
    return "build failed: " + ", ".join(parts)


def check_matches(
    globs: Iterable[str], build: BuildOutput, builds: Sequence[BuildOutput] = ()
) -> None:
    """Raise `NoArtifacts` naming every glob that matched nothing in `build`."""
    counts = build.matches
    empty = [glob for i, glob in enumerate(globs) if i >= len(counts) or not counts[i]]
    if empty:
        raise NoArtifacts(
            f"artifact glob(s) {', '.join(repr(g) for g in empty)} matched nothing in build "
            f"{build.label} (globs are relative to the subject's root)",
            builds or (build,),
        )
