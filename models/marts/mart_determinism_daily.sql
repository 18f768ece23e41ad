-- Determinism rate per subject (the dual-build scenario) and UTC day: reproducible runs over
-- runs that reached a verdict; build failures are counted but judge nothing.
select
    scenario_name || '|' || cast(run_day as {{ dbt.type_string() }}) as subject_day,
    scenario_name as subject,
    run_day,
    count(*) as runs,
    {{ cihub_count_if("determinism_verdict = 'reproducible'") }} as reproducible,
    {{ cihub_count_if("determinism_verdict = 'not-reproducible'") }} as not_reproducible,
    {{ cihub_count_if("determinism_verdict = 'build-failed'") }} as build_failed,
    round(
        {{ cihub_count_if("determinism_verdict = 'reproducible'") }}
        / nullif({{ cihub_count_if("determinism_verdict in ('reproducible', 'not-reproducible')") }}, 0),
        4
    ) as determinism_rate
from {{ ref('stg_pipeline_runs') }}
where determinism_verdict is not null
group by scenario_name, run_day
