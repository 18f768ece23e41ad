"""`cihub run determinism`: build a project twice in isolated containers and compare.

Exit codes: 0 reproducible; 1 not reproducible (the culprit variations are named);
2 bad input (a missing subject, an artifact glob that matches nothing, a malformed scenario),
an infrastructure failure, or "build failed": a build command failed, so reproducibility was not
judged (each build's exit code and log tail are printed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from harness import telemetry
from harness.determinism import (
    CHECK,
    SCENARIO_KIND,
    DeterminismScenario,
    DrillOptions,
    check_subject,
    load_scenario,
    record_extras,
    result_lines,
    run_determinism,
    scenario_from_mapping,
)
from harness.errors import ConfigError
from harness.evidence import EvidenceBundle, StepOutcome, TestKeySigner
from harness.variations import NAMES, VariationSpec
from lab.images import IMAGE_MODES


def _err() -> Console:
    # Looked up on each use: tests and embedding tools replace sys.stderr.
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


_RESULTS: dict[str, StepOutcome] = {
    "reproducible": "success",
    "not-reproducible": "failure",
    "build-failed": "error",
}


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("run", help="run a drill (determinism: dual builds)")
    drills = parser.add_subparsers(dest="drill", metavar="DRILL", required=True)
    det = drills.add_parser(
        "determinism",
        help="build a project twice with varied environments and compare the outputs",
        description="Build SUBJECT twice in isolated builder containers (A: control, "
        "B: every variation), compare the artifacts, and name the variations that make them "
        "differ. Exit 0: reproducible; 1: not reproducible; 2: bad input, infrastructure "
        "error, or build failed.",
    )
    det.add_argument("--scenario", type=Path, metavar="FILE", help="a scenario file (YAML/JSON)")
    det.add_argument("--subject", type=Path, metavar="PATH", help="the project folder to build")
    det.add_argument("--build", metavar="CMD", help="the build command (run by /bin/sh)")
    det.add_argument(
        "--artifacts",
        nargs="+",
        action="extend",
        metavar="GLOB",
        help="files to compare, relative to the subject (e.g. 'dist/*.whl'); each must match",
    )
    det.add_argument(
        "--image",
        metavar="NAME",
        help="builder-python (default), builder-c, or a local image built FROM the lab base",
    )
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
    det.add_argument("--source-date-epoch", type=int, metavar="N", help="SOURCE_DATE_EPOCH")
    det.add_argument("--timeout", type=float, metavar="S", help="seconds each build may take")
    det.add_argument("--no-culprits", action="store_true", help="skip the culprit search")
    det.add_argument(
        "--diffoscope-timeout", type=float, metavar="S", help="wall-clock limit of diffoscope"
    )
    det.add_argument("--evidence-dir", type=Path, default=Path("evidence"), metavar="DIR")
    det.add_argument(
        "--images",
        choices=IMAGE_MODES,
        default="offline",
        help="how lab builder images are built (default offline)",
    )
    det.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
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
    if args.no_culprits:
        doc["culprits"] = False
    if args.diffoscope_timeout is not None:
        doc.setdefault("diffoscope", {})["timeout"] = args.diffoscope_timeout
    for name in ("subject", "build", "artifacts"):
        if name not in doc:
            raise ConfigError(f"--{name} is required (or a --scenario file that names it)")
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
    _err().print(f"[dim]cihub:[/] {escape(message)}")


def _determinism(args: argparse.Namespace) -> int:
    scenario = scenario_from_args(args)
    check_subject(scenario.subject)
    evidence_dir: Path = args.evidence_dir
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in scenario.name)[:60]
    name = f"determinism-{safe}-{stamp}-{uuid.uuid4().hex[:6]}"
    bundle = EvidenceBundle.create(
        evidence_dir / name, run_id=name, scenario=scenario.name, tool_versions={}
    )
    signer = TestKeySigner.generate()
    started = datetime.now(UTC)
    try:
        result = run_determinism(
            scenario,
            bundle,
            options=DrillOptions(image_mode=args.images),
            progress=_progress,
        )
    except BaseException as exc:
        _abandon(bundle, signer, evidence_dir, scenario, started, exc)
        raise
    finalized = bundle.finalize(signer)
    record = telemetry.record_for_bundle(
        bundle,
        pipeline="cihub",
        result=_RESULTS[result.verdict],
        evidence_dir=evidence_dir,
        scenario_kind=SCENARIO_KIND,
        vcs=telemetry.vcs_facts(scenario.subject),
        errors=[{"message": result.detail, "type": "BuildFailed", "step": "build"}]
        if result.verdict == "build-failed"
        else [],
    )
    record.update(record_extras(result))
    ndjson = telemetry.append_record(record, evidence_dir)
    if args.json:
        value = result.to_json()
        value.update(
            bundle=str(bundle.root), manifest_digest=finalized.digest, pipeline_run=str(ndjson)
        )
        print(json.dumps(value, indent=2, sort_keys=True))
    else:
        for line in result_lines(result):
            print(line)
        print(f"evidence: {bundle.root} ({finalized.digest})")
    return result.exit_code


def _abandon(
    bundle: EvidenceBundle,
    signer: TestKeySigner,
    evidence_dir: Path,
    scenario: DeterminismScenario,
    started: datetime,
    exc: BaseException,
) -> None:
    """Keep the evidence of a drill that stopped on an error: incomplete, signed, recorded."""
    if bundle.finalized is not None:
        return
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    try:
        if CHECK not in bundle.predicate.verdicts:
            bundle.set_verdict(CHECK, "fail", f"the drill stopped: {message}")
        bundle.finalize(signer, complete=False)
        record = telemetry.record_for_bundle(
            bundle,
            pipeline="cihub",
            result="cancellation" if isinstance(exc, KeyboardInterrupt) else "error",
            evidence_dir=evidence_dir,
            scenario_kind=SCENARIO_KIND,
            errors=[{"message": message, "type": type(exc).__name__}],
            started_at=started,
        )
        telemetry.append_record(record, evidence_dir)
    except Exception as inner:  # the original error matters more
        _err().print(f"[yellow]warning:[/] could not finalize {bundle.root}: {escape(str(inner))}")
