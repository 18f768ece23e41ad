"""`cihub run determinism` (build a project twice in isolated containers and compare) and
`cihub run release` (the release drill: see `harness.drills.release`; exit 0 the gate allows,
1 it denies, 2 bad input or infrastructure, with the step named).

Runs through the one drill runner (`harness.drills`), like the pytest scenarios. The verdict
follows the scenario's expectation (without `expect`: reproducible). Exit codes: 0 the finding
met the expectation; 1 it did not (e.g. not reproducible, culprits named); 2 bad input (a
missing subject, an artifact glob that matches nothing, a malformed scenario), an
infrastructure failure, or a build command failed where a verdict was expected (each build's
exit code and log tail are printed); 130 cancelled by SIGINT/SIGTERM (the evidence is kept).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from harness._commands import chaos as _chaos
from harness._commands.dr import register_run as _register_dr
from harness._internal.lab_signer import caller_lab_signer
from harness._internal.release_services import release_services
from harness._internal.signing import SIGN_HELP, SignSpec, signer_for
from harness.determinism import (
    DeterminismScenario,
    DrillOptions,
    check_subject,
    load_scenario,
    scenario_from_mapping,
)
from harness.drills import DeterminismDrill, RunSettings, run_drill
from harness.drills._steps import StepBoard
from harness.drills.release import (
    ReleaseDrill,
    ReleaseScenario,
    release_scenario_from_mapping,
)
from harness.errors import ConfigError
from harness.evidence import Signer
from harness.evidence.pack import pack_bundle, tar_digest
from harness.variations import NAMES, VariationSpec
from lab.images import IMAGE_MODES


def _err() -> Console:
    # Looked up on each use: tests and embedding tools replace sys.stderr.
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


DrillRegister = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`cihub run DRILL`: one subparser per drill, from `DRILLS`.

    A drill from another module adds itself with a `register_drill(drills)` function that calls
    `drills.add_parser(...)`, `add_subject_options`/`add_run_options` if it builds a subject,
    and `set_defaults(handler=...)`; then it is two lines here: its import, and its entry in
    `DRILLS`.
    """
    parser = commands.add_parser("run", help="run a drill (determinism, release, ...)")
    drills = parser.add_subparsers(dest="drill", metavar="DRILL", required=True)
    for add in DRILLS:
        add(drills)


def add_subject_options(parser: argparse.ArgumentParser, *, what: str = "scenario file") -> None:
    """The subject options every building drill takes (read back by `_subject_options`)."""
    parser.add_argument("--scenario", type=Path, metavar="FILE", help=f"a {what} (YAML/JSON)")
    parser.add_argument("--subject", type=Path, metavar="PATH", help="the project folder to build")
    parser.add_argument("--build", metavar="CMD", help="the build command (run by /bin/sh)")
    parser.add_argument(
        "--artifacts",
        nargs="+",
        action="extend",
        metavar="GLOB",
        help="files to compare, relative to the subject (e.g. 'dist/*.whl'); each must match",
    )
    parser.add_argument(
        "--image",
        metavar="NAME",
        help="builder-python (default), builder-c, or a local image built FROM the lab base",
    )
    parser.add_argument("--source-date-epoch", type=int, metavar="N", help="SOURCE_DATE_EPOCH")
    parser.add_argument("--timeout", type=float, metavar="S", help="seconds each build may take")


def add_run_options(parser: argparse.ArgumentParser, *, lab_help: str) -> None:
    """Where evidence goes, how images are built, how it is signed, the lab, `--json`."""
    parser.add_argument("--evidence-dir", type=Path, default=Path("evidence"), metavar="DIR")
    parser.add_argument(
        "--images",
        choices=IMAGE_MODES,
        default="offline",
        help="how lab builder images are built (default offline)",
    )
    parser.add_argument("--sign", default="keyless", metavar="keyless|key:PATH", help=SIGN_HELP)
    parser.add_argument("--lab", metavar="ID", help=lab_help)
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")


