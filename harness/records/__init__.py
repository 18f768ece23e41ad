"""pipeline_run records in the standards' shapes: CDEvents pipelineRun events and OTLP traces.

`read_records` streams a pipeline_run NDJSON file, each line checked against the pipeline_run
schema; `cdevents` maps a record to pipelineRun queued/started/finished events (CDEvents
v0.5); `otel` maps it to an OTLP JSON trace (a pipeline-run span with one task span per step).
"""

from __future__ import annotations

from harness.records.reader import read_records

__all__ = ["read_records"]
