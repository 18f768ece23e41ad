"""pipeline_run records as CDEvents v0.5 pipelineRun events (queued, started, finished).

Everything in an event is derived from the record alone, so exporting the same NDJSON twice
gives the same events: `context.id` is a name-based UUID (v5) of the source, run id and event
type; `context.source` names the pipeline (`/cihub/<pipeline>`); the three events of one run
share a `chainId`; `subject.content.uri` is the run's web page, or a URN naming the run when
it has none. The schemas are vendored in `schema/cdevents/` (see its README).
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import jsonschema
from referencing import Registry, Resource

from harness._internal.schemas import SchemaError
from harness.records.reader import run_url
from lab.resources import resource_path

SPEC_VERSION = "0.5.1"
EVENT_TYPES = {
    "queued": "dev.cdevents.pipelinerun.queued.0.3.0",
    "started": "dev.cdevents.pipelinerun.started.0.3.0",
    "finished": "dev.cdevents.pipelinerun.finished.0.3.0",
}
_SCHEMA_FILES = {
    "queued": "pipelinerunqueued.json",
    "started": "pipelinerunstarted.json",
    "finished": "pipelinerunfinished.json",
}
# pipeline_run result -> CDEvents outcome (the schema's own description of the mapping).
OUTCOMES = {
    "success": "success",
    "failure": "failure",
    "error": "error",
    "timeout": "error",
    "cancellation": "cancel",
}
_STAGES = ("queued", "started", "finished")
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://cihub.dev/cdevents")


def source_of(record: Mapping[str, Any]) -> str:
    """`context.source`: the pipeline that produced the run, as a URI reference."""
    return "/cihub/" + quote(str(record["pipeline"]["name"]), safe="")


def event_id(record: Mapping[str, Any], stage: str) -> str:
    """`context.id` of the `stage` event of `record`: the same record always gives the same id."""
    return str(uuid.uuid5(_NAMESPACE, f"{source_of(record)}#{record['run_id']}#{stage}"))


def run_uri(record: Mapping[str, Any]) -> str:
    """`subject.content.uri` (required in pipelineRun.started): the run's http(s) URL, else a
    URN naming the run (`urn:cihub:pipelinerun:<run id>`) for runs no web page shows."""
    return run_url(record) or "urn:cihub:pipelinerun:" + quote(str(record["run_id"]), safe="")


def _stages(record: Mapping[str, Any]) -> tuple[str, ...]:
    reached = _STAGES[: _STAGES.index(record["status"]) + 1]
    # CDEvents has no "skipped" outcome: a skipped run is queued and started, never finished.
    if record["result"] not in OUTCOMES:
        return tuple(s for s in reached if s != "finished")
    return reached


def events_for(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The pipelineRun events of one pipeline_run record, in order.

    A record written `finished` gives queued, started and finished events; `started` gives the
    first two. The queued and started events carry `started_at` (a record holds no separate
    queue time), the finished one `finished_at`.

    Example:
        >>> [e["context"]["type"] for e in events_for(record)]
        ['dev.cdevents.pipelinerun.queued.0.3.0', ..., 'dev.cdevents.pipelinerun.finished.0.3.0']
    """
    source = source_of(record)
    run_id = str(record["run_id"])
    chain = str(uuid.uuid5(_NAMESPACE, f"{source}#{run_id}"))
    content: dict[str, Any] = {
        "pipelineName": str(record["pipeline"]["name"]),
        "uri": run_uri(record),
    }
    custom = {
        "scenario": record["scenario"],
        "evidence": record["evidence"],
        "schema_version": record["schema_version"],
    }
    events = []
    for stage in _stages(record):
        stage_content = dict(content)
        if stage == "finished":
            stage_content["outcome"] = OUTCOMES[record["result"]]
            messages = [str(e.get("message", "")) for e in record.get("errors", ())]
            if any(messages):
                stage_content["errors"] = "\n".join(m for m in messages if m)
        events.append(
            {
                "context": {
                    "specversion": SPEC_VERSION,
                    "id": event_id(record, stage),
                    "source": source,
                    "type": EVENT_TYPES[stage],
                    "timestamp": record["finished_at" if stage == "finished" else "started_at"],
                    "chainId": chain,
                },
                "subject": {"id": run_id, "source": source, "content": stage_content},
                "customData": custom,
                "customDataContentType": "application/json",
            }
        )
    return events


@functools.cache
def _validators() -> dict[str, jsonschema.protocols.Validator]:
    folder = resource_path("schema", "cdevents")
    resources = []
    for path in sorted(folder.rglob("*.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        resources.append((schema["$id"], Resource.from_contents(schema)))
    registry: Registry[Any] = Registry().with_resources(resources)
    out: dict[str, jsonschema.protocols.Validator] = {}
    for stage, name in _SCHEMA_FILES.items():
        schema = json.loads((folder / name).read_text(encoding="utf-8"))
        out[EVENT_TYPES[stage]] = jsonschema.Draft202012Validator(
            schema, registry=registry, format_checker=jsonschema.FormatChecker()
        )
    return out


def event_errors(event: Mapping[str, Any]) -> list[SchemaError]:
    """Why `event` does not match its CDEvents v0.5 schema (chosen by `context.type`)."""
    context = event.get("context")
    kind = context.get("type") if isinstance(context, Mapping) else None
    check = _validators().get(kind) if isinstance(kind, str) else None
    if check is None:
        return [SchemaError("$.context.type", f"not a pipelineRun event type: {kind!r}")]
    found = sorted(check.iter_errors(event), key=jsonschema.exceptions.relevance, reverse=True)
    return [SchemaError(e.json_path, e.message) for e in found]
