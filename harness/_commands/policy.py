"""`cihub policy eval` and `cihub policy test`: the release gate's Rego policies, without Docker.

`eval` runs every policy of a folder (default: the project's `policies/`) on one gate input and
prints each policy's `{allow, reasons}`; exit 0 when all allow, 1 when one denies, 2 for a bad
input or a broken policy (syntax error, unknown builtin, pre-1.0 syntax). `test` runs the
folder's `tests/*.json` cases; exit 0 when all pass, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from harness import _exit
from harness.errors import ConfigError
from harness.steps.policy import PolicySet, default_policy_dir, run_policy_tests


def _err() -> Console:
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("policy", help="evaluate and test the release gate's policies")
    actions = parser.add_subparsers(dest="policy_action", metavar="ACTION", required=True)
    evaluate = actions.add_parser(
        "eval",
        help="run every policy on a gate input (JSON) and print the decisions",
        description="Exit 0: every policy allows; 1: one denies; 2: bad input or policy.",
    )
    evaluate.add_argument("--input", type=Path, required=True, metavar="FILE")
    evaluate.add_argument("--policy", type=Path, metavar="DIR", help="default: policies/")
    evaluate.add_argument("--json", action="store_true", help="print the decisions as JSON")
    evaluate.set_defaults(handler=_eval)
    test = actions.add_parser(
        "test",
        help="run the policy folder's tests/*.json cases",
        description="Exit 0: every case passes; 1: one fails; 2: bad policy or test file.",
    )
    test.add_argument("--policy", type=Path, metavar="DIR", help="default: policies/")
    test.add_argument("--json", action="store_true", help="print the results as JSON")
    test.set_defaults(handler=_test)


def _eval(args: argparse.Namespace) -> int:
    path: Path = args.input
    try:
        gate_input = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable JSON gate input ({exc})") from exc
    if not isinstance(gate_input, dict):
        raise ConfigError(f"{path}: the gate input must be a JSON object")
    folder = args.policy or default_policy_dir()
    decision = PolicySet.load(folder).evaluate(gate_input)
    if args.json:
        print(json.dumps(decision.to_json(), indent=2, sort_keys=True))
    else:
        for item in decision.decisions:
            word = "[green]allow[/]" if item.allow else "[bold red]deny[/]"
            _err().print(f"{word} {escape(item.name)}")
            for reason in item.reasons:
                _err().print(f"  - {escape(reason)}")
        verdict = "ALLOW" if decision.allow else "DENY"
        print(
            f"{verdict}: {sum(d.allow for d in decision.decisions)} of "
            f"{len(decision.decisions)} policies allow"
        )
    return _exit.SUCCESS if decision.allow else _exit.FAILED


def _test(args: argparse.Namespace) -> int:
    folder = args.policy or default_policy_dir()
    results = run_policy_tests(folder)
    failed = [r for r in results if not r.passed]
    if args.json:
        print(
            json.dumps(
                {
                    "passed": len(results) - len(failed),
                    "failed": len(failed),
                    "results": [
                        {"file": r.module, "name": r.name, "passed": r.passed, "message": r.message}
                        for r in results
                    ],
                },
                indent=2,
            )
        )
    else:
        for result in failed:
            _err().print(
                f"[bold red]FAIL[/] {escape(result.module)}: {escape(result.name)}: "
                f"{escape(result.message)}"
            )
        print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if not results:
        raise ConfigError(f"{folder}: no policy tests (tests/*.json)")
    return _exit.FAILED if failed else _exit.SUCCESS
