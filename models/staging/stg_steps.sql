-- One row per step of a run: steps[].name, result and duration_s, in order.
with steps as (
    {{ cihub_unnest_steps(ref('stg_pipeline_runs')) }}
)

select
    run_id || '#' || cast(step_index as {{ dbt.type_string() }}) as step_id,
    run_id,
    scenario_kind,
    run_day,
    step_index,
    step.name as step_name,
    step.result as step_result,
    step.duration_s as duration_s
from steps
