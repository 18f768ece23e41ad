"""What differs between build A (the control) and build B (the experiment), as reprotest names it.

Every variation has a control value and an experiment value. The default set needs no
privileges in Docker; `aslr` and `disorderfs` need some and are opt-in. A variation that can't
be applied (the image has no second locale, there is one CPU, ...) is reported as not applied
with the reason, never silently skipped. `SOURCE_DATE_EPOCH` is not a variation: both builds get
the same value.

| name | control (A) | experiment (B) |
|---|---|---|
| environment | image environment | plus `CIHUB_CAPTURE_ENVIRONMENT` and the extra variables |
| build_path | /build/src | /build/experiment/second-path/src |
| user_group | builder 1000:1000 | builder2 1234:1234 |
| fileordering | source copied in name order | copied in reverse order (tmpfs lists the other way) |
| home | /home/builder | /home/second-home |
| num_cpus | every CPU | the engine's first CPU only (cpuset) |
| time | real clock; source mtimes kept | clock 398 days ahead (libfaketime); source 30 days older |
| umask | 0022 | 0002 |
| locales | C.UTF-8 | fr_CH.UTF-8 (or another locale the image has) |
| timezone | UTC0 | GMT-14 |
| domain_host | cihub-build-a / control.invalid | cihub-build-b-variant / experiment.invalid |
| aslr (opt-in) | ASLR off (setarch -R, needs seccomp=unconfined) | ASLR on |
| disorderfs (opt-in) | plain build folder | through disorderfs, shuffled (FUSE, SYS_ADMIN) |
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from harness.errors import ConfigError


@dataclass(frozen=True)
class VariationInfo:
    """One variation of the catalogue."""

    name: str
    summary: str
    privileged: bool = False


CATALOGUE: tuple[VariationInfo, ...] = (
    VariationInfo("environment", "extra environment variables in B"),
    VariationInfo("build_path", "the folder the source is built in"),
    VariationInfo("user_group", "the build user's name, uid and gid"),
    VariationInfo("fileordering", "the order the file system lists directory entries in"),
    VariationInfo("home", "HOME"),
    VariationInfo("num_cpus", "the CPUs the build may use (cpuset)"),
    VariationInfo("time", "the clock and the source files' mtimes (libfaketime)"),
    VariationInfo("umask", "the umask"),
    VariationInfo("locales", "LANG and LANGUAGE"),
    VariationInfo("timezone", "TZ"),
    VariationInfo("domain_host", "hostname and domain name"),
    VariationInfo("aslr", "address space layout randomization", privileged=True),
    VariationInfo("disorderfs", "directory entries shuffled by disorderfs (FUSE)", privileged=True),
)
"""Every variation, in the order they are tried and reported."""

NAMES: tuple[str, ...] = tuple(v.name for v in CATALOGUE)
DEFAULT_VARIATIONS: tuple[str, ...] = tuple(v.name for v in CATALOGUE if not v.privileged)
PRIVILEGED_VARIATIONS: tuple[str, ...] = tuple(v.name for v in CATALOGUE if v.privileged)

TIME_OFFSET_DAYS = 398
"""How far B's clock moves ahead (libfaketime): over a year, so day, month and year differ.
Where libfaketime also intercepts `stat` (GNU tar, make), B sees every file time moved too."""

SOURCE_AGE_DAYS = 30
"""How much older B's copy of the source is (its mtimes move back), as if checked out earlier.
Not the clock offset, so the two never cancel out in what a tool sees; and the source stays in
B's past, so make sees no clock skew."""

CAPTURE_VARIABLE = ("CIHUB_CAPTURE_ENVIRONMENT", "i_capture_the_environment")
"""The variable the environment variation always adds to B."""

_PREFERRED_LOCALES = ("fr_CH.UTF-8", "de_DE.UTF-8", "en_US.UTF-8")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MANAGED_VARIABLES = frozenset(
    {"HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_ALL", "TZ", "SOURCE_DATE_EPOCH"}
)
"""Variables the drill sets itself; the image's values for them are dropped."""
_DROPPED_VARIABLES = frozenset({"HOSTNAME", "LD_PRELOAD", "FAKETIME"})

FileOrder = Literal["sorted", "reverse"]


