-- Evidence completeness per UTC day and drill kind: bundles finalized complete (signed
-- manifest, every expected file), finalized but marked incomplete, or never finalized.
select
    cast(run_day as {{ dbt.type_string() }}) || '|' || scenario_kind as day_kind,
    run_day,
    scenario_kind,
    count(*) as runs,
    {{ cihub_count_if("evidence_status = 'complete'") }} as complete,
    {{ cihub_count_if("evidence_status = 'incomplete'") }} as incomplete,
    {{ cihub_count_if("evidence_status = 'unfinalized'") }} as unfinalized,
    round({{ cihub_count_if("evidence_status = 'complete'") }} / count(*), 4) as complete_rate
from {{ ref('stg_pipeline_runs') }}
group by run_day, scenario_kind