def _register_determinism(drills: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    det = drills.add_parser(
        "determinism",
        help="build a project twice with varied environments and compare the outputs",
        description="Build SUBJECT twice in isolated builder containers (A: control, "
        "B: every variation), compare the artifacts, and name the variations that make them "
        "differ; judge that against the scenario's expect (default: reproducible); sign the "
        "evidence (keyless through the lab by default). Exit 0: as expected; 1: not as "
        "expected; 2: bad input, infrastructure error, or a build failed; 130: cancelled.",
    )
    add_subject_options(det)
    det.add_argument(
        "--variations",
        metavar="SPEC",
        help="reprotest-style changes to the default variations, e.g. '-umask,+aslr' "
        f"(known: {', '.join(NAMES)})",
    )
    det.add_argument(
        "--extra-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a variable the environment variation sets in build B (repeatable)",
    )
    det.add_argument("--no-culprits", action="store_true", help="skip the culprit search")
    det.add_argument(
        "--build-memory",
        metavar="SIZE",
        help="memory limit of each build container, e.g. 2g (default: the scenario's, else 2g)",
    )
    det.add_argument(
        "--build-pids",
        type=int,
        metavar="N",
        help="process limit of each build container (default: the scenario's, else 1024)",
    )
    det.add_argument(
        "--diffoscope-timeout", type=float, metavar="S", help="wall-clock limit of diffoscope"
    )
    add_run_options(
        det,
        lab_help="the running lab to sign through (default: yours; one is brought up if none is)",
    )
    det.set_defaults(handler=_determinism)


def scenario_from_args(args: argparse.Namespace) -> DeterminismScenario:
    """The scenario the options describe: a scenario file, with the options overriding it.

    Raises:
        ConfigError: a required value is missing or a value is invalid.
    """
    doc: dict[str, Any] = {}
    base = Path.cwd()
    source: Path | None = None
    if args.scenario is not None:
        doc = _doc_of(load_scenario(args.scenario))
        source = args.scenario
    doc.update(_subject_options(args))
    if args.no_culprits:
        doc["culprits"] = False
    if args.build_memory is not None:
        doc.setdefault("limits", {})["memory"] = args.build_memory
    if args.build_pids is not None:
        doc.setdefault("limits", {})["pids"] = args.build_pids
    if args.diffoscope_timeout is not None:
        doc.setdefault("diffoscope", {})["timeout"] = args.diffoscope_timeout
    _require_subject(doc)
    scenario = scenario_from_mapping(doc, base_dir=base, source=source)
    if args.variations is not None or args.extra_env:
        extra = [_parse_env(item) for item in args.extra_env]
        spec = scenario.variations
        if args.variations is not None:
            parsed = VariationSpec.parse(args.variations)
            spec = VariationSpec(
                (spec.enable - parsed.disable) | parsed.enable,
                (spec.disable - parsed.enable) | parsed.disable,
                spec.extra_env,
            )
        spec = VariationSpec(spec.enable, spec.disable, (*spec.extra_env, *extra))
        scenario = _replace(scenario, variations=spec)
    return scenario


def _subject_options(args: argparse.Namespace) -> dict[str, Any]:
    """The subject options every drill takes, as scenario keys (they override the file)."""
    doc: dict[str, Any] = {}
    if args.subject is not None:
        doc["subject"] = str(args.subject.expanduser().resolve())
    if args.build is not None:
        doc["build"] = args.build
    if args.artifacts:
        doc["artifacts"] = list(args.artifacts)
    if args.image is not None:
        doc["image"] = args.image
    if args.source_date_epoch is not None:
        doc["source_date_epoch"] = args.source_date_epoch
    if args.timeout is not None:
        doc["timeout"] = args.timeout
    return doc


def _require_subject(doc: dict[str, Any]) -> None:
    for name in ("subject", "build", "artifacts"):
        if name not in doc:
            raise ConfigError(f"--{name} is required (or a --scenario file that names it)")


def _doc_of(scenario: DeterminismScenario) -> dict[str, Any]:
    value = scenario.to_json()
    value.pop("source", None)
    value["subject"] = str(scenario.subject.resolve())
    variations = value.pop("variations")
    value["variations"] = {k: v for k, v in variations.items() if v}
    if value.get("source_date_epoch") is None:
        value.pop("source_date_epoch", None)
    return value


def _replace(scenario: DeterminismScenario, **changes: Any) -> DeterminismScenario:
    return dataclasses.replace(scenario, **changes)


def _parse_env(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name:
        raise ConfigError(f"--extra-env {item!r}: expected NAME=VALUE")
    return name, value


def _progress(message: str) -> None:
    _err().print(f"[dim]cihub:[/] {escape(message)}", soft_wrap=True)


def _determinism(args: argparse.Namespace) -> int:
    scenario = scenario_from_args(args)
    check_subject(scenario.subject)
    spec = SignSpec.parse(args.sign)
    evidence_dir: Path = args.evidence_dir

    def keyless() -> contextlib.AbstractContextManager[Signer]:
        return caller_lab_signer(
            lab_id=args.lab, evidence_dir=evidence_dir, images=args.images, progress=_progress
        )

    drill = DeterminismDrill(scenario, DrillOptions(image_mode=args.images))
    with signer_for(spec, keyless) as signer:
        run = run_drill(drill, RunSettings(evidence_dir, signer, progress=_progress))
    if args.json:
        value = drill.result.to_json() if drill.result is not None else {}
        value.update(run.to_json())
        print(json.dumps(value, indent=2, sort_keys=True))
    else:
        for line in run.lines():
            print(line)
    return run.exit_code


# -- cihub run release ---------------------------------------------------------------------


def _register_release(drills: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rel = drills.add_parser(
        "release",
        help="dual-build, SBOM, VEX, provenance, sign, push with referrers, policy gate",
        description="Release SUBJECT through the lab: dual build, CycloneDX SBOM, OSV "
        "vulnerabilities with VEX, SLSA provenance, keyless signatures and attestations (logged), "
        "push by digest with OCI referrers, then the Rego gate; the evidence bundle is signed "
        "and packed. Exit 0: the gate allows; 1: it denies; 2: bad input or infrastructure "
        "error (the step is named, the partial evidence kept); 130: cancelled.",
    )
    add_subject_options(rel, what="release scenario file")
    rel.add_argument("--vuln-db", type=Path, metavar="DIR", help="a folder of OSV records")
    rel.add_argument(
        "--vex", type=Path, action="append", default=[], metavar="FILE", help="OpenVEX (repeat)"
    )
    rel.add_argument("--policy", type=Path, metavar="DIR", help="Rego policies (default ours)")
    add_run_options(rel, lab_help="the running lab to release through")
    rel.set_defaults(handler=_release)


# The drills of `cihub run`, in help order: each adds its own subparser.
DRILLS: tuple[DrillRegister, ...] = (
    _register_determinism,
    _register_release,
    _chaos.register_run,
    _register_dr,
)


def release_scenario_from_args(args: argparse.Namespace) -> ReleaseScenario:
    """The release scenario the options describe (a scenario file, options overriding it).

    Raises:
        ConfigError: a required value is missing or a value is invalid.
    """
    doc: dict[str, Any] = {}
    base = Path.cwd()
    if args.scenario is not None:
        try:
            loaded = yaml.safe_load(args.scenario.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"{args.scenario}: cannot read the release scenario") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{args.scenario}: a release scenario must be a mapping")
        doc = loaded
        base = args.scenario.parent
    doc.update(_subject_options(args))
    if args.vuln_db is not None:
        doc["vuln_db"] = str(args.vuln_db.expanduser().resolve())
    if args.vex:
        doc["vex"] = [str(p.expanduser().resolve()) for p in args.vex]
    if args.policy is not None:
        doc["policy"] = str(args.policy.expanduser().resolve())
    _require_subject(doc)
    return release_scenario_from_mapping(doc, base_dir=base, source=args.scenario)


def _release(args: argparse.Namespace) -> int:
    scenario = release_scenario_from_args(args)
    check_subject(scenario.build.subject)
    spec = SignSpec.parse(args.sign)
    evidence_dir: Path = args.evidence_dir
    with release_services(
        lab_id=args.lab, evidence_dir=evidence_dir, images=args.images, progress=_progress
    ) as (lab_signer, services):
        drill = ReleaseDrill(scenario, services, DrillOptions(image_mode=args.images))

        @contextlib.contextmanager
        def keyless() -> Iterator[Signer]:
            yield lab_signer

        table = _StepTable(drill.steps)
        with (
            signer_for(spec, keyless) as signer,
            Live(table.render(), console=_err(), refresh_per_second=4, transient=False) as live,
        ):

            def progress(message: str) -> None:
                table.said(message)
                live.update(table.render())

            try:
                run = run_drill(drill, RunSettings(evidence_dir, signer, progress=progress))
            finally:
                drill.steps.stop_running()
                table.said(None)
                live.update(table.render())
        _err().print("")  # the table's last line ends here, not in the verdict's line
    packed = pack_bundle(run.bundle)
    packed_digest = tar_digest(packed)
    if args.json:
        value = drill.result.to_json() if drill.result is not None else {}
        value.update(run.to_json())
        value.update(packed=str(packed), packed_digest=packed_digest)
        print(json.dumps(value, indent=2, sort_keys=True))
    else:
        for line in run.lines():
            print(line)
        print(f"packed: {packed} ({packed_digest})")
    return run.exit_code


class _StepTable:
    """The release's steps as a live table: each step and the dual build's sub-steps, with
    the state (then the verdict) and the wall time; the last progress lines below them."""

    def __init__(self, board: StepBoard) -> None:
        self._board = board
        self._notes: list[str] = []

    def said(self, message: str | None) -> None:
        """A progress line arrived (None: the drill ended, drop the notes)."""
        if message is None:
            self._notes = []
        elif not message.startswith("release: "):
            self._notes = [*self._notes[-2:], message]

    def render(self) -> Table:
        table = Table(title="release drill", title_justify="left")
        table.add_column("step")
        table.add_column("verdict")
        table.add_column("time", justify="right")
        for row in self._board.rows():
            name = f"  └ {row.name}" if row.parent else row.name
            took = f"{row.seconds:.2f} s" if row.seconds is not None else ""
            table.add_row(escape(name), escape(row.state), took)
        for note in self._notes:
            table.add_row("", escape(note), "")
        return table
