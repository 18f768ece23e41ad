"""pipeline_run records: build one per drill run, validate it, append it to NDJSON.

`append_record` validates against `schema/pipeline_run.v1.4.json` before writing, then appends
the record as one whole line to `<evidence-dir>/pipeline_run.ndjson` under a file lock, with
flush and fsync, so pytest-xdist workers can append at the same time without tearing lines.
`validate_ndjson` checks a file line by line in constant memory and reports each invalid line
by number with the JSON path of the error.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import filelock

from harness._internal.schemas import SchemaError, SchemaValidator, validator_for
from harness.errors import ConfigError, InfraError
from harness.evidence.bundle import EvidenceBundle, FinalizedBundle
from harness.evidence.manifest import StepEntry, StepOutcome

try:
    import orjson

    _loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - orjson is optional: it only makes parsing faster
    _loads = json.loads

SCHEMA_FILE = "pipeline_run.v1.4.json"
SCHEMA_VERSION = "1.4"
NDJSON_NAME = "pipeline_run.ndjson"
LOCK_TIMEOUT_S = 60.0

ScenarioKind = Literal["dual-build", "release", "chaos", "dr", "test"]
Status = Literal["queued", "started", "finished"]

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def validator() -> SchemaValidator:
    """The (cached) validator of the current pipeline_run schema."""
    return validator_for(SCHEMA_FILE)


def _rfc3339(value: datetime | str) -> str:
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ConfigError(f"{value!r}: timestamps must be timezone-aware")
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def runner_facts(worker_id: str | None = None) -> dict[str, Any]:
    """Facts about this machine and process (OTel host.*, os.type, process.*, cicd.worker.id)."""
    facts: dict[str, Any] = {
        "host_name": socket.gethostname(),
        "os_type": platform.system().lower() or "unknown",
        "host_arch": _ARCH.get(platform.machine().lower(), platform.machine().lower()),
        "python_version": platform.python_version(),
        "pid": os.getpid(),
        "worker_id": worker_id or os.environ.get("PYTEST_XDIST_WORKER") or "main",
    }
    with contextlib.suppress(metadata.PackageNotFoundError):
        facts["cihub_version"] = metadata.version("cihub")
    ci = _ci_facts(os.environ)
    if ci:
        facts["ci"] = ci
    return facts


def _ci_facts(env: Mapping[str, str]) -> dict[str, str]:
    if env.get("GITHUB_ACTIONS") == "true":
        server, repo, run = (
            env.get("GITHUB_SERVER_URL"),
            env.get("GITHUB_REPOSITORY"),
            env.get("GITHUB_RUN_ID"),
        )
        url = f"{server}/{repo}/actions/runs/{run}" if server and repo and run else ""
        return {"provider": "github", **({"job_url": url} if url else {})}
    if env.get("GITLAB_CI"):
        return {
            "provider": "gitlab",
            **({"job_url": env["CI_JOB_URL"]} if env.get("CI_JOB_URL") else {}),
        }
    if env.get("JENKINS_URL"):
        return {
            "provider": "jenkins",
            **({"job_url": env["BUILD_URL"]} if env.get("BUILD_URL") else {}),
        }
    if env.get("CI"):
        return {"provider": "ci"}
    return {}


def _strip_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


def vcs_facts(path: Path) -> dict[str, Any] | None:
    """Revision, ref and remote of the git work tree at `path` (OTel vcs.*), or None.

    `CIHUB_VCS_REVISION` and `CIHUB_VCS_REF` override what git says (for CI checkouts in
    detached-HEAD state).
    """

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(
                ["git", *args], cwd=path, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    revision = os.environ.get("CIHUB_VCS_REVISION") or git("rev-parse", "HEAD")
    if not revision:
        return None
    facts: dict[str, Any] = {"revision": revision}
    ref = os.environ.get("CIHUB_VCS_REF") or git("rev-parse", "--abbrev-ref", "HEAD")
    if ref and ref != "HEAD":
        facts["ref_name"] = ref
        facts["ref_type"] = "tag" if ref.startswith("refs/tags/") else "branch"
    remote = git("config", "--get", "remote.origin.url")
    if remote:
        facts["repository_url"] = _strip_credentials(remote)
    status = git("status", "--porcelain", "--untracked-files=no")
    if status is not None:
        facts["dirty"] = bool(status)
    return facts


def build_record(
    *,
    run_id: str,
    pipeline: str,
    scenario: str,
    scenario_kind: ScenarioKind = "test",
    started_at: datetime | str,
    finished_at: datetime | str,
    result: StepOutcome,
    bundle_path: str,
    manifest_digest: str | None = None,
    complete: bool = False,
    status: Status = "finished",
    steps: Iterable[StepEntry | Mapping[str, Any]] = (),
    errors: Iterable[Mapping[str, str]] = (),
    vcs: Mapping[str, Any] | None = None,
    artifacts: Iterable[Mapping[str, str]] = (),
    lab: Mapping[str, Any] | None = None,
    runner: Mapping[str, Any] | None = None,
    session_id: str | None = None,
    pipeline_url: str | None = None,
    test: Mapping[str, str] | None = None,
    duration_s: float | None = None,
) -> dict[str, Any]:
    """A pipeline_run v1.4 record (not yet validated; `append_record` validates it).

    Args:
        run_id: the drill run's id (the bundle manifest's runId).
        pipeline: the pipeline (suite) name; OTel cicd.pipeline.name.
        scenario: the scenario name; scenario_kind one of the schema's kinds.
        started_at: start time (aware datetime or RFC 3339 text); finished_at likewise.
        result: success, failure, error, timeout, cancellation or skip.
        bundle_path: the evidence bundle folder (relative to the NDJSON's folder if inside).
        manifest_digest: `sha256:<hex>` of the bundle's manifest.json, once finalized.
        complete: whether the bundle was finalized complete.
        steps: per-step results; errors: `{"message", "type"?, "step"?, "phase"?}` items.
        vcs: OTel vcs.* facts (see `vcs_facts`); artifacts: `{"name", "digest"}` items.
        lab: the lab's facts (`Lab.facts()`); runner: default `runner_facts()`.

    Example:
        >>> record = build_record(run_id="r1", pipeline="cihub", scenario="dual-build",
        ...     scenario_kind="dual-build", started_at=t0, finished_at=t1, result="success",
        ...     bundle_path="r1", manifest_digest=digest, complete=True)
        >>> append_record(record, Path("evidence"))
    """
    start_text, end_text = _rfc3339(started_at), _rfc3339(finished_at)
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "pipeline": {"name": pipeline, **({"url": pipeline_url} if pipeline_url else {})},
        "scenario": {"name": scenario, "kind": scenario_kind},
        "started_at": start_text,
        "finished_at": end_text,
        "status": status,
        "result": result,
        "steps": [s.to_record_json() if isinstance(s, StepEntry) else dict(s) for s in steps],
        "evidence": {"bundle_path": bundle_path, "complete": complete},
        "runner": dict(runner) if runner is not None else runner_facts(),
    }
    if (
        duration_s is None
        and isinstance(started_at, datetime)
        and isinstance(finished_at, datetime)
    ):
        duration_s = (finished_at - started_at).total_seconds()
    if duration_s is not None:
        record["duration_s"] = round(max(0.0, duration_s), 6)
    if manifest_digest:
        record["evidence"]["manifest_digest"] = manifest_digest
    if session_id:
        record["session_id"] = session_id
    errors_list = [dict(e) for e in errors]
    if errors_list:
        record["errors"] = errors_list
    subject: dict[str, Any] = {}
    if vcs:
        subject["vcs"] = dict(vcs)
    artifact_list = [dict(a) for a in artifacts]
    if artifact_list:
        subject["artifacts"] = artifact_list
    if subject:
        record["subject"] = subject
    if lab is not None:
        record["lab"] = dict(lab)
    if test is not None:
        record["test"] = dict(test)
    return record


def record_for_bundle(
    bundle: EvidenceBundle,
    *,
    pipeline: str,
    result: StepOutcome,
    evidence_dir: Path | None = None,
    scenario_kind: ScenarioKind = "test",
    **kwargs: Any,
) -> dict[str, Any]:
    """`build_record` with run id, scenario, times, steps, artifacts and evidence taken
    from `bundle` (finalized or not). Other keyword arguments go to `build_record`."""
    predicate = bundle.predicate
    finalized: FinalizedBundle | None = bundle.finalized
    path = bundle.root
    if evidence_dir is not None:
        try:
            path = bundle.root.resolve().relative_to(evidence_dir.resolve())
        except ValueError:
            path = bundle.root.resolve()
    steps = list(predicate.steps)
    artifacts = [{"name": a.name, "digest": a.digest} for a in predicate.artifacts]
    kwargs.setdefault("started_at", predicate.started_on)
    kwargs.setdefault("finished_at", predicate.finished_on or predicate.started_on)
    return build_record(
        run_id=predicate.run_id,
        pipeline=pipeline,
        scenario=kwargs.pop("scenario", None) or predicate.scenario or bundle.name,
        scenario_kind=scenario_kind,
        result=result,
        bundle_path=str(path),
        manifest_digest=finalized.digest if finalized else None,
        complete=bool(finalized and finalized.complete),
        steps=kwargs.pop("steps", steps),
        artifacts=kwargs.pop("artifacts", artifacts),
        **kwargs,
    )


def validate_record(record: Mapping[str, Any]) -> None:
    """Check `record` against the pipeline_run schema.

    Raises:
        ConfigError: invalid; the message names the JSON path, e.g. `$.steps[0].result`.
    """
    errors = validator().errors(record)
    if errors:
        raise ConfigError(f"pipeline_run record is invalid: {errors[0]}")


def append_record(
    record: Mapping[str, Any], evidence_dir: Path, *, name: str = NDJSON_NAME
) -> Path:
    """Validate `record` and append it as one line to `<evidence_dir>/<name>`; return the path.

    The line is written under an exclusive file lock (`<name>.lock`), looping until every
    byte is written (`os.write` may write less), then fsynced. If the file's last line was
    torn by an earlier crash, a newline is written first so the new record stays on a line of
    its own. If the write fails part way (disk full, file-size limit), the file is truncated
    back to its old size, so no partial line is ever left, and the call fails.

    Raises:
        ConfigError: the record is invalid (nothing is written).
        InfraError: the lock could not be taken within `LOCK_TIMEOUT_S`, or the line could
            not be written whole (the file is left as it was).
    """
    validate_record(record)
    line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
    evidence_dir.mkdir(parents=True, exist_ok=True)
    path = evidence_dir / name
    try:
        with filelock.FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT_S):
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                prefix = b""
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    prefix = b"\n"
                _append_whole(fd, prefix + line + b"\n", size, path)
            finally:
                os.close(fd)
    except filelock.Timeout as exc:
        raise InfraError(f"{path}: could not lock it within {LOCK_TIMEOUT_S:.0f} s") from exc
    return path


def _append_whole(fd: int, data: bytes, old_size: int, path: Path) -> None:
    """Write all of `data` at the end of `fd` and fsync, or truncate back to `old_size`."""
    view = memoryview(data)
    try:
        while view:
            written = os.write(fd, view)
            if written <= 0:  # pragma: no cover - os.write raises rather than returning 0
                raise OSError(f"wrote {written} bytes")
            view = view[written:]
        os.fsync(fd)
    except OSError as exc:
        try:
            os.ftruncate(fd, old_size)
            os.fsync(fd)
        except OSError as undo:
            raise InfraError(
                f"{path}: appending a record failed ({exc}) and so did removing the partial "
                f"line ({undo}); its last line is torn"
            ) from exc
        raise InfraError(
            f"{path}: could not append the record whole ({exc.strerror or exc}); "
            "the file is unchanged"
        ) from exc


@dataclass(frozen=True)
class LineError:
    """An invalid NDJSON line."""

    line: int
    json_path: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.json_path}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "path": self.json_path, "message": self.message}


@dataclass(frozen=True)
class NdjsonReport:
    """Counts of a validated NDJSON file."""

    path: str
    lines: int
    invalid: int

    @property
    def valid(self) -> bool:
        return self.invalid == 0


_NOT_JSON = object()


def _line_errors(raw: bytes, value: object, check: SchemaValidator) -> list[SchemaError]:
    if value is _NOT_JSON:
        if not raw.strip():
            return [SchemaError("$", "empty line")]
        try:  # the stdlib parser confirms, accepts what orjson refuses, and words the error
            value = json.loads(raw)
        except ValueError as exc:
            return [SchemaError("$", f"not valid JSON: {exc}")]
    return check.errors(value)


def validate_lines(
    lines: Iterable[bytes],
    on_error: Callable[[LineError], None] | None = None,
    *,
    schema_validator: SchemaValidator | None = None,
) -> tuple[int, int]:
    """Validate NDJSON `lines` one by one; return `(lines, invalid lines)`.

    Blank lines, lines that are not JSON and records not matching the schema are invalid;
    `on_error` gets each error with its 1-based line number (a parse error's path is `$`).
    Valid lines cost one parse (orjson when installed) and one jsonschema-rs check.
    """
    check = schema_validator or validator()
    is_valid = check.fast_is_valid
    loads = _loads
    count = invalid = 0
    for count, raw in enumerate(lines, 1):
        try:
            value = loads(raw)
        except ValueError:
            value = _NOT_JSON
        if value is not _NOT_JSON and is_valid(value):
            continue
        errors = _line_errors(raw, value, check)
        if not errors:  # orjson refused it (e.g. a huge integer) but it is valid
            continue
        invalid += 1
        if on_error is not None:
            for error in errors:
                on_error(LineError(count, error.json_path, error.message))
    return count, invalid


def validate_ndjson(
    path: Path,
    on_error: Callable[[LineError], None] | None = None,
    *,
    schema_validator: SchemaValidator | None = None,
) -> NdjsonReport:
    """Validate every line of the NDJSON file `path`, streaming (constant memory).

    Args:
        path: the file.
        on_error: called with each error as it is found (a line may have several).
        schema_validator: default the pipeline_run v1.4 validator.

    Raises:
        ConfigError: the file can't be opened.

    Example:
        >>> report = validate_ndjson(Path("evidence/pipeline_run.ndjson"), print)
        >>> report.valid
        True
    """
    try:
        handle = path.open("rb", buffering=1024 * 1024)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from exc
    with handle:
        lines, invalid = validate_lines(handle, on_error, schema_validator=schema_validator)
    return NdjsonReport(str(path), lines, invalid)


def errors_summary(errors: Sequence[SchemaError]) -> str:
    """One line naming every error, for logs."""
    return "; ".join(str(e) for e in errors)
