"""Policy step: the Rego gate, evaluated in-process with regopy (rego-cpp).

A policy folder holds `*.rego` modules (each a package `cihub.<name>` defining `allow` and
`reasons`), an optional `data.json` (the allowlists and thresholds, under `cihub_config`) and
`tests/<name>.json`: cases of an input and the expected answer (`allow`, and a `reason` the
answer must contain). Tests are data, not `*_test.rego` files, because rego-cpp (regopy 1.5)
fails on `with input as ...` ("shape `rego-with` has no field `rego-ref`"); each case runs
through the same compiled bundle as the gate. The modules are compiled once into a regopy
bundle (`PolicySet.load`); every evaluation then only sets the input and runs the bundle, so a
drill or a benchmark evaluates many inputs against one compiled set.

Two settings regopy would otherwise leave open are enforced here:
- strict builtin errors: a failing builtin (e.g. `to_number("x")`) is an error, not a silent
  undefined that could turn a deny rule off;
- Rego v1 syntax only: regopy also accepts the pre-1.0 forms that OPA 1.x rejects, so each
  module's tokens and rule heads are checked first (`harness.steps.rego_v1`): a rule body not
  introduced by `if`, a partial set rule without `contains`, a removed built-in is refused.

Each policy returns `{allow, reasons[]}`; a policy whose `allow` is not `true` denies, and a
deny without reasons gets one naming the policy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import ConfigError
from harness.steps.rego_v1 import RegoV1Error, check_rego_v1, dotted_name_before, tokenize
from lab.errors import LabError
from lab.resources import resource_path

if TYPE_CHECKING:
    import regopy


def _regopy() -> Any:
    """regopy, imported on first use: its allocator (snmalloc) reserves so much address space
    that merely importing it aborts a process with an RLIMIT_AS cap (verify runs under one)."""
    import regopy

    return regopy


def _shared() -> Any:
    from regopy import rego_shared

    return rego_shared


_logger = logging.getLogger(__name__)

PACKAGE_ROOT = "cihub"
QUERY = f"result := data.{PACKAGE_ROOT}"
DATA_FILE = "data.json"
_PACKAGE = re.compile(r"^package\s+([\w.]+)\s*$", re.MULTILINE)
_COMMENT = re.compile(r"#[^\n]*")


class PolicyError(ConfigError):
    """A policy that cannot be used: a syntax error, an unknown builtin, old syntax. Exit 2."""


@dataclass(frozen=True)
class PolicyDecision:
    """One policy's answer."""

    name: str
    allow: bool
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"allow": self.allow, "reasons": list(self.reasons)}


@dataclass(frozen=True)
class GateDecision:
    """Every policy's answer; the gate allows only when each one does."""

    decisions: tuple[PolicyDecision, ...]
    input_digest: str
    policy_digest: str

    @property
    def allow(self) -> bool:
        return bool(self.decisions) and all(d.allow for d in self.decisions)

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(r for d in self.decisions for r in d.reasons)

    def to_json(self) -> dict[str, Any]:
        return {
            "allow": self.allow,
            "reasons": list(self.reasons),
            "policies": {d.name: d.to_json() for d in self.decisions},
            "input_digest": self.input_digest,
            "policy_digest": self.policy_digest,
        }


@dataclass(frozen=True)
class PolicyTestResult:
    """The outcome of one `test_*` rule."""

    module: str
    name: str
    passed: bool
    message: str = ""


def default_policy_dir() -> Path:
    """The project's `policies/` folder."""
    try:
        return resource_path("policies")
    except LabError as exc:
        raise ConfigError(str(exc)) from exc


