-- Activity windows of every lead as of var('as_of'): the counts per window and type, the
-- totals, first and last touch. Leads without any activity before as_of have no row.
--
-- A table brought forward from one build to the next (DuckDB): the windows of the previous
-- build at P become those of D by adding what was not counted at P (the activities of
-- [P, D) and the late arrivals loaded since) and moving the activities counted at P whose
-- window changed with the dates (a day leaving the 90-day window, a day entering the
-- 'previous week' of the trend...): the pre-hook's table of changes per lead (macro
-- window_changes_table), added to the previous windows. That reads a few days of activities
-- and the previous table, not the 90 days. It is rebuilt instead, from the activities of the windows and the per-lead
-- state of what came before them (int_lead_activity_state), when there is nothing to bring
-- forward: the first build, a new stg_activities generation (a full refresh), a load that
-- deleted rows (a replaced file, a rebuilt window), an as_of before the previous one (a
-- backfill) or more than var('windows_brought_forward_days') after it, or changed window SQL.
--
-- var('features_from_full_history') true: every aggregate straight from all the activities
-- before as_of (the reference the tests compare with, and the on-demand compile's SQL).
{%- set landing_bookkeeping = target.type == 'duckdb' %}
{#- The changes are a table of their own (made by the pre-hook): with them in the same query
    DuckDB's estimate of their rows is off by 10x, it hashes the 10M-lead side of the join
    instead, and runs out of memory at 10M leads. #}
{{ config(
    materialized='table' if landing_bookkeeping else 'ephemeral',
    pre_hook=["{{ window_changes_table() }}"] if landing_bookkeeping else [],
) }}
{%- set as_of = as_of_date() %}
{%- set full_history = var('features_from_full_history', false) %}
{%- set bookkeeping = windows_bookkeeping() %}
{%- set fingerprint = windows_fingerprint() %}
{%- set previous = brought_forward_windows(fingerprint) if bookkeeping and execute else none %}
{%- if full_history %}
{#- The state stays in the lineage (a build of +lead_features keeps it current), called
    without rendering: the compiled SQL of this mode reads only stg_activities. #}
{%- set _state = ref('int_lead_activity_state') %}
select
    a.lead_id,
    {{ activity_window_aggregates(as_of) }}
    {%- if landing_bookkeeping %},
        cast(null as date) as windows_as_of,
        cast(null as integer) as windows_batch,
        cast(null as varchar) as windows_generation,
        cast(null as varchar) as windows_fingerprint
    {%- endif %}
from {{ ref('stg_activities') }} as a
where a.occurred_at < {{ as_of }}
group by a.lead_id
{%- elif previous is none %}
-- rebuilt: the windows' activities and the state of what came before them
    with

    recent as (
        select
            a.lead_id,
            {{ activity_window_aggregates(as_of) }}
        from {{ ref('stg_activities') }} as a
        where a.occurred_at >= {{ window_start(as_of) }} and a.occurred_at < {{ as_of }}
        group by a.lead_id
    )

    select
        coalesce(recent.lead_id, state.lead_id) as lead_id,
        coalesce(state.n_activities, 0) + coalesce(recent.n_activities_total, 0) as n_activities_total,
        {{ star_except('recent', ['lead_id', 'n_activities_total', 'first_activity_at', 'last_activity_at']) }},
        coalesce(state.first_activity_at, recent.first_activity_at) as first_activity_at,
        coalesce(recent.last_activity_at, state.last_activity_at) as last_activity_at
        {%- if bookkeeping %}
            ,
            {{ windows_bookkeeping_columns(as_of, fingerprint) }}
        {%- endif %}
    from recent
    full outer join {{ ref('int_lead_activity_state') }} as state on recent.lead_id = state.lead_id
{%- else %}
-- brought forward from the windows of {{ previous['as_of'] }} (load {{ previous['batch'] }}), with the
-- changes since (the table the pre-hook made, macro window_changes_sql)
select
    coalesce(kept.lead_id, changes.lead_id) as lead_id,
    coalesce(kept.n_activities_total, 0) + coalesce(changes.n_activities_total, 0) as n_activities_total,
    {%- for counter in window_counters() %}
        coalesce(kept.{{ counter['column'] }}, 0) + coalesce(changes.{{ counter['column'] }}, 0) as {{ counter['column'] }},
    {%- endfor %}
    least(kept.first_activity_at, changes.first_activity_at) as first_activity_at,
    greatest(kept.last_activity_at, changes.last_activity_at) as last_activity_at,
    {{ windows_bookkeeping_columns(as_of, fingerprint) }}
from {{ this }} as kept
full outer join {{ window_changes_relation() }} as changes on kept.lead_id = changes.lead_id
{%- endif %}