@dataclass(frozen=True)
class BuildEnv:
    """Everything one build container varies. `CONTROL` is build A's.

    Attributes:
        build_path: the absolute folder the source is copied to and built in.
        hostname, domainname: the container's UTS names.
        user, group, uid, gid: the (non-root) build user.
        home: HOME (created, owned by the build user).
        tz: TZ (POSIX TZ strings, so no tzdata is needed).
        lang: LANG; language: LANGUAGE (None: unset).
        umask: the build shell's umask, octal text.
        extra_env: variables added to the build environment.
        cpuset: CPUs the container may use (None: all; `FIRST_CPU`: the first the engine
            offers).
        file_order: the order the source is copied in, which decides the order a tmpfs lists
            the entries in.
        time_offset_days: B's clock moves this far ahead (libfaketime; 0: the real clock).
        source_age_days: B's copy of the source is this much older (its mtimes move back).
        aslr: address space randomization on (False: `setarch -R`, opt-in only).
        disorderfs: the build folder is mounted through disorderfs with shuffled entries.
        fake_clock: a libfaketime start time (`@YYYY-MM-DD hh:mm:ss`) every process of the build
            starts its clock at; only the culprit search's clock check sets it.
    """

    build_path: str = "/build/src"
    hostname: str = "cihub-build-a"
    domainname: str = "control.invalid"
    user: str = "builder"
    group: str = "builder"
    uid: int = 1000
    gid: int = 1000
    home: str = "/home/builder"
    tz: str = "UTC0"
    lang: str = "C.UTF-8"
    language: str | None = None
    umask: str = "0022"
    extra_env: tuple[tuple[str, str], ...] = ()
    cpuset: str | None = None
    file_order: FileOrder = "sorted"
    time_offset_days: int = 0
    source_age_days: int = 0
    aslr: bool = True
    disorderfs: bool = False
    fake_clock: str | None = None

    @property
    def privileged(self) -> bool:
        """Whether the container needs more than the default Docker confinement."""
        return not self.aslr or self.disorderfs

    def to_json(self) -> dict[str, Any]:
        value = dataclasses.asdict(self)
        value["extra_env"] = dict(self.extra_env)
        return value


FIRST_CPU = "first"
"""The num_cpus variation's cpuset: the first CPU the engine offers, known only at run time
(an engine's CPUs need not be numbered from 0, e.g. a dockerd confined to 2-3, and `docker info`
gives only their number: see `harness.build_warm.first_engine_cpu`); each build's record notes
the CPUs it had (`cpus=`)."""

CONTROL = BuildEnv()
"""Build A: the control environment (before opt-in variations adjust it)."""


def build_environment(
    env: BuildEnv,
    *,
    image_env: Mapping[str, str],
    source_date_epoch: int,
    faketime_library: str | None = None,
) -> dict[str, str]:
    """The environment the build command runs with in a container with `env`.

    Starts from the image's environment (so a builder's PATH and settings apply), drops what
    the drill sets itself, then sets HOME, USER, LOGNAME, LANG, LANGUAGE, TZ,
    SOURCE_DATE_EPOCH and the extra variables; with a time offset, it preloads libfaketime.

    Raises:
        ConfigError: a time offset is asked for without a libfaketime to preload.
    """
    result = {
        k: v
        for k, v in image_env.items()
        if k not in _MANAGED_VARIABLES and k not in _DROPPED_VARIABLES and not k.startswith("LC_")
    }
    result.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    result.update(
        {
            "HOME": env.home,
            "USER": env.user,
            "LOGNAME": env.user,
            "LANG": env.lang,
            "TZ": env.tz,
            "SOURCE_DATE_EPOCH": str(source_date_epoch),
        }
    )
    if env.language:
        result["LANGUAGE"] = env.language
    result.update(dict(env.extra_env))
    if env.time_offset_days and env.fake_clock:
        raise ConfigError("a build can't have both a clock offset and a pinned clock")
    if env.time_offset_days or env.fake_clock:
        if not faketime_library:
            raise ConfigError("the time variation needs libfaketime in the builder image")
        result["LD_PRELOAD"] = faketime_library
        result["FAKETIME"] = env.fake_clock or f"+{env.time_offset_days}d"
        result["DONT_FAKE_MONOTONIC"] = "1"
    return dict(sorted(result.items()))