class PolicySet:
    """The policies of one folder, compiled once, evaluated against many inputs.

    Args:
        modules: module file name to source (tests excluded).
        data: the base document (`cihub_config` allowlists and thresholds).

    Example:
        >>> policies = PolicySet.load(default_policy_dir())
        >>> policies.evaluate(gate_input).allow  # doctest: +SKIP
    """

    def __init__(self, modules: Mapping[str, str], data: Mapping[str, Any]) -> None:
        if not modules:
            raise PolicyError("policy: no *.rego policies to evaluate")
        self.modules = dict(sorted(modules.items()))
        self.data = dict(data)
        self.names = tuple(self._package_name(n, s) for n, s in self.modules.items())
        self._build = self._interpreter(self.modules)
        try:
            self._probe(self._build, "{}", "the policies")
        except PolicyError as exc:
            # rego-cpp names no file for a missing function: find the call in the sources.
            missing = re.search(r"Function not found: ([\w.]+)", str(exc))
            where = _locate_call(self.modules, missing[1]) if missing else None
            if where is None:
                raise
            raise PolicyError(f"{where}: {exc}") from exc
        self._bundle = self._build.build(QUERY)
        if not self._bundle.ok():
            raise PolicyError("policy: the policies did not compile into a bundle")
        self._run = _new_interpreter()
        digest = hashlib.sha256()
        for name, source in self.modules.items():
            digest.update(f"{name}\0{source}\0".encode())
        digest.update(json.dumps(self.data, sort_keys=True).encode())
        self.digest = "sha256:" + digest.hexdigest()

    @classmethod
    def load(cls, folder: Path) -> PolicySet:
        """Read `folder/*.rego` (not the tests) and `folder/data.json`.

        Raises:
            PolicyError: a module fails to parse, uses old syntax or an unknown builtin.
            ConfigError: the folder or data.json cannot be read.
        """
        return cls(read_modules(folder), read_data(folder))

    def evaluate(self, gate_input: Mapping[str, Any]) -> GateDecision:
        """Run every policy on `gate_input`.

        Raises:
            PolicyError: a builtin failed (strict errors) or the result is not `{allow, reasons}`.
        """
        text = json.dumps(gate_input, sort_keys=True)
        try:
            # An in-memory input (no JSON parse in rego-cpp): about twice as fast.
            self._run.set_input(_regopy().Input(json.loads(text)))
        except (_regopy().RegoError, TypeError, ValueError) as exc:
            raise PolicyError(f"policy: the gate input is not usable: {exc}") from exc
        out = _query(self._run, lambda impl: _shared().rego_bundle_query(impl, self._bundle._impl))
        if out is None:
            # The bundle's error says only `<error>`: ask the interpreter for the message.
            self._probe(self._build, text, "the gate input")
            raise PolicyError("policy: evaluation failed")
        result = out.get("bindings", {}).get("result", {})
        decisions = tuple(self._decision(name, result) for name in self.names)
        input_digest = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
        return GateDecision(decisions, input_digest, self.digest)

    def _decision(self, name: str, result: Mapping[str, Any]) -> PolicyDecision:
        value: Any = result
        for part in name.split("."):
            value = value.get(part, {}) if isinstance(value, Mapping) else {}
        allow = value.get("allow") is True if isinstance(value, Mapping) else False
        raw = value.get("reasons", []) if isinstance(value, Mapping) else []
        if not isinstance(raw, list) or not all(isinstance(r, str) for r in raw):
            raise PolicyError(f"policy {name}: `reasons` must be a set of strings")
        reasons = tuple(sorted(raw))
        if not allow and not reasons:
            reasons = (f"{name}: denied (allow is not true, no reason given)",)
        return PolicyDecision(name, allow, reasons)

    def _interpreter(self, modules: Mapping[str, str]) -> regopy.Interpreter:
        interp = _new_interpreter()
        for name, source in modules.items():
            # regopy's parser first: a syntax error is reported in its words.
            try:
                interp.add_module(name, source)
            except _regopy().RegoError as exc:
                raise PolicyError(f"{name}: policy does not parse: {_rego_message(exc)}") from exc
            try:
                check_rego_v1(source, name)
            except RegoV1Error as exc:
                raise PolicyError(str(exc)) from exc
        try:
            interp.add_data(self.data)
        except _regopy().RegoError as exc:
            raise PolicyError(f"{DATA_FILE}: not usable as policy data: {exc}") from exc
        return interp

    @staticmethod
    def _probe(interp: regopy.Interpreter, input_text: str, what: str) -> None:
        interp.set_input_term(input_text)
        impl = _shared().rego_query(interp._impl, f"data.{PACKAGE_ROOT}")
        try:
            ok = _shared().rego_output_ok(impl)
            text = (
                _shared().rego_output_string(impl) if ok else _shared().rego_get_error(interp._impl)
            )
        finally:
            _shared().rego_free_output(impl)
        if not ok or text.lstrip().startswith("(error"):
            raise PolicyError(f"policy: evaluating {what} failed: {_sexpr_message(text)}")

    @staticmethod
    def _package_name(module: str, source: str) -> str:
        found = _PACKAGE.search(_COMMENT.sub("", source))
        if found is None:
            raise PolicyError(f"{module}: policy has no package line")
        package = found[1]
        if not package.startswith(PACKAGE_ROOT + ".") or package.count(".") != 1:
            raise PolicyError(f"{module}: package {package}: must be {PACKAGE_ROOT}.<name>")
        return package.removeprefix(PACKAGE_ROOT + ".")


