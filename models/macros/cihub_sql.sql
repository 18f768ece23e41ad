{#- The few places DuckDB and BigQuery SQL differ, dispatched per adapter. -#}

{% macro generate_schema_name(custom_schema_name, node) -%}
    {#- staging and marts are schemas of their own, named as they are (no target prefix). -#}
    {{ custom_schema_name if custom_schema_name is not none else target.schema }}
{%- endmacro %}

{% macro cihub_utc(column) -%}
    {{ return(adapter.dispatch('cihub_utc', 'cihub_insight')(column)) }}
{%- endmacro %}
{% macro default__cihub_utc(column) -%}
    cast({{ column }} as timestamp)
{%- endmacro %}
{% macro duckdb__cihub_utc(column) -%}
    {#- RFC 3339 with any offset, as a UTC timestamp: day buckets are UTC days. -#}
    timezone('UTC', cast({{ column }} as timestamptz))
{%- endmacro %}

{% macro cihub_unnest_steps(relation) -%}
    {{ return(adapter.dispatch('cihub_unnest_steps', 'cihub_insight')(relation)) }}
{%- endmacro %}
{% macro default__cihub_unnest_steps(relation) -%}
    select r.run_id, r.scenario_kind, r.run_day, step, step_index
    from {{ relation }} as r
    cross join unnest(r.steps) as step with offset as step_index
{%- endmacro %}
{% macro duckdb__cihub_unnest_steps(relation) -%}
    select
        run_id,
        scenario_kind,
        run_day,
        unnest(steps) as step,
        generate_subscripts(steps, 1) - 1 as step_index
    from {{ relation }}
{%- endmacro %}

{% macro cihub_median(column) -%}
    {{ return(adapter.dispatch('cihub_median', 'cihub_insight')(column)) }}
{%- endmacro %}
{% macro default__cihub_median(column) -%}
    approx_quantiles({{ column }}, 2)[offset(1)]
{%- endmacro %}
{% macro duckdb__cihub_median(column) -%}
    quantile_cont({{ column }}, 0.5)
{%- endmacro %}

{% macro cihub_count_if(condition) -%}
    sum(case when {{ condition }} then 1 else 0 end)
{%- endmacro %}
