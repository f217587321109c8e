-- Activity windows of every lead as of var('as_of'): the counts per window and type, the
-- totals, first and last touch. Leads without any activity before as_of have no row.
--
-- A table brought forward from one build to the next (DuckDB): the windows of the previous
-- build at P become those of D by adding what was not counted at P (the activities of
-- [P, D) and the late arrivals loaded since) and moving the activities counted at P whose
-- window changed with the dates (a day leaving the 90-day window, a day entering the
-- 'previous week' of the trend...). That reads a few days of activities and the 10M-row table,
-- not the 90 days. It is rebuilt instead, from the activities of the windows and the per-lead
-- state of what came before them (int_lead_activity_state), when there is nothing to bring
-- forward: the first build, a new stg_activities generation (a full refresh), a load that
-- deleted rows (a replaced file, a rebuilt window), an as_of before the previous one (a
-- backfill) or more than var('windows_brought_forward_days') after it, or changed window SQL.
--
-- var('features_from_full_history') true: every aggregate straight from all the activities
-- before as_of (the reference the tests compare with, and the on-demand compile's SQL).
{%- set landing_bookkeeping = target.type == 'duckdb' %}
{{ config(materialized='table' if landing_bookkeeping else 'ephemeral') }}
{%- set as_of = as_of_date() %}
{%- set full_history = var('features_from_full_history', false) %}
{%- set bookkeeping = landing_bookkeeping and not full_history and not var('activities_from_source', false) %}
{%- set fingerprint = local_md5(activity_window_aggregates('d')) %}
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
{%- set since = "timestamp '" ~ previous['as_of'] ~ "'" %}
{%- set counted = "a.landing_batch <= " ~ previous['batch'] %}
-- brought forward from the windows of {{ previous['as_of'] }} (load {{ previous['batch'] }})
with

-- Not counted at the previous as_of: its [previous, as_of) days, and the late arrivals
-- (loaded since, dated before it).
added as (
    select
        a.lead_id,
        {{ activity_window_aggregates(as_of) }}
    from (
        select * from {{ ref('stg_activities') }}
        where occurred_at >= {{ since }} and occurred_at < {{ as_of }}
        union all
        select * from {{ ref('stg_activities') }}
        where occurred_at < {{ since }} and landing_batch > {{ previous['batch'] }}
    ) as a
    group by a.lead_id
),

-- Counted at the previous as_of, in a window that moved: each counter gains what entered
-- its window and loses what left it. Only the days at the windows' edges are read.
moved as (
    select
        a.lead_id,
        {%- for counter in window_counters() %}
            count(*) filter (where {{ counter_filter(counter, 'a', as_of) }})
            - count(*) filter (where {{ counter_filter(counter, 'a', since) }}) as {{ counter['column'] }}{{ "," if not loop.last }}
        {%- endfor %}
    from (
        {%- for edge in window_edges(previous['gap_days']) %}
            select * from {{ ref('stg_activities') }} as a
            where
                a.occurred_at >= {{ since }} - interval {{ edge[0] }} day
                and a.occurred_at < {{ since }} - interval {{ edge[1] }} day
                and {{ counted }}
            {{ "union all" if not loop.last }}
        {%- endfor %}
    ) as a
    group by a.lead_id
)

select
    coalesce(kept.lead_id, added.lead_id) as lead_id,
    coalesce(kept.n_activities_total, 0) + coalesce(added.n_activities_total, 0) as n_activities_total,
    {%- for counter in window_counters() %}
        coalesce(kept.{{ counter['column'] }}, 0) + coalesce(added.{{ counter['column'] }}, 0)
        + coalesce(moved.{{ counter['column'] }}, 0) as {{ counter['column'] }},
    {%- endfor %}
    least(kept.first_activity_at, added.first_activity_at) as first_activity_at,
    greatest(kept.last_activity_at, added.last_activity_at) as last_activity_at,
    {{ windows_bookkeeping_columns(as_of, fingerprint) }}
from {{ this }} as kept
full outer join added on kept.lead_id = added.lead_id
left join moved on kept.lead_id = moved.lead_id
{%- endif %}
