"""`cihub run dr [NAME] [--scenario FILE]`: a disaster-recovery drill (`harness.drills.dr`).

A DR drill destroys things, so it never runs on your lab: it brings up a lab of its own and
removes it at the end. `registry-restore` and `cache-poisoning` use your trust domain (their
evidence is signed keylessly by that lab); `log-rollback` and `log-key-rotation` change the
logs or the log key, so their lab runs on a private trust domain in a temporary folder, and
their evidence is signed through your running lab (or one brought up for the run), or with
`--sign key:PATH`. Exit codes: 0 the finding met the scenario's expectation; 1 it did not (a
negative twin); 2 bad input or infrastructure; 130 cancelled (the registry or the logs are put
back first, the evidence is kept).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from harness._internal.lab_signer import caller_lab_signer
from harness._internal.signing import SIGN_HELP, SignSpec, signer_for
from harness.dr.scenario import DrScenario, load_scenario
from harness.drills.dr import DrDrill
from harness.drills.runner import RunSettings, run_drill
from harness.errors import ConfigError
from harness.evidence import Signer
from harness.sign import SigstoreSigner
from lab import Lab, LabConfig
from lab.config import new_lab_id
from lab.images import IMAGE_MODES

SCENARIO_FOLDER = Path("scenarios") / "dr"
PRIVATE_DOMAIN = frozenset({"log-rollback", "log-key-rotation"})
"""Drills that change the logs or keys of their lab's trust domain: never the user's."""


def _err() -> Console:
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


def _progress(message: str) -> None:
    _err().print(f"[dim]cihub:[/] {escape(message)}")


def register_run(drills: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `dr` to `cihub run`."""
    parser = drills.add_parser(
        "dr",
        help="a disaster-recovery drill (registry restore, log rollback) on a lab of its own",
        description="Run a DR scenario (scenarios/dr/NAME.yaml, or --scenario FILE) on a lab "
        "brought up for it: registry-restore destroys and restores the registry storage and "
        "replays every digest on record (RPO, RTO); log-rollback restores stale logs (on a "
        "private trust domain) and expects the monitors to detect it. Exit 0: as expected; "
        "1: not as expected; 2: bad input or infrastructure; 130: cancelled.",
    )
    parser.add_argument("name", nargs="?", metavar="NAME", help=f"a scenario in {SCENARIO_FOLDER}")
    parser.add_argument("--scenario", type=Path, metavar="FILE", help="a DR scenario file")
    parser.add_argument("--evidence-dir", type=Path, default=Path("evidence"), metavar="DIR")
    parser.add_argument("--images", choices=IMAGE_MODES, default="offline")
    parser.add_argument("--sign", default="keyless", metavar="keyless|key:PATH", help=SIGN_HELP)
    parser.add_argument(
        "--lab", metavar="ID", help="log-rollback: the running lab that signs the evidence"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.set_defaults(handler=_dr)


def scenario_from_args(args: argparse.Namespace) -> DrScenario:
    """The scenario NAME or --scenario names.

    Raises:
        ConfigError: neither or both given, no such scenario, or the file is invalid.
    """
    if (args.name is None) == (args.scenario is None):
        raise ConfigError("name a DR scenario: NAME (in scenarios/dr/) or --scenario FILE")
    if args.scenario is not None:
        return load_scenario(args.scenario)
    path = SCENARIO_FOLDER / f"{args.name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in SCENARIO_FOLDER.glob("*.yaml"))
        raise ConfigError(
            f"{path}: no such DR scenario (known: {', '.join(known) or 'none here'}; "
            "or give --scenario FILE)"
        )
    return load_scenario(path)


@contextlib.contextmanager
def _drill_lab(scenario: DrScenario, args: argparse.Namespace) -> Iterator[Lab]:
    with contextlib.ExitStack() as stack:
        private: Path | None = None
        if scenario.drill in PRIVATE_DOMAIN:
            private = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cihub-dr-")))
        config = LabConfig(
            lab_id=new_lab_id("dr"),
            evidence_dir=args.evidence_dir,
            images=args.images,
            trust_domain=private / "trust-domain" if private else None,
        )
        _progress(f"bringing up lab {config.lab_id} for the drill")
        yield stack.enter_context(Lab(config))


def _dr(args: argparse.Namespace) -> int:
    scenario = scenario_from_args(args)
    spec = SignSpec.parse(args.sign)
    evidence_dir: Path = args.evidence_dir
    with _drill_lab(scenario, args) as lab:

        def keyless() -> contextlib.AbstractContextManager[Signer]:
            if scenario.drill in PRIVATE_DOMAIN:  # its lab's trust root is a throwaway
                return caller_lab_signer(
                    lab_id=args.lab,
                    evidence_dir=evidence_dir,
                    images=args.images,
                    progress=_progress,
                )
            assert lab.endpoints.trust_config is not None
            return contextlib.nullcontext(
                SigstoreSigner(
                    lab.endpoints.trust_config,
                    lab.mint_token,
                    lab.config.identity,
                    lab.config.issuer,
                )
            )

        drill = DrDrill(scenario, lab, evidence_dir)
        with signer_for(spec, keyless) as signer:
            settings = RunSettings(evidence_dir, signer, lab=lab.facts(), progress=_progress)
            run = run_drill(drill, settings)
    if args.json:
        value = run.to_json()
        value["dr"] = run.record.get("dr")
        print(json.dumps(value, indent=2, sort_keys=True))
    else:
        for line in run.lines():
            print(line)
    return run.exit_code
