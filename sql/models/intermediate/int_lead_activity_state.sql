-- Per-lead totals of every activity before the scoring windows (occurred_at < window_start):
-- how many, the first and the last. Kept from one build to the next and brought forward:
-- a night folds in the day that left the 90-day window and the late arrivals of the loads
-- since (landing_batch), instead of re-reading the history. It is rebuilt from
-- stg_activities when there is nothing to bring forward: the first build, a full refresh of
-- stg_activities (a new generation), a load that rebuilt a window of dates (rows were
-- deleted), or an as_of whose window starts before the state's (a backfill).
{{ config(materialized='table') }}
{%- set cutoff = window_start(as_of_date()) %}
{%- set previous = none %}
{#- The bookkeeping of the loads is DuckDB's (stg_activities): on Spark the state is rebuilt. #}
{%- set landing_bookkeeping = target.type == 'duckdb' %}
{%- if landing_bookkeeping and execute and adapter.get_relation(this.database, this.schema, this.identifier) is not none %}
    {%- set state = run_query(
        "select any_value(state_generation), max(state_batch), max(state_cutoff), "
        ~ "coalesce(max(state_cutoff) <= " ~ cutoff ~ ", false), count(*) from " ~ this
    ).rows[0] %}
    {%- if state[4] > 0 and state[3] and loads_only_added_since(state[0], state[1]) %}
        {%- set previous = {'batch': state[1] | int, 'cutoff': state[2]} %}
    {%- endif %}
{%- endif %}

with

{%- if previous is none %}
-- rebuilt: every activity before the window
    before_window as (
        select
            lead_id,
            occurred_at
        from {{ ref('stg_activities') }}
        where occurred_at < {{ cutoff }}
    ),
{%- else %}
-- brought forward from the state of {{ previous['cutoff'] }} (load {{ previous['batch'] }})
before_window as (
    select lead_id, occurred_at
    from {{ ref('stg_activities') }}
    where occurred_at >= timestamp '{{ previous['cutoff'] }}' and occurred_at < {{ cutoff }}
    union all
    -- late arrivals: loaded since, dated before the previous cutoff
    select lead_id, occurred_at
    from {{ ref('stg_activities') }}
    where occurred_at < timestamp '{{ previous['cutoff'] }}' and landing_batch > {{ previous['batch'] }}
),
{%- endif %}

added as (
    select
        lead_id,
        count(*) as n_activities,
        min(occurred_at) as first_activity_at,
        max(occurred_at) as last_activity_at
    from before_window
    group by lead_id
),

merged as (
    {%- if previous is none %}
        select * from added
    {%- else %}
    select
        coalesce(kept.lead_id, added.lead_id) as lead_id,
        coalesce(kept.n_activities, 0) + coalesce(added.n_activities, 0) as n_activities,
        least(kept.first_activity_at, added.first_activity_at) as first_activity_at,
        greatest(kept.last_activity_at, added.last_activity_at) as last_activity_at
    from {{ this }} as kept
    full outer join added on kept.lead_id = added.lead_id
{%- endif %}
)

select
    merged.lead_id,
    merged.n_activities,
    merged.first_activity_at,
    merged.last_activity_at,
    {{ cutoff }} as state_cutoff,
    {%- if landing_bookkeeping %}
        {{ counted_loads_columns('state') }}
    {%- else %}
        1 as state_batch,
        cast(null as string) as state_generation
    {%- endif %}
from merged