@dataclass(frozen=True)
class VariationSpec:
    """Which variations the user asked for.

    Attributes:
        enable: variations to add to the defaults (the opt-in, privileged ones).
        disable: variations to leave out.
        extra_env: variables the environment variation sets in B, besides its own.

    Example:
        >>> VariationSpec.parse("-umask,+aslr").requested()[:3]
        ('environment', 'build_path', 'user_group')
    """

    enable: frozenset[str] = frozenset()
    disable: frozenset[str] = frozenset()
    extra_env: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted((self.enable | self.disable) - set(NAMES))
        if unknown:
            raise ConfigError(
                f"unknown variation(s) {', '.join(unknown)}; known: {', '.join(NAMES)}"
            )
        for name, _ in self.extra_env:
            if not _ENV_NAME.match(name):
                raise ConfigError(f"extra environment variable {name!r}: not a valid name")

    @classmethod
    def parse(cls, text: str, extra_env: Iterable[tuple[str, str]] = ()) -> VariationSpec:
        """Parse a reprotest-style list: `-umask,+aslr` (a bare name enables; `all` and
        `-all` start from every default or from none).

        Raises:
            ConfigError: a name is unknown.
        """
        enable: set[str] = set()
        disable: set[str] = set()
        for raw in text.split(","):
            item = raw.strip()
            if not item:
                continue
            sign, name = ("-", item[1:]) if item[0] == "-" else ("+", item.lstrip("+"))
            names = DEFAULT_VARIATIONS if name == "all" else (name,)
            for one in names:
                (disable if sign == "-" else enable).add(one)
                (enable if sign == "-" else disable).discard(one)
        return cls(frozenset(enable), frozenset(disable), tuple(extra_env))

    def requested(self) -> tuple[str, ...]:
        """The variations asked for, in catalogue order."""
        wanted = (set(DEFAULT_VARIATIONS) | self.enable) - self.disable
        return tuple(name for name in NAMES if name in wanted)

    def to_json(self) -> dict[str, Any]:
        return {
            "enable": sorted(self.enable),
            "disable": sorted(self.disable),
            "extra_env": dict(self.extra_env),
        }


@dataclass(frozen=True)
class Capabilities:
    """What the builder image and the host allow.

    Attributes:
        locales: the image's `locale -a` names.
        faketime_library: the path of libfaketime in the image, if any.
        disorderfs: the image has disorderfs.
        setarch: the image has setarch.
        cpus: CPUs the engine can give a container.
        fuse_device: the host has /dev/fuse.
    """

    locales: tuple[str, ...] = ()
    faketime_library: str | None = None
    disorderfs: bool = False
    setarch: bool = False
    cpus: int = 1
    fuse_device: bool = False


@dataclass(frozen=True)
class NotApplied:
    """A variation that was asked for (or is opt-in) but is not applied, and why."""

    name: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "reason": self.reason}


@dataclass(frozen=True)
class VariationPlan:
    """The variations a drill applies, and the control and experiment environments.

    `experiment()` gives B with every applied variation; `experiment(["umask"])` gives the
    control with only the umask varied, which is what the culprit search builds.
    """

    applied: tuple[str, ...]
    not_applied: tuple[NotApplied, ...]
    control: BuildEnv
    experiment_values: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    faketime_library: str | None = None

    def experiment(self, names: Iterable[str] | None = None) -> BuildEnv:
        """The control with the named applied variations (default all) set to B's values.

        Raises:
            ConfigError: a name is not an applied variation.
        """
        chosen = self.applied if names is None else tuple(names)
        changes: dict[str, Any] = {}
        for name in chosen:
            if name not in self.applied:
                raise ConfigError(f"variation {name!r} is not applied in this drill")
            changes.update(self.experiment_values[name])
        return dataclasses.replace(self.control, **changes)

    def without(self, name: str, reason: str) -> VariationPlan:
        """This plan with `name` moved to the variations not applied (found out at run time,
        e.g. the engine refused what it needs); the control goes back to its default value."""
        if name not in self.applied:
            return self
        control = self.control
        if name == "aslr":
            control = dataclasses.replace(control, aslr=True)
        return dataclasses.replace(
            self,
            applied=tuple(n for n in self.applied if n != name),
            not_applied=(*self.not_applied, NotApplied(name, reason)),
            control=control,
            experiment_values={k: v for k, v in self.experiment_values.items() if k != name},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "applied": list(self.applied),
            "not_applied": [n.to_json() for n in self.not_applied],
            "control": self.control.to_json(),
            "experiment": self.experiment().to_json(),
        }


