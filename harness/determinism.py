"""The determinism drill: build twice, compare, find the culprits, leave evidence.

Used by `cihub run determinism` and by the pytest scenario `scenarios/test_determinism.py`:

1. `load_scenario(path)` (or `DeterminismScenario(...)`) says what to build;
2. `run_determinism(scenario, bundle)` prepares the builder image, builds A and B in parallel
   (`harness.build`), compares their artifacts (`harness.compare`), searches the culprits when
   they differ (`harness.culprit`), and writes `determinism/` into the evidence bundle. The
   verdict stands on the tree digests; diffoscope only explains a difference, so it runs beside
   the culprit search (and the idle build containers are removed while it finishes):

   - `build-A/`, `build-B/`: the collected artifacts of each build;
   - `diff.txt`: empty when the tree digests are equal; else the differing entries and
     diffoscope's text report; `report.html`: diffoscope's HTML report, when they differ;
   - `result.json`: verdict, digests, variations applied and not applied (with reasons),
     SOURCE_DATE_EPOCH, the builder image, each build's exit code and duration;
   - `culprits.json`: the culprit search, when it ran; `logs/A.log`, `logs/B.log`.

Verdicts: `reproducible` (exit 0), `not-reproducible` (exit 1), `build-failed` (exit 2: a build
command failed, so reproducibility could not be judged; never reported as not reproducible).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import docker
import docker.errors
import requests

from harness import _exit
from harness._internal.schemas import SchemaValidator, load_schema
from harness.build import (
    BuildFailed,
    BuildLimits,
    BuildOutput,
    BuildSession,
    BuildSpec,
    DualBuildRequest,
    ImageInfo,
    NoArtifacts,
    Progress,
    build_environment_for,
    check_matches,
    dual_build,
)
from harness.build_warm import prewarm
from harness.builder_image import session_builder_image
from harness.compare import (
    CompareRequest,
    CompareResult,
    PreloadedDiffoscope,
    compare_outputs,
    preload_diffoscope,
)
from harness.culprit import (
    CulpritReport,
    CulpritSearch,
    SearchStrategy,
    find_culprits,
    first_round_envs,
    search_workers,
)
from harness.errors import ConfigError, InfraError
from harness.evidence import EvidenceBundle, StepOutcome, now_rfc3339
from harness.telemetry import ScenarioKind
from harness.variations import VariationPlan, VariationSpec, plan_variations
from lab._internal.docker import docker_client
from lab.errors import LabError
from lab.images import (
    DEFAULT_SOURCE_DATE_EPOCH,
    LAB_IMAGES,
    ImageBuilder,
    ImageMode,
)

_logger = logging.getLogger(__name__)

SCENARIO_SCHEMA = "scenario.determinism.v1.json"
SCENARIO_KIND: ScenarioKind = "dual-build"
CHECK = "determinism"
"""The verdict name in the bundle, and the `verify` check that judges `determinism/diff.txt`."""
REQUIRED_EVIDENCE = ("determinism/",)

Verdict = Literal["reproducible", "not-reproducible", "build-failed"]


@dataclass(frozen=True)
class Expectation:
    """What a scenario says the drill should find (the pytest scenario asserts it)."""

    verdict: Verdict
    culprits: frozenset[str] | None = None


DEFAULT_EXPECTATION = Expectation("reproducible")
"""What a scenario without `expect` expects: that the build is reproducible."""


def describe_expectation(expect: Expectation) -> str:
    """The expectation for people and records, e.g. `not-reproducible (culprits: time)`."""
    if expect.culprits is None:
        return expect.verdict
    return f"{expect.verdict} (culprits: {', '.join(sorted(expect.culprits)) or 'none'})"


@dataclass(frozen=True)
class DeterminismScenario:
    """One dual-build drill.

    Attributes:
        name: the scenario name in evidence and records.
        subject: the project folder to build.
        build: the build command (run by /bin/sh in the copied subject).
        artifacts: globs of the files to compare, relative to the subject.
        image: builder-python, builder-c, or a local image built FROM the lab base.
        variations: which variations to apply.
        source_date_epoch: SOURCE_DATE_EPOCH of both builds (None: from git, else a default).
        timeout_s: wall-clock limit of each build.
        culprits: search for culprits when the builds differ.
        diffoscope_timeout_s, max_report_bytes, max_diff_block_lines_saved: diffoscope's limits.
        expect: what the drill should find, if the scenario says.
        source: the scenario file, if it came from one.
    """

    name: str
    subject: Path
    build: str
    artifacts: tuple[str, ...]
    image: str = "builder-python"
    variations: VariationSpec = field(default_factory=VariationSpec)
    source_date_epoch: int | None = None
    timeout_s: float = 900.0
    culprits: bool = True
    diffoscope_timeout_s: float = 120.0
    max_report_bytes: int = 4 * 1024 * 1024
    max_diff_block_lines_saved: int = 200
    expect: Expectation | None = None
    source: Path | None = None
    limits: BuildLimits = field(default_factory=BuildLimits)

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "name": self.name,
            "subject": str(self.subject),
            "build": self.build,
            "artifacts": list(self.artifacts),
            "image": self.image,
            "variations": self.variations.to_json(),
            "source_date_epoch": self.source_date_epoch,
            "timeout": self.timeout_s,
            "culprits": self.culprits,
            "limits": self.limits.to_json(),
            "diffoscope": {
                "timeout": self.diffoscope_timeout_s,
                "max_report_bytes": self.max_report_bytes,
                "max_diff_block_lines_saved": self.max_diff_block_lines_saved,
            },
        }
        if self.expect is not None:
            value["expect"] = {"verdict": self.expect.verdict}
            if self.expect.culprits is not None:
                value["expect"]["culprits"] = sorted(self.expect.culprits)
        if self.source is not None:
            value["source"] = str(self.source)
        return value


@functools.cache
def _scenario_validator() -> SchemaValidator:
    return SchemaValidator(load_schema(SCENARIO_SCHEMA))


def _known_keys() -> frozenset[str]:
    return frozenset(_scenario_validator().schema["properties"])


def load_scenario(path: Path) -> DeterminismScenario:
    """Read and validate a scenario file (YAML or JSON).

    Raises:
        ConfigError: the file can't be read, isn't YAML/JSON, or doesn't match
            `schema/scenario.determinism.v1.json`; the one-line message names the file and
            the field, e.g. `s.yaml: $.artifacts: [] should be non-empty`.

    Example:
        >>> scenario = load_scenario(Path("scenarios/determinism/tarball.yaml"))
        >>> scenario.expect.culprits
        frozenset({'time', 'umask'})
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the scenario file ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: the scenario file is not UTF-8 text") from exc
    doc = _parse(path, text)
    return scenario_from_mapping(doc, base_dir=path.parent, source=path)


