-- One row per drill run: the record's fields the marts use, flattened and typed.
-- A run id seen twice (the same NDJSON given twice, a copied history) counts once: the last
-- record written wins.
with source as (
    select * from {{ source('cihub', 'pipeline_run') }}
),

typed as (
    select
        run_id,
        schema_version,
        session_id,
        pipeline.name as pipeline_name,
        scenario.name as scenario_name,
        scenario.kind as scenario_kind,
        {{ cihub_utc('started_at') }} as started_at,
        {{ cihub_utc('finished_at') }} as finished_at,
        duration_s,
        status,
        result,
        -- what the drill found: the expectation's observed finding, else the determinism
        -- verdict (v1.2 records have no expectation), else the result
        coalesce(expectation.observed, determinism.verdict, result) as verdict,
        expectation.met as expectation_met,
        subject.vcs.revision as subject_revision,
        coalesce(subject.vcs.dirty, false) as subject_dirty,
        determinism.verdict as determinism_verdict,
        array_to_string(determinism.culprits, ',') as determinism_culprits,
        evidence.complete as evidence_complete,
        evidence.manifest_digest as evidence_manifest_digest,
        chaos.experiment as chaos_experiment,
        chaos.recovery_s as chaos_recovery_s,
        chaos.fault_verified as chaos_fault_verified,
        dr.drill as dr_drill,
        dr.target as dr_target,
        dr.rto_s as dr_rto_s,
        dr.rpo.items_lost as dr_rpo_items_lost,
        dr.rpo.seconds_since_backup as dr_rpo_seconds,
        dr.consistent as dr_consistent,
        steps
    from source
    where true
    qualify row_number() over (partition by run_id order by finished_at desc) = 1
)

select
    *,
    cast(started_at as date) as run_day,
    -- the inputs a rerun must share to be the same drill: the scenario and the subject's commit
    scenario_kind || ':' || scenario_name || '@'
        || coalesce(subject_revision, 'unknown')
        || case when subject_dirty then '+dirty' else '' end as input_key,
    -- the runner signs the manifest when it finalizes a bundle; its digest is on the record
    case
        when evidence_manifest_digest is null then 'unfinalized'
        when evidence_complete then 'complete'
        else 'incomplete'
    end as evidence_status
from typed
