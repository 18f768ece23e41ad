from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from harness.records import cdevents

Make = Callable[..., dict[str, Any]]


def test_a_finished_run_gives_queued_started_finished_all_valid(
    sample_records: list[dict[str, Any]],
) -> None:
    for record in sample_records:
        events = cdevents.events_for(record)
        assert [e["context"]["type"] for e in events] == list(cdevents.EVENT_TYPES.values())
        for event in events:
            assert cdevents.event_errors(event) == [], event


def test_the_mapping_uses_v05_names_and_the_record(record: Make) -> None:
    value = record(pipeline={"name": "nightly", "url": "https://ci.example/runs/7"})
    finished = cdevents.events_for(value)[-1]
    content = finished["subject"]["content"]
    assert content == {
        "pipelineName": "nightly",
        "uri": "https://ci.example/runs/7",
        "outcome": "success",
    }
    assert "url" not in content  # the v0.4 name
    assert finished["subject"]["id"] == value["run_id"]
    assert finished["context"]["timestamp"] == value["finished_at"]
    assert finished["context"]["source"] == "/cihub/nightly"
    assert finished["context"]["specversion"].startswith("0.5.")


def test_ids_are_derived_from_the_record_alone(record: Make) -> None:
    first, again = cdevents.events_for(record()), cdevents.events_for(record())
    assert first == again
    ids = {e["context"]["id"] for e in first}
    assert len(ids) == 3
    assert len({e["context"]["chainId"] for e in first}) == 1
    other = cdevents.events_for(record(run_id="another-run"))
    assert ids.isdisjoint(e["context"]["id"] for e in other)


@pytest.mark.parametrize(
    ("result", "outcome"),
    [
        ("success", "success"),
        ("failure", "failure"),
        ("error", "error"),
        ("timeout", "error"),
        ("cancellation", "cancel"),
    ],
)
def test_outcomes(record: Make, result: str, outcome: str) -> None:
    errors = [{"message": "first"}, {"message": "second", "type": "X"}]
    finished = cdevents.events_for(record(result=result, errors=errors))[-1]
    assert finished["subject"]["content"]["outcome"] == outcome
    assert finished["subject"]["content"]["errors"] == "first\nsecond"
    assert cdevents.event_errors(finished) == []


def test_a_skipped_run_has_no_finished_event(record: Make) -> None:
    events = cdevents.events_for(record(result="skip"))
    assert [e["context"]["type"].split(".")[3] for e in events] == ["queued", "started"]


def test_a_started_record_gives_queued_and_started(record: Make) -> None:
    events = cdevents.events_for(record(status="started"))
    assert [e["context"]["type"].split(".")[3] for e in events] == ["queued", "started"]


def test_a_hostile_pipeline_name_still_gives_valid_events(record: Make) -> None:
    name = 'a b/../"quoted" \u00e9 %zz #frag ?q'
    for event in cdevents.events_for(record(pipeline={"name": name})):
        assert cdevents.event_errors(event) == []
        assert event["subject"]["content"]["pipelineName"] == name


@pytest.mark.parametrize("url", [None, "not a url", "javascript:alert(1)", "/runs/7"])
def test_a_run_without_a_web_page_is_named_by_a_urn(record: Make, url: str | None) -> None:
    """A local run (no CI job, no pipeline URL) still gives valid events: `uri` is required
    in pipelineRun.started."""
    value = record(pipeline={"name": "p", **({"url": url} if url else {})}, run_id="r 1/x")
    del value["runner"]["ci"]
    events = cdevents.events_for(value)
    assert len(events) == 3
    for event in events:
        assert event["subject"]["content"]["uri"] == "urn:cihub:pipelinerun:r%201%2Fx"
        assert cdevents.event_errors(event) == [], event


def test_the_ci_job_url_stands_in_for_a_missing_pipeline_url(record: Make) -> None:
    content = cdevents.events_for(record())[1]["subject"]["content"]
    assert content["uri"] == "https://github.com/example/cihub/actions/runs/1"


def test_the_vendored_schemas_reject_forged_events(record: Make) -> None:
    finished = cdevents.events_for(record())[-1]
    forged = copy.deepcopy(finished)
    forged["subject"]["content"]["url"] = "https://old.example"  # v0.4 field
    assert any("url" in e.message for e in cdevents.event_errors(forged))
    forged = copy.deepcopy(finished)
    forged["subject"]["content"]["outcome"] = "skipped"
    assert cdevents.event_errors(forged)
    forged = copy.deepcopy(finished)
    del forged["context"]["id"]
    assert cdevents.event_errors(forged)
    forged = copy.deepcopy(finished)
    forged["context"]["type"] = "dev.cdevents.pipelinerun.finished.0.2.0"
    assert cdevents.event_errors(forged)
    forged = copy.deepcopy(finished)
    forged["subject"]["content"]["uri"] = "no scheme here"
    assert cdevents.event_errors(forged)
