"""Variations: what the user asks for, what applies, the environments A and B get, and the
culprit search's decisions (with builds faked)."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness import culprit
from harness.build import BuildOutput, BuildSpec, ImageInfo
from harness.build_session import BuildSession
from harness.compare import TreeDigest, TreeEntry
from harness.culprit import CulpritSearch, find_culprits
from harness.errors import ConfigError
from harness.variations import (
    CATALOGUE,
    CONTROL,
    DEFAULT_VARIATIONS,
    FIRST_CPU,
    NAMES,
    PRIVILEGED_VARIATIONS,
    TIME_OFFSET_DAYS,
    BuildEnv,
    Capabilities,
    VariationSpec,
    build_environment,
    locale_name,
    plan_variations,
)

FULL = Capabilities(
    locales=("C", "C.utf8", "POSIX", "de_DE.utf8", "en_US.utf8", "fr_CH.utf8"),
    faketime_library="/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    disorderfs=True,
    setarch=True,
    cpus=2,
    fuse_device=True,
)


def test_the_defaults_are_the_unprivileged_variations_in_reprotest_names() -> None:
    assert DEFAULT_VARIATIONS == (
        "environment",
        "build_path",
        "user_group",
        "fileordering",
        "home",
        "num_cpus",
        "time",
        "umask",
        "locales",
        "timezone",
        "domain_host",
    )
    assert PRIVILEGED_VARIATIONS == ("aslr", "disorderfs")
    assert tuple(v.name for v in CATALOGUE) == NAMES


@pytest.mark.parametrize(
    ("text", "enabled", "disabled"),
    [
        ("", set(), set()),
        ("-umask", set(), {"umask"}),
        ("+aslr,-umask, -time", {"aslr"}, {"umask", "time"}),
        ("aslr", {"aslr"}, set()),
        ("-all,+umask", {"umask"}, set(DEFAULT_VARIATIONS) - {"umask"}),
    ],
)
def test_reprotest_style_specs_parse(text: str, enabled: set[str], disabled: set[str]) -> None:
    spec = VariationSpec.parse(text)
    assert spec.enable == enabled and spec.disable == disabled


def test_requested_follows_the_catalogue_order() -> None:
    spec = VariationSpec.parse("-all,+timezone,+umask,+aslr")
    assert spec.requested() == ("umask", "timezone", "aslr")


def test_an_unknown_variation_is_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown variation\(s\) kernel; known: environment"):
        VariationSpec.parse("-kernel")


def test_an_invalid_extra_variable_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="'1BAD'"):
        VariationSpec(extra_env=(("1BAD", "x"),))


def test_every_default_variation_applies_when_the_image_and_host_allow() -> None:
    plan = plan_variations(VariationSpec(), FULL)
    assert plan.applied == DEFAULT_VARIATIONS
    assert {(n.name, n.reason.split(":")[0]) for n in plan.not_applied} == {
        ("aslr", "opt-in"),
        ("disorderfs", "opt-in"),
    }


def test_what_cannot_apply_is_reported_with_the_reason() -> None:
    plan = plan_variations(
        VariationSpec.parse("+aslr,+disorderfs,-home"),
        Capabilities(locales=("C", "POSIX"), cpus=1, disorderfs=True),
    )
    reasons = {n.name: n.reason for n in plan.not_applied}
    assert "no locale besides C/POSIX" in reasons["locales"]
    assert reasons["num_cpus"] == "only one CPU is available"
    assert "libfaketime" in reasons["time"]
    assert reasons["aslr"] == "setarch is not in the image"
    assert reasons["disorderfs"] == "the host has no /dev/fuse"
    assert reasons["home"] == "disabled"
    assert "locales" not in plan.applied and "home" not in plan.applied
    assert plan.control.lang == "C"  # no C.UTF-8 in that image


def test_each_variation_alone_changes_only_its_own_values() -> None:
    plan = plan_variations(VariationSpec.parse("+aslr,+disorderfs"), FULL)
    control = plan.control
    assert control.aslr is False  # aslr applied: the control turns ASLR off
    seen: dict[str, set[str]] = {}
    for name in plan.applied:
        varied = plan.experiment([name])
        changed = {
            f.name
            for f in dataclasses.fields(BuildEnv)
            if getattr(varied, f.name) != getattr(control, f.name)
        }
        assert changed, name
        seen[name] = changed
    assert seen["umask"] == {"umask"}
    assert seen["domain_host"] == {"hostname", "domainname"}
    assert seen["user_group"] == {"user", "group", "uid", "gid"}
    assert seen["locales"] == {"lang", "language"}
    assert seen["time"] == {"time_offset_days", "source_age_days"}
    assert seen["fileordering"] == {"file_order"}
    assert seen["num_cpus"] == {"cpuset"}
    # no two variations touch the same value, so one culprit never hides another
    fields = [f for changed in seen.values() for f in changed]
    assert len(fields) == len(set(fields))


def test_the_experiment_varies_everything_applied() -> None:
    plan = plan_variations(VariationSpec(extra_env=(("EXTRA", "1"),)), FULL)
    b = plan.experiment()
    assert b.umask == "0002" and b.tz == "GMT-14" and b.lang == "fr_CH.UTF-8"
    assert b.language == "fr_CH:fr" and b.cpuset == FIRST_CPU and b.file_order == "reverse"
    assert b.time_offset_days == TIME_OFFSET_DAYS and b.build_path != CONTROL.build_path
    assert dict(b.extra_env) == {
        "CIHUB_CAPTURE_ENVIRONMENT": "i_capture_the_environment",
        "EXTRA": "1",
    }
    with pytest.raises(ConfigError, match="not applied"):
        plan.experiment(["aslr"])


def test_a_variation_refused_at_run_time_moves_to_not_applied() -> None:
    plan = plan_variations(VariationSpec.parse("+aslr"), FULL)
    assert plan.control.aslr is False
    later = plan.without("aslr", "personality syscall blocked")
    assert "aslr" not in later.applied and later.control.aslr is True
    assert later.not_applied[-1].reason == "personality syscall blocked"
    assert later.without("aslr", "again") is later


@pytest.mark.parametrize(
    ("locales", "picked"),
    [
        (("C.utf8", "en_US.utf8", "fr_CH.utf8"), "fr_CH.UTF-8"),
        (("C.utf8", "en_US.utf8"), "en_US.UTF-8"),
        (("C", "POSIX", "nl_NL.utf8", "aa_DJ"), "nl_NL.UTF-8"),
        (("C", "POSIX", "aa_DJ"), "aa_DJ"),
    ],
)
def test_the_experiment_locale_is_one_the_image_has(locales: tuple[str, ...], picked: str) -> None:
    plan = plan_variations(VariationSpec(), dataclasses.replace(FULL, locales=locales))
    assert plan.experiment(["locales"]).lang == picked


def test_locale_names_are_spelled_as_lang_wants() -> None:
    assert locale_name("fr_CH.utf8") == "fr_CH.UTF-8"
    assert locale_name("C.UTF-8") == "C.UTF-8"
    assert locale_name("POSIX") == "POSIX"


def test_the_build_environment_is_exact() -> None:
    image_env = {
        "PATH": "/opt/x/bin:/usr/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOSTNAME": "leaks",
        "LC_ALL": "de_DE.UTF-8",
        "LC_TIME": "x",
        "HOME": "/root",
        "LD_PRELOAD": "/evil.so",
    }
    env = build_environment(CONTROL, image_env=image_env, source_date_epoch=1704067200)
    assert env == {
        "HOME": "/home/builder",
        "LANG": "C.UTF-8",
        "LOGNAME": "builder",
        "PATH": "/opt/x/bin:/usr/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
        "SOURCE_DATE_EPOCH": "1704067200",
        "TZ": "UTC0",
        "USER": "builder",
    }


def test_both_builds_get_the_same_source_date_epoch_and_b_gets_faketime() -> None:
    plan = plan_variations(VariationSpec(), FULL)
    a = build_environment(plan.control, image_env={}, source_date_epoch=42)
    b = build_environment(
        plan.experiment(),
        image_env={},
        source_date_epoch=42,
        faketime_library=FULL.faketime_library,
    )
    assert a["SOURCE_DATE_EPOCH"] == b["SOURCE_DATE_EPOCH"] == "42"
    assert "LD_PRELOAD" not in a and b["LD_PRELOAD"] == FULL.faketime_library
    assert b["FAKETIME"] == f"+{TIME_OFFSET_DAYS}d"
    assert b["CIHUB_CAPTURE_ENVIRONMENT"] == "i_capture_the_environment"
    with pytest.raises(ConfigError, match="libfaketime"):
        build_environment(plan.experiment(["time"]), image_env={}, source_date_epoch=42)


# -- the culprit search's decisions (builds faked) ---------------------------------------------

Leak = Callable[[BuildEnv, int], str]


def _output(env: BuildEnv, label: str, content: str | None) -> BuildOutput:
    digest = None
    if content is not None:
        sha = hashlib.sha256(content.encode()).hexdigest()
        digest = TreeDigest.from_entries([TreeEntry("out", "file", "", sha, 1)])
    code = 0 if content is not None else 2
    return BuildOutput(label, env, code, False, None, 0.1, b"", (1,), digest, None)


def _search(
    monkeypatch: pytest.MonkeyPatch,
    leak: Leak,
    *,
    variations: VariationSpec | None = None,
    caps: Capabilities = FULL,
    **options: Any,
) -> culprit.CulpritReport:
    """Run the search with builds whose output is `leak(env, build number)` (None: fails).

    The build number plays the clock: it grows with every build started."""
    counter = itertools.count()
    plan = plan_variations(variations or VariationSpec(), caps)

    def fake_build(_s: Any, _spec: Any, env: BuildEnv, label: str, keep: bool = True) -> Any:
        return _output(env, label, leak(env, next(counter)))

    monkeypatch.setattr(culprit, "run_build", fake_build)
    monkeypatch.setattr(culprit, "CLOCK_GAP_S", 0.0)
    reference = _output(plan.control, "A", leak(plan.control, -1)).digest
    spec = BuildSpec(Path("/s"), "make", ImageInfo("i", "sha256:1", {}, caps), ("out",))
    # These tests hold the one-variation-at-a-time search to its rounds; the grouped search has
    # its own tests (test_culprit_groups.py).
    options.setdefault("strategy", "singles")
    search = CulpritSearch(spec, plan, reference.digest if reference else None, **options)
    # The fake builds never reach the engine or the work folder.
    session = BuildSession(client=None, workdir=Path("unused"), lease_s=0)  # type: ignore[arg-type]
    return find_culprits(search, session)


def test_the_variations_that_change_the_output_are_the_culprits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    report = _search(monkeypatch, lambda env, _n: f"{env.umask} {env.hostname}")
    assert report.culprits == ("umask", "domain_host")
    assert report.outcome == "culprits" and report.controls_agree
    assert report.explained is True and report.flaky == () and not report.nondeterministic
    rounds = [t.round for t in report.trials]
    assert rounds.count("single") == len(DEFAULT_VARIATIONS)
    assert rounds.count("confirm") == 2 and rounds.count("rest") == 1
    # each round opens and closes with a fresh control; a round's closing control opens the next
    assert report.builds == (1 + len(DEFAULT_VARIATIONS) + 1) + (2 + 1 + 1)


def test_a_variation_that_differs_once_is_flaky_not_a_culprit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def leak(env: BuildEnv, n: int) -> str:
        glitch = env.tz != CONTROL.tz and n < len(DEFAULT_VARIATIONS) + 1
        return f"{env.umask} {'glitch' if glitch else ''}"

    report = _search(monkeypatch, leak)
    assert report.culprits == ("umask",) and report.flaky == ("timezone",)
    assert "flaky, not counted: timezone" in report.summary()


def test_trials_are_never_compared_with_a_stale_control(monkeypatch: pytest.MonkeyPatch) -> None:
    # the output changes once, some builds into the search (a date rolling over): builds made
    # after it are not culprits; the closing control shows the build changed under the trials
    report = _search(monkeypatch, lambda _env, n: "late" if n > 4 else "early")
    assert report.culprits == () and report.nondeterministic and not report.controls_agree
    assert report.outcome == "inconclusive"
    assert report.summary().startswith(
        "inconclusive: the build is not deterministic against itself"
    )


def test_a_clock_dependent_build_is_not_reproducible_because_of_time_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the output embeds the clock (the build number, or the pinned clock) and the timezone
    report = _search(monkeypatch, lambda env, n: f"{env.fake_clock or n} {env.tz}")
    assert report.culprits == ("time",) and report.clock_shown
    assert report.outcome == "time" and not report.controls_agree
    assert report.summary().startswith("not reproducible: time: ")
    clock = [t for t in report.trials if t.round == "clock"]
    assert [t.identical for t in clock] == [True, False]


def test_hold_out_a_clock_dependent_build_with_time_off_blames_no_innocent_variation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `date +%Y-%m-%dT%H:%M:%S > o.txt` with -time: only the clock and the timezone matter
    def leak(env: BuildEnv, n: int) -> str:
        return f"{env.fake_clock or n} {env.tz}"

    off = VariationSpec.parse("-time")
    report = _search(monkeypatch, leak, variations=off)
    assert report.culprits == ("time",) and report.outcome == "time"
    without_faketime = dataclasses.replace(FULL, faketime_library=None)
    report = _search(monkeypatch, leak, variations=off, caps=without_faketime)
    assert report.culprits == () and report.outcome == "inconclusive"
    assert "no libfaketime" in report.summary()


def test_a_nondeterministic_build_blames_no_variation(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = itertools.count()
    report = _search(monkeypatch, lambda _env, _n: str(next(counter)))
    assert report.nondeterministic and report.culprits == () and not report.clock_shown
    assert "no variation is blamed" in report.summary()
    assert "with the clock pinned, two controls still differ" in report.summary()


def test_a_variation_that_breaks_the_build_is_a_culprit_and_a_breaker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    report = _search(monkeypatch, lambda env, _n: None if env.lang != "C.UTF-8" else "ok")
    assert report.culprits == ("locales",) and report.build_breakers == ("locales",)
    assert "build fails under locales" in report.summary()


def test_culprits_that_do_not_explain_everything_are_said_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # home and timezone matter only together; time matters alone
    def leak(env: BuildEnv, _n: int) -> str:
        both = env.home != CONTROL.home and env.tz != CONTROL.tz
        return f"{env.time_offset_days} {both}"

    report = _search(monkeypatch, leak, confirm=False)
    assert report.culprits == ("time",) and report.explained is False
    assert "do not explain the whole difference" in report.summary()


def test_a_pinned_clock_preloads_libfaketime_at_that_time() -> None:
    pinned = dataclasses.replace(CONTROL, fake_clock="@2024-01-01 00:00:00")
    env = build_environment(
        pinned, image_env={}, source_date_epoch=1, faketime_library=FULL.faketime_library
    )
    assert env["FAKETIME"] == "@2024-01-01 00:00:00"
    assert env["LD_PRELOAD"] == FULL.faketime_library and env["DONT_FAKE_MONOTONIC"] == "1"
    both = dataclasses.replace(pinned, time_offset_days=3)
    with pytest.raises(ConfigError, match="both a clock offset and a pinned clock"):
        build_environment(both, image_env={}, source_date_epoch=1, faketime_library="x")
