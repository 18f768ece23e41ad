"""pipeline_run records as OTLP JSON traces, built with the OpenTelemetry SDK.

Each record becomes one trace: a SERVER span for the pipeline run (`RUN <pipeline>`) and one
child span per step, with the OpenTelemetry CI/CD and VCS semantic conventions' attribute
names and values (`cicd.pipeline.*`, `cicd.pipeline.task.*`, `vcs.*`). Trace and span ids are
derived from the run id, so the same record always gives the same trace. The output is OTLP/JSON
(an `ExportTraceServiceRequest` per line, ids in hex, enums as integers), as a collector's
file exporter writes it; `parse_otlp_json` reads a line back into the protobuf message.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.semconv._incubating.attributes import cicd_attributes as cicd
from opentelemetry.semconv._incubating.attributes import vcs_attributes as vcs
from opentelemetry.semconv.attributes import error_attributes, service_attributes
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

from harness.errors import ConfigError
from harness.records.reader import run_url

SCOPE = "cihub.records.otel"
_FAILED = {"failure", "error", "timeout"}
_STATES = {"queued": "pending", "started": "executing", "finished": "finalizing"}
_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


class _RunIds(IdGenerator):
    """Ids derived from the run id: a re-export of the same record gives the same trace."""

    def __init__(self, run_id: str) -> None:
        self._seed = run_id.encode()
        self._spans = 0

    def generate_trace_id(self) -> int:
        return int.from_bytes(hashlib.sha256(b"trace:" + self._seed).digest()[:16]) or 1

    def generate_span_id(self) -> int:
        self._spans += 1
        digest = hashlib.sha256(b"span:%d:" % self._spans + self._seed).digest()
        return int.from_bytes(digest[:8]) or 1


def repository_url(value: object) -> str | None:
    """`vcs.repository.url.full`: an http(s) URL of the repository, or None.

    ssh remotes (`ssh://git@host/org/repo.git`, `git@host:org/repo.git`) become
    `https://host/org/repo`; local paths and `file:` remotes are not URLs and give None.
    """
    if not isinstance(value, str) or not value:
        return None
    parts = urlsplit(value)
    if parts.scheme in ("http", "https", "ssh", "git") and parts.hostname:
        scheme = parts.scheme if parts.scheme in ("http", "https") else "https"
        port = f":{parts.port}" if parts.port and scheme == parts.scheme else ""
        path = parts.path
    elif not parts.scheme and "@" in value.split(":", 1)[0] and ":" in value:
        host, path = value.split("@", 1)[1].split(":", 1)  # scp-like: git@host:org/repo.git
        if not host or "/" in host:
            return None
        scheme, port, path = "https", "", "/" + path.lstrip("/")
        parts = urlsplit(f"https://{host}")
    else:
        return None
    path = path.removesuffix(".git").rstrip("/")
    if not path:
        return None
    return urlunsplit((scheme, f"{parts.hostname}{port}", path, "", ""))


def _nanos(text: str) -> int:
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(stamp.timestamp() * 1_000_000) * 1000


@functools.cache
def _base_resource() -> Resource:
    """The SDK's own resource (telemetry.sdk.*, OTEL_RESOURCE_ATTRIBUTES), made once: its
    detectors run on threads, which costs more than the rest of a record's trace."""
    return Resource.create()


def _instance(record: Mapping[str, Any]) -> str:
    runner = record["runner"]
    if runner.get("host_name") and runner.get("pid") is not None:
        return f"{runner['host_name']}:{runner['pid']}"
    return str(record["run_id"])


def _run_attributes(record: Mapping[str, Any]) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        cicd.CICD_PIPELINE_NAME: record["pipeline"]["name"],
        cicd.CICD_PIPELINE_RUN_ID: record["run_id"],
        cicd.CICD_PIPELINE_ACTION_NAME: cicd.CicdPipelineActionNameValues.RUN.value,
        cicd.CICD_PIPELINE_RESULT: record["result"],
        cicd.CICD_PIPELINE_RUN_STATE: _STATES[record["status"]],
        "cihub.scenario.name": record["scenario"]["name"],
        "cihub.scenario.kind": record["scenario"]["kind"],
        "cihub.evidence.bundle_path": record["evidence"]["bundle_path"],
        "cihub.evidence.complete": record["evidence"]["complete"],
    }
    url = run_url(record)
    if url:
        attrs[cicd.CICD_PIPELINE_RUN_URL_FULL] = url
    if record["evidence"].get("manifest_digest"):
        attrs["cihub.evidence.manifest_digest"] = record["evidence"]["manifest_digest"]
    if record["runner"].get("worker_id"):
        attrs[cicd.CICD_WORKER_ID] = record["runner"]["worker_id"]
    facts = record.get("subject", {}).get("vcs", {})
    url = repository_url(facts.get("repository_url"))
    if url:
        attrs[vcs.VCS_REPOSITORY_URL_FULL] = url
    for key, name in (
        ("revision", vcs.VCS_REF_HEAD_REVISION),
        ("ref_name", vcs.VCS_REF_HEAD_NAME),
        ("ref_type", vcs.VCS_REF_HEAD_TYPE),
    ):
        if facts.get(key):
            attrs[name] = facts[key]
    errors = record.get("errors") or []
    if record["result"] in _FAILED:
        # Conditionally required for failure and error: the first error's class, else the result.
        attrs[error_attributes.ERROR_TYPE] = (errors[0].get("type") if errors else None) or record[
            "result"
        ]
    return attrs