def _parse(path: Path, text: str) -> Any:
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
    import yaml  # only scenario files need it

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from exc


def scenario_from_mapping(
    doc: Any, *, base_dir: Path, source: Path | None = None
) -> DeterminismScenario:
    """A scenario from a parsed document, validated against the scenario schema.

    Relative paths are taken from `base_dir`.

    Raises:
        ConfigError: the document doesn't match the schema (the message names the field).
    """
    where = str(source) if source is not None else "scenario"
    errors = _scenario_validator().errors(doc)
    if errors:
        raise ConfigError(f"{where}: {errors[0].json_path}: {errors[0].message}")
    assert isinstance(doc, dict)
    for key in sorted(set(doc) - _known_keys()):
        _logger.warning("%s: $.%s: unknown key, ignored", where, key)
    variations = doc.get("variations") or {}
    diffoscope = doc.get("diffoscope") or {}
    expect = doc.get("expect")
    subject = Path(doc["subject"]).expanduser()
    try:
        spec = VariationSpec(
            enable=frozenset(variations.get("enable", ())),
            disable=frozenset(variations.get("disable", ())),
            extra_env=tuple(sorted((variations.get("extra_env") or {}).items())),
        )
    except ConfigError as exc:
        raise ConfigError(f"{where}: $.variations: {exc}") from exc
    try:
        limits = BuildLimits.from_json(doc.get("limits"))
    except ConfigError as exc:
        raise ConfigError(f"{where}: $.limits: {exc}") from exc
    name = doc.get("name") or (source.stem if source is not None else subject.name)
    return DeterminismScenario(
        name=str(name),
        subject=subject if subject.is_absolute() else base_dir / subject,
        build=str(doc["build"]),
        artifacts=tuple(str(a) for a in doc["artifacts"]),
        image=str(doc.get("image", "builder-python")),
        variations=spec,
        source_date_epoch=doc.get("source_date_epoch"),
        timeout_s=float(doc.get("timeout", 900.0)),
        culprits=bool(doc.get("culprits", True)),
        diffoscope_timeout_s=float(diffoscope.get("timeout", 120.0)),
        max_report_bytes=int(diffoscope.get("max_report_bytes", 4 * 1024 * 1024)),
        max_diff_block_lines_saved=int(diffoscope.get("max_diff_block_lines_saved", 200)),
        expect=Expectation(
            expect["verdict"],
            frozenset(expect["culprits"]) if "culprits" in expect else None,
        )
        if expect
        else None,
        source=source,
        limits=limits,
    )


