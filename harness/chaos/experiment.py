"""Load and validate a Chaos Toolkit experiment before anything of it runs.

chaostoolkit-lib checks an experiment too, but stops at its first problem and names neither the
file nor, for a bad argument, the activity. `validate_experiment` walks every activity itself:
its type, name and provider; for a Python provider, that the module imports, the function exists
and the arguments bind to its signature (no required one missing, none unknown). Then chaoslib's
own `ensure_experiment_is_valid` runs, and its error is reported with the file's name.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from chaoslib.exceptions import ChaosException  # type: ignore[import-untyped]
from chaoslib.experiment import ensure_experiment_is_valid  # type: ignore[import-untyped]

from harness.errors import ConfigError

EXTENSION = "cihub"
"""The name of the experiment extension cihub reads (`{"name": "cihub", "expect": ...}`)."""
EXPECTATIONS = ("steady-state-holds", "steady-state-fails")
_ACTIVITY_TYPES = ("probe", "action")
_INJECTED = ("configuration", "secrets")
_PROVIDER_TYPES = ("python", "http", "process")


@dataclass(frozen=True)
class Experiment:
    """A validated experiment.

    Attributes:
        source: the file it came from.
        document: the experiment as Chaos Toolkit reads it (never changed by the runner).
        expect: `steady-state-holds` (default), or `steady-state-fails` for a negative twin:
            the fault is applied and verified, and the after hypothesis must NOT hold.
    """

    source: Path
    document: Mapping[str, Any] = field(hash=False)
    expect: str = "steady-state-holds"

    @property
    def title(self) -> str:
        return str(self.document.get("title") or self.source.stem)

    @property
    def name(self) -> str:
        return self.source.stem

    def copy(self) -> dict[str, Any]:
        """A deep copy to hand to chaoslib (which writes into the experiment it runs)."""
        return copy.deepcopy(dict(self.document))


def load_experiment(path: Path) -> Experiment:
    """Read and validate an experiment file (JSON or YAML).

    Raises:
        ConfigError: unreadable, not a mapping, or invalid; one line naming the file, the
            activity and the field.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the experiment ({exc})") from exc
    try:
        document = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        reason = str(exc).splitlines()[0]
        raise ConfigError(
            f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {reason}"
        ) from exc
    return validate_experiment(document, path)


def validate_experiment(document: Any, source: Path) -> Experiment:
    """Validate an experiment document read from `source`.

    Raises:
        ConfigError: see `load_experiment`.
    """
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: an experiment must be a mapping")
    for key in ("title", "description"):
        if not isinstance(document.get(key), str) or not document[key].strip():
            raise ConfigError(f"{source}: field {key}: required, a non-empty string")
    method = document.get("method")
    if not isinstance(method, list) or not method:
        raise ConfigError(f"{source}: field method: required, a non-empty list of activities")
    for where, activity in _activities(document, source):
        _check_activity(source, where, activity)
    expect = _expectation(document, source)
    try:
        ensure_experiment_is_valid(copy.deepcopy(document))
    except ChaosException as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    return Experiment(source, document, expect)


def _activities(document: Mapping[str, Any], source: Path) -> Iterator[tuple[str, Any]]:
    hypothesis = document.get("steady-state-hypothesis")
    if hypothesis is not None:
        if not isinstance(hypothesis, dict) or not isinstance(hypothesis.get("probes", []), list):
            raise ConfigError(
                f"{source}: field steady-state-hypothesis: a mapping with a list of probes"
            )
        for index, probe in enumerate(hypothesis.get("probes", [])):
            yield f"steady-state-hypothesis.probes[{index}]", probe
    for index, activity in enumerate(document["method"]):
        yield f"method[{index}]", activity
    rollbacks = document.get("rollbacks", [])
    if not isinstance(rollbacks, list):
        raise ConfigError(f"{source}: field rollbacks: a list of actions")
    for index, activity in enumerate(rollbacks):
        yield f"rollbacks[{index}]", activity


def _check_activity(source: Path, where: str, activity: Any) -> None:
    if not isinstance(activity, dict):
        raise ConfigError(f"{source}: {where}: an activity must be a mapping")
    if "ref" in activity:
        return
    name = activity.get("name")
    label = f"{where} ({name!r})" if name else where
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{source}: {where}: field name: required, a non-empty string")
    if activity.get("type") not in _ACTIVITY_TYPES:
        raise ConfigError(f"{source}: {label}: field type: must be probe or action")
    provider = activity.get("provider")
    if not isinstance(provider, dict):
        raise ConfigError(f"{source}: {label}: field provider: required, a mapping")
    kind = provider.get("type")
    if kind not in _PROVIDER_TYPES:
        raise ConfigError(
            f"{source}: {label}: field provider.type: one of {', '.join(_PROVIDER_TYPES)}"
        )
    if kind == "python":
        _check_python_provider(source, label, provider)


def _check_python_provider(source: Path, label: str, provider: Mapping[str, Any]) -> None:
    module_name, func_name = provider.get("module"), provider.get("func")
    if not isinstance(module_name, str) or not module_name:
        raise ConfigError(f"{source}: {label}: field provider.module: required")
    if not isinstance(func_name, str) or not func_name:
        raise ConfigError(f"{source}: {label}: field provider.func: required")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"{source}: {label}: field provider.module: no module {module_name!r} ({exc})"
        ) from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigError(
            f"{source}: {label}: field provider.func: {module_name} has no function {func_name!r}"
        )
    arguments = provider.get("arguments", {})
    if not isinstance(arguments, dict):
        raise ConfigError(f"{source}: {label}: field provider.arguments: must be a mapping")
    parameters = inspect.signature(func).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    for argument in arguments:
        if argument in _INJECTED:
            raise ConfigError(
                f"{source}: {label}: field provider.arguments.{argument}: given by Chaos "
                "Toolkit, not by the experiment"
            )
        if argument not in parameters and not accepts_any:
            raise ConfigError(
                f"{source}: {label}: field provider.arguments.{argument}: "
                f"{module_name}.{func_name} takes no such argument"
            )
    for pname, parameter in parameters.items():
        required = parameter.default is inspect.Parameter.empty and parameter.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        )
        if required and pname not in arguments and pname not in _INJECTED:
            raise ConfigError(
                f"{source}: {label}: field provider.arguments.{pname}: required by "
                f"{module_name}.{func_name}, missing"
            )


def _expectation(document: Mapping[str, Any], source: Path) -> str:
    extensions = document.get("extensions", [])
    if not isinstance(extensions, list):
        raise ConfigError(f"{source}: field extensions: a list")
    for index, extension in enumerate(extensions):
        if isinstance(extension, dict) and extension.get("name") == EXTENSION:
            expect = extension.get("expect", EXPECTATIONS[0])
            if expect not in EXPECTATIONS:
                raise ConfigError(
                    f"{source}: extensions[{index}].expect: one of {', '.join(EXPECTATIONS)}"
                )
            return str(expect)
    return EXPECTATIONS[0]