def _status(result: str, errors: Sequence[Mapping[str, Any]]) -> Status:
    if result in _FAILED:
        message = str(errors[0].get("message", "")) if errors else ""
        return Status(StatusCode.ERROR, message[:1000] or result)
    return Status(StatusCode.UNSET)


def spans_for(record: Mapping[str, Any]) -> tuple[ReadableSpan, ...]:
    """The finished SDK spans of one record: the pipeline run first, then its steps in order.

    A step with `started_at` starts then; one without starts when the previous step ended.
    """
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=_base_resource().merge(
            Resource(
                {
                    service_attributes.SERVICE_NAME: "cihub",
                    service_attributes.SERVICE_VERSION: record["runner"].get("cihub_version", ""),
                    # Resource.create adds a random one: a re-export must give the same trace.
                    service_attributes.SERVICE_INSTANCE_ID: _instance(record),
                }
            )
        ),
        id_generator=_RunIds(str(record["run_id"])),
        shutdown_on_exit=False,
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer(SCOPE)
    start, end = _nanos(record["started_at"]), _nanos(record["finished_at"])
    run = tracer.start_span(
        f"RUN {record['pipeline']['name']}",
        kind=SpanKind.SERVER,
        attributes=_run_attributes(record),
        start_time=start,
    )
    run.set_status(_status(record["result"], record.get("errors") or []))
    context = set_span_in_context(run)
    cursor = start
    for index, step in enumerate(record["steps"]):
        step_start = _nanos(step["started_at"]) if step.get("started_at") else cursor
        step_end = step_start + int(float(step["duration_s"]) * 1e9)
        cursor = step_end
        attrs: dict[str, Any] = {
            cicd.CICD_PIPELINE_TASK_NAME: step["name"],
            cicd.CICD_PIPELINE_TASK_RUN_ID: f"{record['run_id']}/{index}",
            cicd.CICD_PIPELINE_TASK_RUN_RESULT: step["result"],
        }
        if step["result"] in _FAILED:
            attrs[error_attributes.ERROR_TYPE] = step["result"]
        span = tracer.start_span(
            step["name"], context=context, attributes=attrs, start_time=step_start
        )
        if step["result"] in _FAILED:
            span.set_status(Status(StatusCode.ERROR, str(step.get("detail", ""))[:1000] or None))
        span.end(end_time=max(step_end, step_start))
    run.end(end_time=max(end, start))
    provider.shutdown()
    # The run ends last but reads best first: parents before children, then by start.
    return tuple(
        sorted(exporter.get_finished_spans(), key=lambda s: (s.parent is not None, s.start_time))
    )


def otlp_json(record: Mapping[str, Any]) -> str:
    """One line of OTLP/JSON: the `ExportTraceServiceRequest` of one record's trace."""
    message = encode_spans(spans_for(record))
    value = json_format.MessageToDict(message, use_integers_for_enums=True)
    # OTLP/JSON departs from protobuf's JSON mapping here: ids are hex, not base64.
    for resource_spans in value.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for key in _ID_FIELDS:
                    if key in span:
                        span[key] = _b64_to_hex(span[key])
    return json.dumps(value, separators=(",", ":"))


def _b64_to_hex(text: str) -> str:
    return base64.b64decode(text).hex()


def parse_otlp_json(line: str | bytes) -> ExportTraceServiceRequest:
    """Parse one OTLP/JSON line into an `ExportTraceServiceRequest` (ids in hex, as written).

    Raises:
        ConfigError: not OTLP/JSON trace data, or an id of the wrong length.
    """
    try:
        value = json.loads(line)
        for resource_spans in value.get("resourceSpans", []):
            for scope_spans in resource_spans.get("scopeSpans", []):
                for span in scope_spans.get("spans", []):
                    for key, size in zip(_ID_FIELDS, (16, 8, 8), strict=True):
                        if key in span:
                            raw = bytes.fromhex(span[key])
                            if len(raw) != size:
                                raise ValueError(f"{key} is {len(raw)} bytes, not {size}")
                            span[key] = base64.b64encode(raw).decode()
        return json_format.ParseDict(value, ExportTraceServiceRequest())
    except (ValueError, TypeError, AttributeError, json_format.ParseError) as exc:
        raise ConfigError(f"not an OTLP/JSON trace: {exc}") from exc
