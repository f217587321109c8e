{#- The start of the longest window a scoring feature reads (the 90-day counts, the 14 days
    of the trend), as a timestamp expression: the per-lead state holds what came before it. -#}
{% macro window_start(as_of) -%}
    {%- set longest = [var('activity_windows_days') | max, 14] | max -%}
    cast({{ as_of }} - interval {{ longest }} day as timestamp)
{%- endmacro %}

{#- The stg_activities loads' bookkeeping table (sql/macros/activity_landings.sql). -#}
{% macro activity_loads_relation() -%}
    {{- api.Relation.create(database=this.database, schema=this.schema, identifier='stg_activities__loads') -}}
{%- endmacro %}

{#- The last stg_activities load and its generation, as columns <prefix>_batch and
    <prefix>_generation: what a table brought forward from load to load records of the loads
    it counted (int_lead_activity_state, int_scoring_activity_windows). -#}
{% macro counted_loads_columns(prefix) -%}
    (select coalesce(max(loads.batch), 0) from {{ activity_loads_relation() }} as loads) as {{ prefix }}_batch,
    (select any_value(loads.generation) from {{ activity_loads_relation() }} as loads) as {{ prefix }}_generation
{%- endmacro %}

{#- Whether the stg_activities loads after load `batch` of `generation` only added rows (no
    full refresh, no window of dates re-read): a table that counted up to that load can then
    be brought forward by what was added since. -#}
{% macro loads_only_added_since(generation, batch) -%}
    {%- set current = run_query(
        "select any_value(generation), coalesce(max(batch) filter (where rebuilt_windows > 0 or full_refresh), 0) "
        ~ "from " ~ activity_loads_relation()
    ).rows[0] %}
    {{ return(generation == current[0] and current[1] <= batch) }}
{%- endmacro %}

{#- What int_scoring_activity_windows records of the build that made it: its as_of, the last
    stg_activities load and the generation it counted, and the fingerprint of the window SQL. -#}
{% macro windows_bookkeeping_columns(as_of, fingerprint) -%}
    {{ as_of }} as windows_as_of,
    {{ counted_loads_columns('windows') }},
    '{{ fingerprint }}' as windows_fingerprint
{%- endmacro %}

{#- The windows the previous build left, if this build can bring them forward to var('as_of'):
    {'as_of', 'batch', 'gap_days'}, or none (see int_scoring_activity_windows for when). -#}
{% macro brought_forward_windows(fingerprint) -%}
    {%- set relation = adapter.get_relation(this.database, this.schema, this.identifier) %}
    {%- if relation is none
        or 'windows_fingerprint' not in adapter.get_columns_in_relation(relation) | map(attribute='name') | list %}
        {{ return(none) }}
    {%- endif %}
    {%- set kept = run_query(
        "select strftime(any_value(windows_as_of), '%Y-%m-%d'), max(windows_batch), "
        ~ "any_value(windows_generation), any_value(windows_fingerprint) from " ~ this
    ).rows[0] %}
    {%- if kept[0] is none or kept[3] != fingerprint or not loads_only_added_since(kept[2], kept[1]) %}
        {{ return(none) }}
    {%- endif %}
    {%- set as_of = modules.datetime.date.fromisoformat(var('as_of') | string) %}
    {%- set gap_days = (as_of - modules.datetime.date.fromisoformat(kept[0])).days %}
    {%- if gap_days < 0 or gap_days > var('windows_brought_forward_days') | int %}
        {{ return(none) }}
    {%- endif %}
    {{ return({'as_of': kept[0], 'batch': kept[1] | int, 'gap_days': gap_days}) }}
{%- endmacro %}

{#- Whether int_scoring_activity_windows keeps its bookkeeping and can be brought forward:
    DuckDB, not the full-history reference, not the on-demand compile (a payload's activities). -#}
{% macro windows_bookkeeping() -%}
    {{ return(target.type == 'duckdb' and not var('features_from_full_history', false)
        and not var('landings_from_source', false)) }}
{%- endmacro %}

{% macro windows_fingerprint() -%}
    {{ return(local_md5(activity_window_aggregates('d'))) }}
{%- endmacro %}

{% macro window_changes_relation() -%}
    {{- api.Relation.create(database=this.database, schema=this.schema, identifier=this.identifier ~ '__changes') -}}
{%- endmacro %}

{#- The pre-hook of int_scoring_activity_windows: when the windows are brought forward, the
    changes per lead since the previous build, as a table (one row per lead that changed).
    What was not counted at the previous as_of P: the days [P, as_of) and the late arrivals
    (loaded since, dated before P), aggregated as of as_of. What was counted at P and crossed
    a window's edge with the dates: each counter gains what entered its window and loses what
    left it; only the days at the windows' edges are read (macro window_edges). -#}
{% macro window_changes_table() -%}
    {%- set previous = brought_forward_windows(windows_fingerprint()) if windows_bookkeeping() and execute else none %}
    {%- if previous is none %}
        drop table if exists {{ window_changes_relation() }}
    {%- else %}
        {%- set as_of = as_of_date() %}
        {%- set since = "timestamp '" ~ previous['as_of'] ~ "'" %}
        create or replace table {{ window_changes_relation() }} as
        with

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
                        and a.landing_batch <= {{ previous['batch'] }}
                    {{ "union all" if not loop.last }}
                {%- endfor %}
            ) as a
            group by a.lead_id
        )

        {#- int32 counts: half the memory of the join that adds them to the windows. #}
        select
            coalesce(added.lead_id, moved.lead_id) as lead_id,
            cast(added.n_activities_total as integer) as n_activities_total,
            {%- for counter in window_counters() %}
                cast(coalesce(added.{{ counter['column'] }}, 0) + coalesce(moved.{{ counter['column'] }}, 0) as integer)
                as {{ counter['column'] }},
            {%- endfor %}
            added.first_activity_at,
            added.last_activity_at
        from added
        full outer join moved on added.lead_id = moved.lead_id
    {%- endif %}
{%- endmacro %}