def check_subject(path: Path) -> Path:
    """The absolute subject folder, checked to exist and be readable.

    Raises:
        ConfigError: it doesn't exist, isn't a folder or can't be read.
    """
    resolved = path.expanduser().resolve()
    if not resolved.exists():
        raise ConfigError(f"subject {path}: does not exist")
    if not resolved.is_dir():
        raise ConfigError(f"subject {path}: not a folder")
    if not os.access(resolved, os.R_OK | os.X_OK):
        raise ConfigError(f"subject {path}: cannot be read")
    try:
        next(os.scandir(resolved), None)
    except OSError as exc:
        raise ConfigError(f"subject {path}: cannot be read ({exc.strerror})") from exc
    return resolved


class SourceDateEpoch(NamedTuple):
    """SOURCE_DATE_EPOCH of a drill and where it came from.

    Attributes:
        value: the seconds since the epoch both builds get.
        origin: `scenario`, `git HEAD <sha>` or `default` (with why git was not used).
        dirty: the subject has uncommitted or untracked changes (None: not from git).
    """

    value: int
    origin: str
    dirty: bool | None = None

    def describe(self) -> str:
        """`1700000000 (git HEAD 1a2b3c4d5e6f, tree dirty)` for people."""
        state = {True: ", tree dirty", False: ", tree clean", None: ""}[self.dirty]
        return f"{self.value} ({self.origin}{state})"


