-- Chaos recovery per experiment: seconds from the fault's removal to the steady state holding
-- again (chaos.recovery_s), over the runs that measured it.
select
    chaos_experiment as experiment,
    count(*) as runs,
    count(chaos_recovery_s) as measured,
    {{ cihub_count_if("result <> 'success'") }} as failed,
    round(min(chaos_recovery_s), 3) as recovery_min_s,
    round({{ cihub_median('chaos_recovery_s') }}, 3) as recovery_median_s,
    round(max(chaos_recovery_s), 3) as recovery_max_s,
    max(started_at) as last_run
from {{ ref('stg_pipeline_runs') }}
where chaos_experiment is not null
group by chaos_experiment
