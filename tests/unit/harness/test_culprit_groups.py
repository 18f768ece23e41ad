"""The culprit search without Docker: groups first names what each variation alone names."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from harness import culprit
from harness.build import BuildOutput, BuildSession, BuildSpec, ImageInfo
from harness.compare.tree import TreeDigest
from harness.culprit import CulpritSearch, find_culprits, split_groups
from harness.variations import BuildEnv, Capabilities, VariationSpec, plan_variations

CAPS = Capabilities(
    locales=("C.utf8", "fr_CH.utf8"), faketime_library="/usr/lib/libfaketime.so.1", cpus=2
)
PLAN = plan_variations(VariationSpec(), CAPS)
CONTROL_DIGEST = "sha256:" + "c" * 64


def _fake_builds(
    monkeypatch: pytest.MonkeyPatch, sensitive: Iterable[str], breaks: Iterable[str] = ()
) -> list[BuildEnv]:
    """run_build replaced: the output depends only on the `sensitive` variations' values."""
    sensitive, breaks = set(sensitive), set(breaks)
    seen: list[BuildEnv] = []
    lock = threading.Lock()

    def varied(env: BuildEnv) -> set[str]:
        return {n for n in PLAN.applied if env == PLAN.experiment([n]) or _has(env, n)}

    def run_build(_s: Any, _spec: Any, env: BuildEnv, label: str, keep: bool = True) -> Any:
        with lock:
            seen.append(env)
        on = varied(env)
        digest = CONTROL_DIGEST if not on & sensitive else "sha256:" + str(sorted(on & sensitive))
        failed = bool(on & breaks)
        return BuildOutput(
            label,
            env,
            2 if failed else 0,
            False,
            None,
            1.0,
            b"",
            (1,),
            TreeDigest(digest, ()),
            None,
        )

    monkeypatch.setattr(culprit, "run_build", run_build)
    return seen


def _has(env: BuildEnv, name: str) -> bool:
    values = PLAN.experiment_values[name]
    return all(getattr(env, key) == value for key, value in values.items())


def _search(tmp_path: Path, strategy: Any) -> Any:
    image = ImageInfo("img", "sha256:" + "0" * 64, {}, CAPS, "img")
    spec = BuildSpec(tmp_path, "make", image, ("out",))
    session = BuildSession(client=None, workdir=tmp_path, lease_s=0)  # type: ignore[arg-type]
    search = CulpritSearch(spec, PLAN, CONTROL_DIGEST, workers=2, strategy=strategy)
    return find_culprits(search, session)


def test_split_groups_keeps_the_order_and_every_name() -> None:
    names = [f"v{i}" for i in range(11)]
    groups = split_groups(names, 4)
    assert [len(g) for g in groups] == [3, 3, 3, 2]
    assert [n for g in groups for n in g] == names
    assert split_groups(["a"], 4) == [("a",)]


@pytest.mark.parametrize(
    "sensitive",
    [
        {"fileordering"},  # c-hello
        {"time", "umask"},  # tarball
        {"time", "domain_host"},  # py-buildinfo
        {"environment", "domain_host", "umask", "home"},
        set(),
    ],
)
def test_groups_name_the_culprits_each_alone_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sensitive: set[str]
) -> None:
    _fake_builds(monkeypatch, sensitive)
    singles = _search(tmp_path / "s", "singles")
    grouped = _search(tmp_path / "g", "groups")
    assert set(grouped.culprits) == set(singles.culprits) == sensitive
    assert grouped.explained == singles.explained
    assert grouped.strategy == "groups" and singles.strategy == "singles"
    # every culprit was built alone against a fresh control
    for name in grouped.culprits:
        assert any(t.round == "single" and t.variations == (name,) for t in grouped.trials)
    if len(sensitive) == 1:
        assert grouped.builds < singles.builds


def test_a_variation_that_breaks_the_build_is_found_through_its_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_builds(monkeypatch, (), breaks={"umask"})
    report = _search(tmp_path, "groups")
    assert report.culprits == ("umask",) and report.build_breakers == ("umask",)


def test_controls_that_disagree_with_build_a_blame_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_builds(monkeypatch, {"umask"})
    image = ImageInfo("img", "sha256:" + "0" * 64, {}, Capabilities(cpus=2), "img")
    spec = BuildSpec(tmp_path, "make", image, ("out",))
    session = BuildSession(client=None, workdir=tmp_path, lease_s=0)  # type: ignore[arg-type]
    forged = "sha256:" + "f" * 64  # build A's digest is not what the controls give
    report = find_culprits(CulpritSearch(spec, PLAN, forged, workers=2), session)
    assert report.nondeterministic and report.culprits == ()