def locale_name(name: str) -> str:
    """`fr_CH.utf8` (as `locale -a` spells it) as LANG spells it: `fr_CH.UTF-8`."""
    base, dot, codeset = name.partition(".")
    if dot and codeset.lower().replace("-", "") == "utf8":
        return f"{base}.UTF-8"
    return name


def _pick_locale(available: Sequence[str], control: str) -> str | None:
    names = [locale_name(n) for n in available]
    lowered = {n.lower(): n for n in names}
    for preferred in _PREFERRED_LOCALES:
        if preferred.lower() in lowered and preferred.lower() != control.lower():
            return lowered[preferred.lower()]
    others = sorted(
        n for n in names if n.split(".")[0] not in ("C", "POSIX") and n.lower() != control.lower()
    )
    utf8 = [n for n in others if n.endswith(".UTF-8")]
    chosen = utf8 or others
    return chosen[0] if chosen else None


def plan_variations(spec: VariationSpec, caps: Capabilities) -> VariationPlan:
    """Decide which of the requested variations apply, given what the image and host allow.

    Example:
        >>> plan = plan_variations(VariationSpec(), Capabilities(locales=("C.utf8",), cpus=2))
        >>> [n.name for n in plan.not_applied]
        ['time', 'locales', 'aslr', 'disorderfs']
    """
    requested = spec.requested()
    has_c_utf8 = any(locale_name(n).lower() == "c.utf-8" for n in caps.locales)
    control = dataclasses.replace(CONTROL, lang="C.UTF-8" if has_c_utf8 else "C")
    values: dict[str, dict[str, Any]] = {
        "environment": {"extra_env": (CAPTURE_VARIABLE, *spec.extra_env)},
        "build_path": {"build_path": "/build/experiment/second-path/src"},
        "user_group": {"user": "builder2", "group": "builders2", "uid": 1234, "gid": 1234},
        "fileordering": {"file_order": "reverse"},
        "home": {"home": "/home/second-home"},
        "num_cpus": {"cpuset": FIRST_CPU},
        "time": {"time_offset_days": TIME_OFFSET_DAYS, "source_age_days": SOURCE_AGE_DAYS},
        "umask": {"umask": "0002"},
        "timezone": {"tz": "GMT-14"},
        "domain_host": {"hostname": "cihub-build-b-variant", "domainname": "experiment.invalid"},
        "aslr": {"aslr": True},
        "disorderfs": {"disorderfs": True},
    }
    reasons: dict[str, str] = {}
    locale = _pick_locale(caps.locales, control.lang)
    if locale is None:
        reasons["locales"] = (
            "the image has no locale besides C/POSIX (install locales and generate one)"
        )
    else:
        values["locales"] = {"lang": locale, "language": f"{locale.split('.')[0]}:{locale[:2]}"}
    if caps.cpus < 2:
        reasons["num_cpus"] = "only one CPU is available"
    if not caps.faketime_library:
        reasons["time"] = "libfaketime is not in the image (apt-get install libfaketime)"
    if not caps.setarch:
        reasons["aslr"] = "setarch is not in the image"
    if not caps.disorderfs:
        reasons["disorderfs"] = "disorderfs is not in the image"
    elif not caps.fuse_device:
        reasons["disorderfs"] = "the host has no /dev/fuse"
    applied: list[str] = []
    not_applied: list[NotApplied] = []
    for name in NAMES:
        if name not in requested:
            if name in PRIVILEGED_VARIATIONS:
                why = f"opt-in: needs privileges in Docker (enable with +{name})"
            else:
                why = "disabled"
            not_applied.append(NotApplied(name, why))
        elif name in reasons:
            not_applied.append(NotApplied(name, reasons[name]))
        else:
            applied.append(name)
    if "aslr" in applied:
        control = dataclasses.replace(control, aslr=False)
    return VariationPlan(
        applied=tuple(applied),
        not_applied=tuple(not_applied),
        control=control,
        experiment_values={k: v for k, v in values.items() if k in applied},
        faketime_library=caps.faketime_library,
    )
