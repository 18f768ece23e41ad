"""Determinism scenarios: schema errors name the file and field; inputs are checked early."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import docker.errors
import pytest

import harness._cli as cli
from harness import telemetry
from harness._commands import run as run_command
from harness.build import (
    BuildOutput,
    BuildSpec,
    ImageInfo,
    check_glob,
    glob_to_regex,
    inspect_builder_image,
)
from harness.compare import TreeDigest, TreeEntry
from harness.determinism import (
    DeterminismResult,
    DeterminismScenario,
    Expectation,
    check_subject,
    load_scenario,
    record_extras,
    scenario_from_mapping,
    source_date_epoch,
)
from harness.errors import ConfigError
from harness.variations import Capabilities, VariationSpec, plan_variations
from lab.images import DEFAULT_SOURCE_DATE_EPOCH
from lab.resources import resource_path

SAMPLES = sorted(resource_path("scenarios", "determinism").glob("*.yaml"))


def _write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


VALID = """\
subject: subj
build: make
artifacts: [hello]
"""


# -- schema errors name the file and the field ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("subject: s\nbuild: make\n", "$", "'artifacts' is a required property"),
        (VALID + "image: 7\n", "$.image", "7 is not of type 'string'"),
        ("subject: s\nbuild: make\nartifacts: []\n", "$.artifacts", "should be non-empty"),
        ("subject: s\nbuild: make\nartifacts: [/abs]\n", "$.artifacts[0]", "does not match"),
        (VALID + "variations: {disable: [kernel]}\n", "$.variations.disable[0]", "'kernel'"),
        (VALID + "variations: {extra_env: {1X: a}}\n", "$.variations.extra_env", "1X"),
        (VALID + "variations: {skip: [umask]}\n", "$.variations", "'skip' was unexpected"),
        (VALID + "timeout: 0\n", "$.timeout", "less than or equal to the minimum of 0"),
        (VALID + "expect: {verdict: maybe}\n", "$.expect.verdict", "'maybe'"),
        (VALID + "source_date_epoch: soon\n", "$.source_date_epoch", "not of type 'integer'"),
        ("- a list\n", "$", "is not of type 'object'"),
    ],
)
def test_a_schema_error_names_the_file_and_the_field(
    tmp_path: Path, text: str, field: str, message: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    line = str(info.value)
    assert "\n" not in line
    assert line.startswith(f"{path}: {field}: "), line
    assert message in line


def test_a_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "subject: s\nbuild: [make\nartifacts: [x]\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: not valid YAML at line \d+"):
        load_scenario(path)


def test_json_scenarios_load_too(tmp_path: Path) -> None:
    path = _write(
        tmp_path, json.dumps({"subject": "x", "build": "make", "artifacts": ["a"]}), "s.json"
    )
    assert load_scenario(path).build == "make"
    bad = _write(tmp_path, "{nope", "bad.json")
    with pytest.raises(ConfigError, match=r"bad.json: not valid JSON"):
        load_scenario(bad)


def test_an_unreadable_scenario_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing.yaml: cannot read the scenario file"):
        load_scenario(tmp_path / "missing.yaml")


def test_unknown_top_level_keys_warn_and_load(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write(tmp_path, VALID + "timout: 3\n")
    with caplog.at_level(logging.WARNING):
        scenario = load_scenario(path)
    assert scenario.timeout_s == 900.0
    assert f"{path}: $.timout: unknown key, ignored" in caplog.text


def test_paths_are_relative_to_the_scenario_file(tmp_path: Path) -> None:
    folder = tmp_path / "scen"
    folder.mkdir()
    scenario = load_scenario(_write(folder, VALID))
    assert scenario.subject == folder / "subj"
    assert scenario.name == "s" and scenario.image == "builder-python"
    assert scenario.culprits is True and scenario.expect is None


def test_every_value_is_read(tmp_path: Path) -> None:
    text = VALID + (
        "name: n\nimage: builder-c\nsource_date_epoch: 5\ntimeout: 60\nculprits: false\n"
        "variations: {enable: [aslr], disable: [umask], extra_env: {A: b}}\n"
        "diffoscope: {timeout: 7, max_report_bytes: 2048, max_diff_block_lines_saved: 9}\n"
        "expect: {verdict: not-reproducible, culprits: [time]}\n"
    )
    s = load_scenario(_write(tmp_path, text))
    assert (s.name, s.image, s.source_date_epoch, s.timeout_s, s.culprits) == (
        "n",
        "builder-c",
        5,
        60.0,
        False,
    )
    assert s.variations == VariationSpec(frozenset({"aslr"}), frozenset({"umask"}), (("A", "b"),))
    assert (s.diffoscope_timeout_s, s.max_report_bytes, s.max_diff_block_lines_saved) == (
        7.0,
        2048,
        9,
    )
    assert s.expect == Expectation("not-reproducible", frozenset({"time"}))


def test_build_limits_are_read_and_checked(tmp_path: Path) -> None:
    s = load_scenario(_write(tmp_path, VALID + "limits: {memory: 512M, pids: 64}\n"))
    assert (s.limits.memory, s.limits.pids) == ("512m", 64)
    assert s.to_json()["limits"] == {"memory": "512m", "pids": 64}
    assert load_scenario(_write(tmp_path, VALID)).limits.to_json() == {
        "memory": "2g",
        "pids": 1024,
    }
    path = _write(tmp_path, VALID + "limits: {memory: lots}\n")
    with pytest.raises(ConfigError, match=r"s\.yaml: \$\.limits\.memory: 'lots' does not match"):
        load_scenario(path)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_the_sample_scenarios_are_valid_and_name_their_expectation(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.subject.is_dir()
    assert scenario.expect is not None
    check_subject(scenario.subject)


def test_the_sample_scenarios_cover_the_four_subjects() -> None:
    expected = {
        "py-reproducible": ("reproducible", None),
        "py-buildinfo": ("not-reproducible", {"domain_host", "time"}),
        "c-hello": ("not-reproducible", {"fileordering"}),
        "tarball": ("not-reproducible", {"umask", "time"}),
    }
    found = {}
    for path in SAMPLES:
        s = load_scenario(path)
        assert s.expect is not None
        found[s.name] = (s.expect.verdict, set(s.expect.culprits) if s.expect.culprits else None)
    assert found == expected


# -- inputs checked before anything runs --------------------------------------------------------


def test_a_missing_or_unreadable_subject_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"subject .*nope: does not exist"):
        check_subject(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        check_subject(tmp_path / "file")
    assert check_subject(tmp_path) == tmp_path.resolve()


@pytest.fixture
def cihub(monkeypatch: pytest.MonkeyPatch) -> Any:
    """`cihub` with the `run` command, whether or not it is registered yet."""
    if run_command not in cli.COMMAND_MODULES:
        monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, run_command))
    return cli.main


def test_the_cli_refuses_a_missing_subject_before_any_build(
    cihub: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cihub(
        [
            "run",
            "determinism",
            "--subject",
            str(tmp_path / "nope"),
            "--build",
            "make",
            "--artifacts",
            "x",
            "--evidence-dir",
            str(tmp_path / "ev"),
        ]
    )
    assert code == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "ev").exists()


def test_the_cli_needs_subject_build_and_artifacts(
    cihub: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cihub(["run", "determinism", "--subject", str(tmp_path), "--build", "make"])
    assert code == 2
    assert "--artifacts is required" in capsys.readouterr().err


def test_the_cli_reports_a_bad_scenario_field(
    cihub: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "subject: s\nbuild: make\nartifacts: [x]\nculprits: maybe\n")
    assert cihub(["run", "determinism", "--scenario", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: $.culprits: 'maybe' is not of type 'boolean'" in err.replace("\n", "")


def _args(**values: Any) -> SimpleNamespace:
    defaults: dict[str, Any] = dict(
        scenario=None,
        subject=None,
        build=None,
        artifacts=None,
        image=None,
        variations=None,
        extra_env=[],
        source_date_epoch=None,
        timeout=None,
        no_culprits=False,
        diffoscope_timeout=None,
        build_memory=None,
        build_pids=None,
    )
    defaults.update(values)
    return SimpleNamespace(**defaults)


def test_options_override_the_scenario_file(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID + "variations: {disable: [umask]}\nimage: builder-c\n")
    scenario = run_command.scenario_from_args(
        _args(
            scenario=path,
            build="make all",
            artifacts=["a", "b"],
            variations="+umask,-time,+aslr",
            extra_env=["X=1"],
            no_culprits=True,
            diffoscope_timeout=3.0,
        )
    )
    assert scenario.build == "make all" and scenario.artifacts == ("a", "b")
    assert scenario.image == "builder-c" and scenario.subject == tmp_path / "subj"
    assert scenario.variations.requested().count("umask") == 1
    assert "time" not in scenario.variations.requested()
    assert "aslr" in scenario.variations.requested()
    assert scenario.variations.extra_env == (("X", "1"),)
    assert scenario.culprits is False and scenario.diffoscope_timeout_s == 3.0


def test_build_limit_options_override_the_scenario_file(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID + "limits: {memory: 1g, pids: 200}\n")
    scenario = run_command.scenario_from_args(_args(scenario=path, build_memory="512m"))
    assert (scenario.limits.memory, scenario.limits.pids) == ("512m", 200)
    with pytest.raises(ConfigError, match=r"\$\.limits\.memory"):
        run_command.scenario_from_args(_args(scenario=path, build_memory="lots"))


def test_a_bad_extra_env_option_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--extra-env 'NOVALUE'"):
        run_command.scenario_from_args(
            _args(subject=tmp_path, build="x", artifacts=["a"], extra_env=["NOVALUE"])
        )


# -- artifact globs ------------------------------------------------------------------------------


def _find_matches(glob: str, paths: list[str]) -> list[str]:
    """What `find . -regextype posix-extended -regex` would match (same syntax subset)."""
    pattern = re.compile(glob_to_regex(glob))
    return [p for p in paths if pattern.fullmatch("./" + p)]


PATHS = [
    "dist",
    "dist/a-1.0.whl",
    "dist/a-1.0.tar.gz",
    "dist/sub/b.whl",
    "hello",
    "hello.c",
    "out/x/y.bin",
    "weird (1)+.txt",
]


@pytest.mark.parametrize(
    ("glob", "expected"),
    [
        ("dist/*.whl", ["dist/a-1.0.whl"]),
        ("./dist/*.whl", ["dist/a-1.0.whl"]),
        ("dist/**/*.whl", ["dist/a-1.0.whl", "dist/sub/b.whl"]),
        ("**/*.whl", ["dist/a-1.0.whl", "dist/sub/b.whl"]),
        ("hello", ["hello"]),
        ("hell?", ["hello"]),
        ("hello.[ch]", ["hello.c"]),
        ("hello.[!c]", []),
        ("out", ["out/x/y.bin"]),
        ("weird (1)+.txt", ["weird (1)+.txt"]),
        ("dist/*", ["dist/a-1.0.whl", "dist/a-1.0.tar.gz", "dist/sub/b.whl"]),
    ],
)
def test_globs_match_as_documented(glob: str, expected: list[str]) -> None:
    assert [p for p in _find_matches(glob, PATHS) if p != "dist"] == expected


@pytest.mark.parametrize("glob", ["/etc/passwd", "../x", "a/../../x", "", "  ", "./"])
def test_globs_outside_the_subject_are_refused(glob: str) -> None:
    with pytest.raises(ConfigError, match="artifact glob"):
        check_glob(glob)


@pytest.mark.parametrize("glob", ["dist/[z-a]*", "[9-0].txt"])
def test_a_glob_find_could_not_compile_is_named_not_matched_as_nothing(glob: str) -> None:
    """`find` fails on a reversed range before it walks: that read as "matched nothing"."""
    from harness.build import glob_to_regex

    with pytest.raises(ConfigError, match=r"artifact glob .*bad \[\.\.\.\] class"):
        glob_to_regex(glob)


def test_a_build_spec_checks_its_inputs(tmp_path: Path) -> None:
    image = ImageInfo("img", "sha256:1", {}, Capabilities())
    with pytest.raises(ConfigError, match="empty"):
        BuildSpec(tmp_path, "  ", image, ("a",))
    with pytest.raises(ConfigError, match="no artifact glob"):
        BuildSpec(tmp_path, "make", image, ())
    with pytest.raises(ConfigError, match=r"'\.\./a'"):
        BuildSpec(tmp_path, "make", image, ("../a",))


# -- SOURCE_DATE_EPOCH ---------------------------------------------------------------------------


def _git(cwd: Path, *args: str, date: str | None = None) -> None:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_SYSTEM": "/dev/null"}
    if date:
        env.update(GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
    )


def _commit(repo: Path, date: str) -> None:
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "c", date=date)


def test_source_date_epoch_is_the_subjects_own_head_commit_time(tmp_path: Path) -> None:
    (tmp_path / "subject").mkdir()
    (tmp_path / "other").mkdir()
    _git(tmp_path, "init", "-q")
    (tmp_path / "subject" / "f").write_text("1")
    _commit(tmp_path, "@1600000000 +0000")
    (tmp_path / "other" / "g").write_text("2")
    _commit(tmp_path, "@1700000000 +0000")
    head = subprocess.run(
        ["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    top = source_date_epoch(tmp_path)
    assert top == (1700000000, f"git HEAD {head[:12]}", False)
    # a folder HEAD tracks gets HEAD's time too (not its last change: a shallow clone can't
    # tell that apart), and the same origin
    assert source_date_epoch(tmp_path / "subject") == top
    assert source_date_epoch(tmp_path / "subject", 7) == (7, "scenario", None)
    assert top.describe() == f"1700000000 (git HEAD {head[:12]}, tree clean)"


def test_an_untracked_folder_in_an_unrelated_repository_gets_the_default(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    (tmp_path / "x").write_text("1")
    _commit(tmp_path, "@1700000000 +0000")
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "f").write_text("1")
    value, origin, dirty = source_date_epoch(tmp_path / "new")
    assert value == DEFAULT_SOURCE_DATE_EPOCH and dirty is None
    assert origin == "default (the enclosing git repository's HEAD does not track it)"


def test_a_dirty_tree_is_said(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    (tmp_path / "x").write_text("1")
    _commit(tmp_path, "@1700000000 +0000")
    (tmp_path / "x").write_text("changed")
    facts = source_date_epoch(tmp_path)
    assert facts.value == 1700000000 and facts.dirty is True
    assert facts.describe().endswith(", tree dirty)")


def test_shallow_and_full_clones_of_one_commit_give_the_same_value(tmp_path: Path) -> None:
    origin = tmp_path / "origin"
    (origin / "sub").mkdir(parents=True)
    _git(origin, "init", "-q")
    (origin / "sub" / "f").write_text("1")
    _commit(origin, "@1100000000 +0000")
    (origin / "g").write_text("2")
    _commit(origin, "@1200000000 +0000")
    url = f"file://{origin}"
    _git(tmp_path, "clone", "-q", url, "full")
    _git(tmp_path, "clone", "-q", "--depth", "1", url, "shallow")
    for sub in ("", "sub"):
        full = source_date_epoch(tmp_path / "full" / sub)
        shallow = source_date_epoch(tmp_path / "shallow" / sub)
        assert full == shallow and full.value == 1200000000


def test_git_variables_in_the_environment_do_not_redirect_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _git(elsewhere, "init", "-q")
    (elsewhere / "x").write_text("1")
    _commit(elsewhere, "@1300000000 +0000")
    subject = tmp_path / "subject"
    subject.mkdir()
    monkeypatch.setenv("GIT_DIR", str(elsewhere / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(elsewhere))
    value, origin, _ = source_date_epoch(subject)
    assert value == DEFAULT_SOURCE_DATE_EPOCH and origin.startswith("default")


def test_source_date_epoch_outside_git_is_the_fixed_default(tmp_path: Path) -> None:
    assert source_date_epoch(tmp_path) == (
        DEFAULT_SOURCE_DATE_EPOCH,
        "default (not in a git work tree)",
        None,
    )


# -- builder images -----------------------------------------------------------------------------


class _FakeImages:
    def __init__(self, image: Any) -> None:
        self._image = image

    def get(self, ref: str) -> Any:
        if self._image is None:
            raise docker.errors.ImageNotFound(ref)
        return self._image


def _client(image: Any) -> Any:
    return SimpleNamespace(images=_FakeImages(image), info=lambda: {"NCPU": 2})


def test_an_image_that_is_not_there_is_never_pulled() -> None:
    with pytest.raises(ConfigError, match=r"--image mine:1: no such image .*never pulled"):
        inspect_builder_image(_client(None), "mine:1", lab_id="l", session="s")


def test_an_image_not_built_from_the_lab_base_is_refused() -> None:
    image = SimpleNamespace(labels={"maintainer": "x"}, id="sha256:1", attrs={"Config": {}})
    with pytest.raises(ConfigError, match="not built FROM the lab base"):
        inspect_builder_image(_client(image), "mine:1", lab_id="l", session="s")


# -- results -------------------------------------------------------------------------------------


def _build(label: str, digest: TreeDigest | None, exit_code: int = 0) -> BuildOutput:
    plan = plan_variations(VariationSpec(), Capabilities(locales=("C.utf8", "fr_CH.utf8"), cpus=2))
    return BuildOutput(
        label, plan.control, exit_code, False, None, 1.0, b"log\n", (1,), digest, None
    )


def _result(verdict: Any, expect: Expectation | None = None) -> DeterminismResult:
    plan = plan_variations(VariationSpec(), Capabilities(locales=("C.utf8",), cpus=2))
    digest = TreeDigest.from_entries([TreeEntry("a", "file", "", "00" * 32, 1)])
    scenario = DeterminismScenario("s", Path("/x"), "make", ("a",), expect=expect)
    return DeterminismResult(
        scenario,
        verdict,
        "detail",
        (_build("A", digest), _build("B", digest, 0 if verdict != "build-failed" else 2)),
        None,
        None,
        plan,
        1704067200,
        "default",
        ImageInfo("img", "sha256:1", {}, Capabilities()),
        2.0,
        1.0,
    )


@pytest.mark.parametrize(
    ("verdict", "code"), [("reproducible", 0), ("not-reproducible", 1), ("build-failed", 2)]
)
def test_exit_codes_follow_the_verdict(verdict: str, code: int) -> None:
    assert _result(verdict).exit_code == code


def test_expectations_are_compared_exactly() -> None:
    wanted = Expectation("not-reproducible", frozenset({"umask"}))
    problems = _result("not-reproducible", wanted).expectation_problems()
    assert problems == ["culprits none, expected umask"]
    assert _result("reproducible", Expectation("reproducible")).expectation_problems() == []
    assert _result("build-failed", Expectation("reproducible")).expectation_problems() == [
        "verdict build-failed, expected reproducible"
    ]


def test_the_record_field_fits_the_pipeline_run_schema() -> None:
    result = _result("not-reproducible")
    record = telemetry.build_record(
        run_id="r1",
        pipeline="cihub",
        scenario="s",
        scenario_kind="dual-build",
        started_at="2025-01-01T00:00:00Z",
        finished_at="2025-01-01T00:00:01Z",
        result="failure",
        bundle_path="r1",
    )
    record.update(record_extras(result))
    telemetry.validate_record(record)
    assert record["determinism"]["verdict"] == "not-reproducible"
    assert record["determinism"]["variations_applied"][0] == "environment"
    record["determinism"]["verdict"] = "flaky"
    with pytest.raises(ConfigError, match=r"\$\.determinism\.verdict"):
        telemetry.validate_record(record)


def test_a_scenario_from_a_mapping_needs_no_file(tmp_path: Path) -> None:
    scenario = scenario_from_mapping(
        {"subject": "s", "build": "b", "artifacts": ["a"]}, base_dir=tmp_path
    )
    assert scenario.subject == tmp_path / "s" and scenario.name == "s"
    with pytest.raises(ConfigError, match=r"^scenario: \$: 'build' is a required property"):
        scenario_from_mapping({"subject": "s", "artifacts": ["a"]}, base_dir=tmp_path)


@pytest.mark.parametrize(
    ("said", "shell"),
    [("runner_shell=/usr/lib/cihub/sh\n", "/usr/lib/cihub/sh"), ("identity=linked\n", None)],
)
def test_the_probe_says_whether_the_image_has_the_runners_execute_only_shell(
    monkeypatch: pytest.MonkeyPatch, said: str, shell: str | None
) -> None:
    from harness import builder_image
    from harness._internal.build_runner import RUNNER_SHELL

    image = SimpleNamespace(labels={"org.cihub.image": "builder-c"}, id="sha256:1", attrs={})
    monkeypatch.setattr(builder_image, "_cached_probe", lambda *_: said)
    info = inspect_builder_image(_client(image), "mine:1", lab_id="l", session="s")
    assert info.runner_shell == shell
    # checked as not readable by the probe's user, who is not root
    assert f"[ ! -r {RUNNER_SHELL} ]" in builder_image.PROBE and shell in (RUNNER_SHELL, None)