def read_modules(folder: Path) -> dict[str, str]:
    """The `*.rego` sources of `folder`, keyed by file name.

    Raises:
        ConfigError: the folder is missing or a file cannot be read.
    """
    if not folder.is_dir():
        raise ConfigError(f"{folder}: policy folder does not exist")
    modules: dict[str, str] = {}
    for path in sorted(folder.glob("*.rego")):
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the policy") from exc
        modules[path.name] = source
    return modules


def read_data(folder: Path) -> dict[str, Any]:
    """`folder/data.json`, or `{}`.

    Raises:
        ConfigError: the file is not a JSON object.
    """
    path = folder / DATA_FILE
    if not path.exists():
        return {}
    try:
        value = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: must be a JSON object")
    return value


def run_policy_tests(folder: Path) -> tuple[PolicyTestResult, ...]:
    """Run the cases of `folder/tests/*.json` against the folder's compiled policies.

    A case passes when its policy's `allow` equals the case's `allow` and, when the case names
    a `reason`, one of the policy's reasons contains it.

    Raises:
        PolicyError, ConfigError: as `PolicySet.load`; a test file that is not a list of cases.
    """
    policies = PolicySet.load(folder)
    results: list[PolicyTestResult] = []
    for path in sorted((folder / "tests").glob("*.json")):
        for name, policy, case in _cases(path):
            if policy not in policies.names:
                raise ConfigError(f"{path}: policy {policy!r} is not in {folder}")
            decision = {d.name: d for d in policies.evaluate(case["input"]).decisions}[policy]
            problems = []
            if decision.allow != case["allow"]:
                problems.append(f"allow is {str(decision.allow).lower()}")
            reason = case.get("reason")
            if reason and not any(reason in r for r in decision.reasons):
                problems.append(f"no reason contains {reason!r}")
            message = "; ".join(problems)
            if problems and decision.reasons:
                message += f" (reasons: {'; '.join(decision.reasons)})"
            results.append(PolicyTestResult(path.name, name, not problems, message))
    return tuple(results)


def _cases(path: Path) -> list[tuple[str, str, dict[str, Any]]]:
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("cases"), list):
        raise ConfigError(f"{path}: $.cases: a list of test cases is required")
    policy = str(doc.get("policy", path.stem))
    out = []
    for index, case in enumerate(doc["cases"]):
        if (
            not isinstance(case, dict)
            or not isinstance(case.get("input"), dict)
            or not isinstance(case.get("allow"), bool)
        ):
            raise ConfigError(f"{path}: $.cases[{index}]: needs an object input and a bool allow")
        out.append((str(case.get("name", index)), str(case.get("policy", policy)), case))
    return out


def _locate_call(modules: Mapping[str, str], name: str) -> str | None:
    """`<module>:<line>` of the first call of `name` in `modules`, if any."""
    for module, source in modules.items():
        try:
            tokens = tokenize(source, module)
        except RegoV1Error:
            continue
        for index, token in enumerate(tokens[1:], start=1):
            if token.text == "(" and dotted_name_before(tokens, index) == name:
                return f"{module}:{token.line}"
    return None


def _new_interpreter() -> regopy.Interpreter:
    interp = _regopy().Interpreter()
    interp.strict_built_in_errors = True
    return interp


def _query(interp: regopy.Interpreter, run: Any) -> dict[str, Any] | None:
    """Run a low-level query; its JSON result, `{}` when undefined, None on an error."""
    impl = run(interp._impl)
    try:
        # regopy reads a failed output's string from freed memory: only read it when ok.
        if not _shared().rego_output_ok(impl):
            return None
        text = _shared().rego_output_string(impl)
    finally:
        _shared().rego_free_output(impl)
    if text.lstrip().startswith("(error"):
        return None
    if text.strip() == "undefined":
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if isinstance(value, list):
        value = value[0] if value else {}
    return value if isinstance(value, dict) else None


def _sexpr_message(text: str) -> str:
    found = re.search(r"\(errormsg \d+:([^\n)]*)", text)
    return found[1].strip() if found else text.strip().splitlines()[0] if text.strip() else "error"


def _rego_message(exc: BaseException) -> str:
    text = str(exc)
    found = re.search(r"\(error \d+:([^|\s]+)\|(\d+)\|\d+\s*\(errormsg \d+:([^\n)]*)", text)
    return found[3].strip() if found else text.strip().splitlines()[0]


def decisions_document(gate: GateDecision, policy_dir: Sequence[str] = ()) -> dict[str, Any]:
    """`policy/decisions.json`: every policy's answer and what they were asked."""
    return {**gate.to_json(), **({"policy_dir": list(policy_dir)} if policy_dir else {})}
