"""`cihub run chaos NAME|FILE` (one Chaos Toolkit experiment through the drill runner) and
`cihub lab vars` (the lab variables as a `chaos run --var-file` file).

Exit codes of `run chaos`: 0 the experiment met its expectation (a negative twin: its steady
state failed as it must); 1 it did not (the phases and problems are printed); 2 bad input (an
unknown experiment, a schema error, an unknown provider or a missing argument, named with the
file, activity and field) or an infrastructure error; 130 cancelled (the rollbacks were played).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from harness import _exit
from harness._internal.signing import SIGN_HELP
from harness.errors import ConfigError
from lab._internal.docker import docker_client
from lab.cleanup import list_labs
from lab.endpoints import Endpoints
from lab.errors import LabNotFound
from lab.images import IMAGE_MODES
from lab.labels import caller_owner

if TYPE_CHECKING:
    from harness.evidence import Signer

EXPERIMENT_SUFFIXES = (".json", ".yaml", ".yml")


def _err() -> Console:
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


def _progress(message: str) -> None:
    _err().print(f"[dim]cihub:[/] {escape(message)}", soft_wrap=True)


def register_run(drills: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `chaos` to `cihub run`."""
    parser = drills.add_parser(
        "chaos",
        help="run a Chaos Toolkit experiment against the lab (rollbacks always played)",
        description="Run EXPERIMENT (a name in scenarios/chaos/ or a JSON/YAML file) against "
        "the lab through the safe runner: validated first, the lab given as configuration, "
        "the method stopped at its first failed activity, rollbacks always played, the lab "
        "swept after them. The journal goes into the signed evidence bundle. Exit 0: as "
        "expected; 1: not (the phases are printed); 2: bad input or infrastructure error; "
        "130: cancelled (rollbacks played).",
    )
    parser.add_argument("experiment", metavar="NAME|FILE", help="the experiment to run")
    parser.add_argument("--lab", metavar="ID", help="the running lab (default: yours)")
    parser.add_argument("--evidence-dir", type=Path, default=Path("evidence"), metavar="DIR")
    parser.add_argument("--images", choices=IMAGE_MODES, default="offline")
    parser.add_argument("--sign", default="keyless", metavar="keyless|key:PATH", help=SIGN_HELP)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=_run_chaos)


def register_lab_vars(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `vars` to `cihub lab`."""
    parser = sub.add_parser(
        "vars",
        help="print the lab's variables for `chaos run --var-file` (JSON)",
        description="Print the running lab's endpoints as Chaos Toolkit configuration "
        '({"configuration": {...}}), for `chaos run --var-file FILE EXPERIMENT`.',
    )
    parser.add_argument("--lab", metavar="ID", help="the lab (default: your running lab)")
    parser.add_argument("-o", "--output", type=Path, metavar="FILE", help="write it here")
    parser.set_defaults(handler=_lab_vars)


def find_experiment(value: str) -> Path:
    """A file path, or a name in `./scenarios/chaos/` or the project's `scenarios/chaos/`.

    Raises:
        ConfigError: nothing of that name.
    """
    path = Path(value)
    if path.is_file():
        return path
    folders = [
        Path.cwd() / "scenarios" / "chaos",
        Path(__file__).parents[2] / "scenarios" / "chaos",
    ]
    for folder in folders:
        for suffix in ("", *EXPERIMENT_SUFFIXES):
            candidate = folder / (value + suffix)
            if candidate.is_file():
                return candidate
    raise ConfigError(f"experiment {value!r}: no such file, nor a name in scenarios/chaos/")


def _run_chaos(args: argparse.Namespace) -> int:
    # Chaos Toolkit, sigstore and the drills load only here: `cihub lab` registers this module.
    from harness._internal.lab_signer import caller_lab
    from harness._internal.signing import SignSpec, signer_for
    from harness.chaos import lab_vars, load_experiment
    from harness.drills import RunSettings, run_drill
    from harness.drills.chaos import ChaosDrill

    # Bad input is told before a lab is looked for.
    experiment = load_experiment(find_experiment(args.experiment))
    spec = SignSpec.parse(args.sign)
    evidence_dir: Path = args.evidence_dir
    with caller_lab(
        lab_id=args.lab,
        evidence_dir=evidence_dir,
        images=args.images,
        progress=_progress,
        purpose="running chaos",
    ) as access:
        endpoints = Endpoints.discover(docker_client(), access.lab_id)
        drill = ChaosDrill(experiment, lab_vars(endpoints))

        @contextlib.contextmanager
        def keyless() -> Iterator[Signer]:
            yield access.signer()

        with signer_for(spec, keyless) as signer:
            run = run_drill(drill, RunSettings(evidence_dir, signer, progress=_progress))
    if args.json:
        print(json.dumps(run.to_json(), indent=2, sort_keys=True))
    else:
        for line in run.lines():
            print(line)
    return run.exit_code


def _lab_vars(args: argparse.Namespace) -> int:
    from harness._internal.lab_signer import running_lab
    from harness.chaos.vars import var_file

    client = docker_client()
    lab_id = running_lab(list_labs(client), args.lab, caller_owner())
    if lab_id is None:
        raise LabNotFound("no lab of yours is up: `cihub lab up`, or name one with --lab")
    text = json.dumps(var_file(Endpoints.discover(client, lab_id)), indent=2, sort_keys=True)
    if args.output is not None:
        args.output.write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return _exit.SUCCESS
