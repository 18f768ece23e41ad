-- Flaky drills: runs of the same scenario on the same inputs (subject commit, dirty or not)
-- that found different things (verdict) or ended differently (result). A cancelled or skipped
-- run found nothing, so it neither makes nor hides flakiness.
select
    input_key,
    scenario_kind,
    scenario_name,
    max(subject_revision) as subject_revision,
    count(*) as runs,
    count(distinct verdict) as distinct_verdicts,
    string_agg(distinct verdict, ', ' order by verdict) as verdicts,
    string_agg(distinct result, ', ' order by result) as results,
    min(started_at) as first_seen,
    max(started_at) as last_seen
from {{ ref('stg_pipeline_runs') }}
where scenario_kind <> 'test'
    and result not in ('cancellation', 'skip')
group by input_key, scenario_kind, scenario_name
having count(distinct verdict) > 1 or count(distinct result) > 1