def _git(subject: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    # Only the subject's own repository counts: nothing from the caller's environment
    # (GIT_DIR, GIT_WORK_TREE, GIT_INDEX_FILE, ...) may point git elsewhere.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["LC_ALL"] = "C"
    try:
        return subprocess.run(
            ["git", "-C", str(subject), *args],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
            env=env,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def source_date_epoch(subject: Path, explicit: int | None = None) -> SourceDateEpoch:
    """SOURCE_DATE_EPOCH for a subject, where it came from, and whether the tree was dirty.

    The explicit value wins. Else, when the subject is the top of a git work tree, or a folder
    inside one whose HEAD tracks it, the time of that HEAD commit (`git log -1 --format=%ct`:
    the same in a shallow and a full clone of one commit), with the environment scrubbed of
    `GIT_*` variables. An untracked folder inside an unrelated repository gets the default.
    Else `DEFAULT_SOURCE_DATE_EPOCH`.
    """
    if explicit is not None:
        return SourceDateEpoch(explicit, "scenario")
    default = DEFAULT_SOURCE_DATE_EPOCH
    top = _git(subject, "rev-parse", "--show-toplevel")
    if top is None or top.returncode != 0:
        return SourceDateEpoch(default, "default (not in a git work tree)")
    prefix = _git(subject, "rev-parse", "--show-prefix")
    where = prefix.stdout.strip() if prefix is not None and prefix.returncode == 0 else None
    if where is None:
        return SourceDateEpoch(default, "default (git could not place the subject)")
    if where:
        path = where.rstrip("/")
        tracked = _git(subject, "ls-tree", "-d", "--full-tree", "--name-only", "HEAD", "--", path)
        if tracked is None or tracked.returncode != 0 or not tracked.stdout.strip():
            return SourceDateEpoch(
                default, "default (the enclosing git repository's HEAD does not track it)"
            )
    head = _git(subject, "log", "-1", "--format=%ct %H")
    words = head.stdout.split() if head is not None and head.returncode == 0 else []
    if len(words) != 2 or not words[0].isdigit():
        return SourceDateEpoch(default, "default (the git work tree has no commit)")
    status = _git(subject, "status", "--porcelain", "--untracked-files=normal", "--", ".")
    dirty = None if status is None or status.returncode != 0 else bool(status.stdout.strip())
    return SourceDateEpoch(int(words[0]), f"git HEAD {words[1][:12]}", dirty)


@dataclass(frozen=True)
class DrillOptions:
    """How to run the drill (not what to build).

    Attributes:
        image_mode: how lab builder images are built (offline or upstream base).
        workers: builds run at the same time by the culprit search (default: the CPUs).
        confirm_culprits: build each differing variation a second time.
        keep_workdir: keep the scratch folder (for debugging).
        culprit_strategy: groups (groups of variations first) or singles (each alone).
        warm: reuse builder containers between builds (False: one container per build).
    """

    image_mode: ImageMode = "offline"
    workers: int | None = None
    confirm_culprits: bool = True
    keep_workdir: bool = False
    culprit_strategy: SearchStrategy = "groups"
    warm: bool = True


@dataclass(frozen=True)
class DeterminismResult:
    """What the drill found.

    Attributes:
        verdict: reproducible, not-reproducible or build-failed.
        detail: one line for people.
        builds: build A and build B.
        compare: the comparison (None when a build failed).
        culprit_report: the culprit search (None when not needed or not asked for).
        plan: the variations applied and not applied.
        source_date_epoch, sde_origin: SOURCE_DATE_EPOCH and where it came from;
            sde_dirty: whether the subject's git tree had changes (None: not from git).
        clock: how A's and B's clocks differed (says "time not varied" when they didn't).
        image: the builder image.
        wall_s: the drill's wall time; build_wall_s: the dual build's.
    """

    scenario: DeterminismScenario
    verdict: Verdict
    detail: str
    builds: tuple[BuildOutput, ...]
    compare: CompareResult | None
    culprit_report: CulpritReport | None
    plan: VariationPlan
    source_date_epoch: int
    sde_origin: str
    image: ImageInfo
    wall_s: float
    build_wall_s: float
    sde_dirty: bool | None = None
    clock: str = ""

    @property
    def reproducible(self) -> bool:
        return self.verdict == "reproducible"

    @property
    def culprits(self) -> tuple[str, ...]:
        return self.culprit_report.culprits if self.culprit_report is not None else ()

    @property
    def exit_code(self) -> int:
        """0 reproducible, 1 not reproducible, 2 build failed (not judged)."""
        if self.verdict == "reproducible":
            return _exit.SUCCESS
        return _exit.FAILED if self.verdict == "not-reproducible" else _exit.ERROR

    def expectation_problems(self) -> list[str]:
        """How the result differs from the scenario's `expect` (empty when it matches)."""
        expect = self.scenario.expect or DEFAULT_EXPECTATION
        problems = []
        if expect.verdict != self.verdict:
            problems.append(f"verdict {self.verdict}, expected {expect.verdict}")
        if expect.culprits is not None and set(self.culprits) != set(expect.culprits):
            found = ", ".join(self.culprits) or "none"
            wanted = ", ".join(sorted(expect.culprits)) or "none"
            problems.append(f"culprits {found}, expected {wanted}")
        return problems

    def record_json(self) -> dict[str, Any]:
        """The `determinism` object of the pipeline_run record."""
        value: dict[str, Any] = {
            "verdict": self.verdict,
            "variations_applied": list(self.plan.applied),
            "variations_not_applied": [n.to_json() for n in self.plan.not_applied],
            "culprits": list(self.culprits),
            "source_date_epoch": self.source_date_epoch,
            "source_date_epoch_origin": self.sde_origin,
            "source_date_epoch_dirty": self.sde_dirty,
        }
        if self.clock:
            value["clock"] = self.clock
        digests = {b.label: b.digest.digest for b in self.builds if b.digest is not None}
        if digests:
            value["digests"] = digests
        report = self.culprit_report
        value["culprit_search"] = {"ran": report is not None}
        if report is not None:
            value["culprit_search"].update(
                flaky=list(report.flaky),
                explained=report.explained,
                controls_agree=report.controls_agree,
                mode=report.mode,
                nondeterministic=report.nondeterministic,
                outcome=report.outcome,
                builds=report.builds,
                strategy=report.strategy,
                containers=report.containers,
            )
        if self.compare is not None:
            value["diffoscope"] = (
                self.compare.diffoscope.status if self.compare.diffoscope else "not-run"
            )
        return value

    def to_json(self) -> dict[str, Any]:
        """Everything, for `determinism/result.json` and `--json`."""
        value: dict[str, Any] = {
            "scenario": self.scenario.name,
            "verdict": self.verdict,
            "reproducible": self.reproducible,
            "detail": self.detail,
            "exit_code": self.exit_code,
            "culprits": list(self.culprits),
            "source_date_epoch": self.source_date_epoch,
            "source_date_epoch_origin": self.sde_origin,
            "source_date_epoch_dirty": self.sde_dirty,
            "clock": self.clock,
            "image": self.image.to_json(),
            "variations": self.plan.to_json(),
            "builds": [b.to_json() for b in self.builds],
            "wall_s": round(self.wall_s, 3),
            "build_wall_s": round(self.build_wall_s, 3),
        }
        if self.compare is not None:
            value["compare"] = {
                "identical": self.compare.identical,
                "digests": {"A": self.compare.digest_a.digest, "B": self.compare.digest_b.digest},
                "differences": [str(d) for d in self.compare.differences],
                "diffoscope": self.compare.diffoscope.to_json()
                if self.compare.diffoscope
                else None,
            }
        if self.culprit_report is not None:
            value["culprit_search"] = {
                k: v for k, v in self.culprit_report.to_json().items() if k != "trials"
            }
        problems = self.expectation_problems()
        value["expected"] = describe_expectation(self.scenario.expect or DEFAULT_EXPECTATION)
        value["expectation_met"] = not problems
        if problems:
            value["expectation_problems"] = problems
        return value


def prepare_image(
    client: docker.DockerClient, name: str, mode: ImageMode, progress: Progress | None
) -> str:
    """The tag of builder image `name`: a lab builder image is built on first use.

    Raises:
        InfraError: a lab image could not be built.
    """
    if name in LAB_IMAGES and name.startswith("builder-"):
        if progress:
            progress(f"preparing builder image {name} (built once, then cached)")
        try:
            return ImageBuilder(client, mode=mode).ensure([name])[name].tag
        except LabError as exc:
            raise InfraError(f"builder image {name}: could not be built") from exc
    return name


def run_determinism(
    scenario: DeterminismScenario,
    bundle: EvidenceBundle,
    *,
    client: docker.DockerClient | None = None,
    options: DrillOptions | None = None,
    progress: Progress | None = None,
    on_session: Callable[[BuildSession], None] | None = None,
) -> DeterminismResult:
    """Run the determinism drill and write its evidence into `bundle` (not finalized).

    Args:
        scenario: what to build.
        bundle: the open evidence bundle; `determinism/` goes in it, with the steps (build,
            compare, culprits) and the `determinism` verdict.
        client: the Docker client (default: from the environment).
        options: how to run it.
        progress: called with a line for people at each long step.
        on_session: called with the drill's build session as soon as it exists (the drill
            runner keeps it to stop the builds on SIGINT/SIGTERM).

    Returns:
        the result; `result.exit_code` is 0, 1 or 2.

    Raises:
        ConfigError: bad input: the subject is missing or unreadable, an artifact glob matched
            nothing, the image is not there or not built FROM the lab base.
        InfraError, LabError: Docker or a lab image failed.

    Example:
        >>> result = run_determinism(load_scenario(Path("scen.yaml")), bundle)
        >>> result.verdict, result.culprits
        ('not-reproducible', ('time', 'umask'))
    """
    opts = options or DrillOptions()
    started = time.monotonic()
    subject = check_subject(scenario.subject)
    bundle.require(*REQUIRED_EVIDENCE)
    bundle.write_json("determinism/scenario.json", scenario.to_json())
    client = client or docker_client()
    workdir = Path(tempfile.mkdtemp(prefix="cihub-determinism-"))
    session = BuildSession(client, workdir, warm=opts.warm)
    preloaded: PreloadedDiffoscope | None = None
    if on_session is not None:
        on_session(session)
    try:
        with bundle.step("prepare") as step:
            tag = prepare_image(client, scenario.image, opts.image_mode, progress)
            image = session_builder_image(session, tag)
            plan = plan_variations(scenario.variations, image.capabilities)
            spec = BuildSpec(
                subject=subject,
                command=scenario.build,
                image=image,
                artifacts=scenario.artifacts,
                timeout_s=scenario.timeout_s,
                limits=scenario.limits,
            )
            # only a culprit search builds after A and B: without one, their containers go
            # as they are (no reset to wait for)
            session.reuse = scenario.culprits and bool(plan.applied)
            if session.warm:  # A's and B's containers start while the rest is prepared
                prewarm(session, spec, [plan.control, plan.experiment()], workers=1)
            # diffoscope's imports run beside the builds (it runs only if they differ)
            preloaded = preload_diffoscope(workdir)
            sde, origin, sde_dirty = source_date_epoch(subject, scenario.source_date_epoch)
            spec = dataclasses.replace(spec, source_date_epoch=sde)
            step.detail = f"{image.ref}; {len(plan.applied)} variation(s) applied"
        _record_tools(bundle, client, image)
        if progress:
            not_applied = ", ".join(n.name for n in plan.not_applied) or "none"
            progress(
                f"variations applied: {', '.join(plan.applied) or 'none'} "
                f"(not applied: {not_applied}); SOURCE_DATE_EPOCH="
                f"{SourceDateEpoch(sde, origin, sde_dirty).describe()}"
            )
        common = (scenario, plan, sde, origin, image, started, sde_dirty)
        request = DualBuildRequest(spec, plan.control, plan.experiment())
        try:
            with bundle.step("build") as step:
                built = dual_build(request, session, progress)
                step.detail = f"A and B built in {built.wall_s:.1f} s"
        except BuildFailed as failed:
            breakers = None
            a, b = failed.builds
            if a.ok and not b.ok and scenario.culprits and plan.applied:
                # The control builds and the experiment doesn't: find what breaks it.
                check_matches(spec.artifacts, a, failed.builds)
                with bundle.step("culprits") as step:
                    breakers = find_culprits(
                        CulpritSearch(
                            spec,
                            plan,
                            reference_digest=a.digest.digest if a.digest else None,
                            workers=opts.workers,
                            confirm=opts.confirm_culprits,
                            strategy=opts.culprit_strategy,
                        ),
                        session,
                        progress,
                    )
                    step.detail = breakers.summary()
                bundle.write_json("determinism/culprits.json", breakers.to_json())
            return _build_failed(bundle, spec, failed, breakers, *common)
        except NoArtifacts as missing:
            _write_build_evidence(bundle, spec, missing.builds)
            bundle.set_verdict(CHECK, "fail", str(missing))
            raise
        finally:
            _record_builds(bundle, spec, session)
        builds = (built.a, built.b)
        plan = _runtime_plan(plan, builds)
        search = CulpritSearch(
            spec,
            plan,
            reference_digest=built.a.digest.digest if built.a.digest else None,
            workers=opts.workers,
            confirm=opts.confirm_culprits,
            strategy=opts.culprit_strategy,
        )
        searching = not built.identical and scenario.culprits and bool(plan.applied)
        if searching and session.warm:
            # the search's containers start while the evidence is written
            prewarm(session, spec, first_round_envs(search), search_workers(search))
        elif not searching:
            session.release()  # no build follows: containers go while the drill goes on
        if progress:
            progress("comparing the artifacts (tree digests; diffoscope only if they differ)")
        # diffoscope only explains a difference (the verdict stands on the tree digests), so
        # it runs beside the build evidence being written and the culprit search
        comparing = _Comparing(
            CompareRequest(
                a=_relative(built.a.out_dir, workdir),
                b=_relative(built.b.out_dir, workdir),
                workdir=workdir,
                digest_a=built.a.digest,
                digest_b=built.b.digest,
                diffoscope_timeout_s=scenario.diffoscope_timeout_s,
                max_report_bytes=scenario.max_report_bytes,
                max_diff_block_lines_saved=scenario.max_diff_block_lines_saved,
                stop=threading.Event(),
                preloaded=preloaded,
            ),
            bundle,
        )
        report = None
        try:
            _write_build_evidence(bundle, spec, builds)
            if searching:
                with bundle.step("culprits") as step:
                    report = find_culprits(search, session, progress)
                    step.detail = report.summary()
                bundle.write_json("determinism/culprits.json", report.to_json())
                session.release()
        except BaseException as exc:
            comparing.abandon(exc)  # diffoscope dies before the work folder goes
            raise
        compared = comparing.result()
        bundle.write_text("determinism/diff.txt", compared.diff_text)
        if compared.html_report is not None:
            bundle.add_file("determinism/report.html", compared.html_report)
        if compared.diffoscope is not None and compared.diffoscope.version:
            bundle.set_tool_version("diffoscope", compared.diffoscope.version)
        _record_builds(bundle, spec, session)
        if compared.identical:
            verdict: Verdict = "reproducible"
            detail = f"reproducible: both builds gave {compared.digest_a.digest}"
        else:
            verdict = "not-reproducible"
            count = len(compared.differences)
            differ = "entry differs" if count == 1 else "entries differ"
            detail = f"not reproducible: {count} {differ}"
            if report is not None:
                detail += f"; {report.summary()}"
        result = DeterminismResult(
            scenario,
            verdict,
            detail,
            builds,
            compared,
            report,
            plan,
            sde,
            origin,
            image,
            time.monotonic() - started,
            built.wall_s,
            sde_dirty,
            built.clock,
        )
        for entry in built.a.digest.files if built.a.digest else ():
            if entry.sha256:
                bundle.add_artifact(entry.path, f"sha256:{entry.sha256}")
        _finish(bundle, result)
        return result
    finally:
        if preloaded is not None:
            preloaded.close()  # first: cheap, and before its folder goes
        session.close()
        if opts.keep_workdir:
            _logger.info("scratch folder kept: %s", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


class _Comparing:
    """The compare step running in a thread, recorded in the bundle when it is waited for
    (`result()`), or stopped and waited for when the drill fails meanwhile (`abandon()`)."""

    def __init__(self, request: CompareRequest, bundle: EvidenceBundle) -> None:
        self._request = request
        self._bundle = bundle
        self._started_at = now_rfc3339()
        self._start = time.monotonic()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cihub-compare")
        self._future = self._pool.submit(compare_outputs, request, bundle.audit)
        self._pool.shutdown(wait=False)

    def result(self) -> CompareResult:
        try:
            compared = self._future.result()
        except BaseException as exc:
            if self._future.done() and self._future.exception() is exc:
                self._record("error", _first_line(exc))  # the compare itself failed
            else:
                # Interrupted while waiting (Ctrl-C, SIGTERM, a cancelled drill): diffoscope
                # runs in a session of its own and would outlive the work folder.
                self.abandon(exc)
            raise
        self._record("success", _compare_detail(compared))
        return compared

    def abandon(self, why: BaseException) -> None:
        if self._request.stop is not None:
            self._request.stop.set()
        with contextlib.suppress(BaseException):
            self._future.result()
        outcome: StepOutcome = "cancellation" if isinstance(why, KeyboardInterrupt) else "error"
        self._record(outcome, f"stopped: {_first_line(why)}")

    def _record(self, outcome: StepOutcome, detail: str) -> None:
        self._bundle.record_step(
            "compare",
            outcome,
            time.monotonic() - self._start,
            started_at=self._started_at,
            detail=detail,
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _relative(path: Path | None, base: Path) -> Path:
    if path is None:
        raise InfraError("a build kept no output folder")
    return path.relative_to(base)


def _runtime_plan(plan: VariationPlan, builds: tuple[BuildOutput, ...]) -> VariationPlan:
    """The plan, less the opt-in variations the runner reported it could not apply."""
    for build in builds:
        for note in build.notes:
            name, _, state = note.partition("=")
            if state.startswith("not applied"):
                reason = state.partition(":")[2].strip() or "refused at run time"
                plan = plan.without(name, reason)
    return plan


def _compare_detail(compared: CompareResult) -> str:
    if compared.identical:
        return f"tree digests equal ({compared.digest_a.digest[:19]}…); diffoscope not needed"
    tool = compared.diffoscope
    count = len(compared.differences)
    return f"{count} {'entry differs' if count == 1 else 'entries differ'}; " + (
        tool.detail if tool is not None else "diffoscope not run"
    )


def _build_failed(
    bundle: EvidenceBundle,
    spec: BuildSpec,
    failed: BuildFailed,
    breakers: CulpritReport | None,
    scenario: DeterminismScenario,
    plan: VariationPlan,
    sde: int,
    origin: str,
    image: ImageInfo,
    started: float,
    sde_dirty: bool | None,
) -> DeterminismResult:
    _write_build_evidence(bundle, spec, failed.builds)
    wall = max((b.duration_s for b in failed.builds), default=0.0)
    detail = str(failed)
    if breakers is not None:
        detail += f"; {breakers.summary()}"
    result = DeterminismResult(
        scenario,
        "build-failed",
        detail,
        failed.builds,
        None,
        breakers,
        plan,
        sde,
        origin,
        image,
        time.monotonic() - started,
        wall,
        sde_dirty,
    )
    _finish(bundle, result)
    return result


def _write_build_evidence(
    bundle: EvidenceBundle, spec: BuildSpec, builds: tuple[BuildOutput, ...]
) -> None:
    for build in builds:
        if build.out_dir is not None and build.out_dir.is_dir():
            bundle.add_tree(f"determinism/build-{build.label}", build.out_dir)
        bundle.write_text(
            f"determinism/logs/{build.label}.log",
            build.log.decode(errors="replace"),
            redact=True,
        )
        bundle.write_json(
            f"determinism/env/{build.label}.json",
            {
                "variation_values": build.env.to_json(),
                "environment": bundle.redactor.redact_env(build_environment_for(spec, build.env)),
            },
        )


def _record_builds(bundle: EvidenceBundle, spec: BuildSpec, session: BuildSession) -> None:
    """Record each build container run so far in audit/commands.log (once each)."""
    for build in session.take_finished():
        bundle.audit.record(
            ["container", build.container, "/bin/sh", "-c", spec.command],
            exit_code=build.exit_code,
            duration_s=build.duration_s,
            stdout=build.log,
            cwd=build.env.build_path,
            env=build_environment_for(spec, build.env),
            note=build.failure() or None,
        )


def _record_tools(bundle: EvidenceBundle, client: docker.DockerClient, image: ImageInfo) -> None:
    try:
        version = client.version()
    except (docker.errors.APIError, requests.RequestException):
        version = {}
    if version.get("Version"):
        bundle.set_tool_version("docker-engine", str(version["Version"]))
    bundle.set_tool_version("builder-image", f"{image.ref}@{image.image_id}")


def _finish(bundle: EvidenceBundle, result: DeterminismResult) -> None:
    bundle.write_json("determinism/result.json", result.to_json())
    bundle.set_verdict(CHECK, "pass" if result.reproducible else "fail", result.detail)


def result_lines(result: DeterminismResult) -> list[str]:
    """A few lines for people: the verdict, the culprits, what to look at."""
    lines = [f"{result.scenario.name}: {result.detail}"]
    if result.clock:
        lines.append(f"  clock: {result.clock}")
    lines.append(f"  image: {result.image.ref} ({result.image.lab_image or 'local image'})")
    if result.verdict == "build-failed":
        for build in result.builds:
            state = build.failure() or "exited 0"
            lines.append(f"  build {build.label}: {state}")
            tail = build.log_tail()
            if tail and not build.ok:
                lines += [f"    | {line}" for line in tail.splitlines()]
    if result.compare is not None and result.compare.diffoscope is not None:
        lines.append(f"  diffoscope: {result.compare.diffoscope.detail}")
    for problem in result.expectation_problems():
        lines.append(f"  expectation not met: {problem}")
    return lines


def record_extras(result: DeterminismResult) -> Mapping[str, Any]:
    """Fields to add to the drill's pipeline_run record."""
    return {"determinism": result.record_json()}
