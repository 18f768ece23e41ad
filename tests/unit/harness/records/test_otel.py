from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from harness.errors import ConfigError
from harness.records import otel

Make = Callable[..., dict[str, Any]]


def _attrs(span: Span) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in span.attributes:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, kind) if kind else None
    return out


def _spans(record: dict[str, Any]) -> list[Span]:
    request = otel.parse_otlp_json(otel.otlp_json(record))
    assert isinstance(request, ExportTraceServiceRequest)
    return [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]


def test_one_run_span_and_a_task_span_per_step(sample_records: list[dict[str, Any]]) -> None:
    for record in sample_records:
        spans = _spans(record)
        run, tasks = spans[0], spans[1:]
        assert run.name == f"RUN {record['pipeline']['name']}"
        assert run.kind == Span.SPAN_KIND_SERVER
        assert not run.parent_span_id
        assert [t.name for t in tasks] == [s["name"] for s in record["steps"]]
        assert {t.parent_span_id for t in tasks} <= {run.span_id}
        assert {t.trace_id for t in spans} == {run.trace_id}
        assert len(run.trace_id) == 16
        assert all(len(s.span_id) == 8 for s in spans)


def test_semantic_convention_attributes(sample_records: list[dict[str, Any]]) -> None:
    failed = sample_records[1]
    spans = _spans(failed)
    run = _attrs(spans[0])
    assert run["cicd.pipeline.name"] == "cihub-nightly"
    assert run["cicd.pipeline.run.id"] == failed["run_id"]
    assert run["cicd.pipeline.result"] == "failure"
    assert run["cicd.pipeline.run.state"] == "finalizing"
    assert run["error.type"] == "StepFailed"
    assert run["vcs.repository.url.full"] == "https://github.com/example/cihub"
    assert run["vcs.ref.head.revision"] == failed["subject"]["vcs"]["revision"]
    assert run["vcs.ref.head.name"] == "main"
    assert spans[0].status.code == Status.STATUS_CODE_ERROR
    compare = _attrs(spans[2])
    assert compare["cicd.pipeline.task.name"] == "compare"
    assert compare["cicd.pipeline.task.run.result"] == "failure"
    assert spans[2].status.code == Status.STATUS_CODE_ERROR
    assert _attrs(spans[1])["cicd.pipeline.task.run.result"] == "success"


def test_times_follow_the_record(record: Make) -> None:
    value = record()
    run, first = _spans(value)[:2]
    assert run.start_time_unix_nano == 1735732800 * 10**9
    assert run.end_time_unix_nano - run.start_time_unix_nano == 200 * 10**9
    assert first.end_time_unix_nano - first.start_time_unix_nano == int(24.75 * 10**9)


def test_steps_without_start_times_follow_each_other(record: Make) -> None:
    steps = [
        {"name": "a", "result": "success", "duration_s": 1.5},
        {"name": "b", "result": "success", "duration_s": 2.0},
    ]
    run, a, b = _spans(record(steps=steps))
    assert a.start_time_unix_nano == run.start_time_unix_nano
    assert b.start_time_unix_nano == a.end_time_unix_nano


def test_the_same_record_gives_the_same_trace(record: Make) -> None:
    assert otel.otlp_json(record()) == otel.otlp_json(record())
    assert _spans(record())[0].trace_id != _spans(record(run_id="other"))[0].trace_id


def test_ids_are_hex_in_the_json(record: Make) -> None:
    value = json.loads(otel.otlp_json(record()))
    span = value["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert len(span["traceId"]) == 32 and int(span["traceId"], 16)
    assert len(span["spanId"]) == 16 and int(span["spanId"], 16)
    assert span["kind"] == 2  # enums as integers in OTLP/JSON


@pytest.mark.parametrize(
    ("remote", "url"),
    [
        ("https://github.com/org/repo.git", "https://github.com/org/repo"),
        ("http://git.example:8080/org/repo", "http://git.example:8080/org/repo"),
        ("git@github.com:org/repo.git", "https://github.com/org/repo"),
        ("ssh://git@host.example:2222/org/repo.git", "https://host.example/org/repo"),
        ("/home/me/src/repo", None),
        ("../repo", None),
        ("file:///srv/git/repo.git", None),
        ("C:\\work\\repo", None),
        ("", None),
        ("https://host.example", None),
    ],
)
def test_repository_url_is_a_url_never_a_local_path(remote: str, url: str | None) -> None:
    assert otel.repository_url(remote) == url


def test_a_local_remote_leaves_the_attribute_out(record: Make) -> None:
    value = record()
    value["subject"]["vcs"]["repository_url"] = "/srv/git/cihub.git"
    assert "vcs.repository.url.full" not in _attrs(_spans(value)[0])


@pytest.mark.parametrize(
    "line",
    [
        "not json",
        '{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "abcd"}]}]}]}',
        '{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
        '{"resourceSpans": "nope"}',
        '{"unknownField": 1}',
    ],
)
def test_parse_rejects_what_is_not_otlp_json(line: str) -> None:
    with pytest.raises(ConfigError):
        otel.parse_otlp_json(line)


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "http:no-host", "https://user:pw@ci.example/run/1", "/runs/1"]
)
def test_a_run_url_that_is_not_a_plain_http_url_is_left_out(record: Make, url: str) -> None:
    value = record(pipeline={"name": "p", "url": url})
    del value["runner"]["ci"]
    assert "cicd.pipeline.run.url.full" not in _attrs(_spans(value)[0])
