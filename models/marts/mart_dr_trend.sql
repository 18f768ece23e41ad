-- Disaster-recovery RTO and RPO per drill and UTC day (dr.rto_s, dr.rpo.*).
select
    dr_drill || '|' || cast(run_day as {{ dbt.type_string() }}) as drill_day,
    dr_drill as drill,
    run_day,
    count(*) as runs,
    round(avg(dr_rto_s), 3) as rto_avg_s,
    round(max(dr_rto_s), 3) as rto_max_s,
    max(dr_rpo_items_lost) as rpo_items_lost_max,
    round(max(dr_rpo_seconds), 3) as rpo_seconds_max,
    {{ cihub_count_if("dr_consistent") }} as consistent_runs
from {{ ref('stg_pipeline_runs') }}
where dr_drill is not null
group by dr_drill, run_day
