-- Where a kind of drill spends its time: each step's share of all step seconds of that kind.
with per_step as (
    select
        scenario_kind,
        step_name,
        count(*) as runs,
        sum(duration_s) as total_s
    from {{ ref('stg_steps') }}
    group by scenario_kind, step_name
)

select
    scenario_kind || '|' || step_name as kind_step,
    scenario_kind,
    step_name,
    runs,
    round(total_s, 3) as total_s,
    round(total_s / runs, 3) as avg_s,
    -- a kind whose steps all took 0 s has no shares to speak of: 0, not null
    coalesce(round(total_s / nullif(sum(total_s) over (partition by scenario_kind), 0), 4), 0)
        as share
from per_step
