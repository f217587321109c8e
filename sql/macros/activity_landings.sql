{#- What the incremental stg_activities does with its landing files (the bookkeeping:
    sql/macros/landing_files.sql). A new file is read in full and its activities not already
    in the table are inserted. A replaced or removed file's old date range [first_at, last_at]
    is deleted and rebuilt from every current file, as is the window of
    var('rebuild_activities_from') .. var('rebuild_activities_to') (dates, both included).
    docs/data-engineering.md explains the semantics. -#}

{#- The windows of occurred_at to delete and rebuild from every file: the old range of each
    replaced or removed file, and the window a user asked for. -#}
{% macro rebuild_windows_sql() -%}
    {%- set rebuild_from = var('rebuild_activities_from', none) %}
    {%- set rebuild_to = var('rebuild_activities_to', none) or rebuild_from %}
    select r.first_at as from_at, r.last_at as to_at
    from ({{ replaced_files_sql() }}) as r
    where r.first_at is not null
    {%- if rebuild_from %}
    union all
    select
        cast(date {{ sql_string(rebuild_from) }} as timestamp) as from_at,
        cast(date {{ sql_string(rebuild_to) }} + interval 1 day - interval 1 microsecond as timestamp) as to_at
    {%- endif %}
{%- endmacro %}

{#- Run at compile time of the model (execute): the landing files' load plan, plus the
    'windows' of dates to rebuild. -#}
{% macro activity_load_plan(incremental) -%}
    {%- set plan = landing_load_plan('activities', incremental) %}
    {%- set windows = [] %}
    {%- if incremental and landing_files_read() %}
        {%- for row in run_query(rebuild_windows_sql()).rows %}{% do windows.append([row[0], row[1]]) %}{% endfor %}
    {%- endif %}
    {%- do plan.update({'windows': windows}) %}
    {{ return(plan) }}
{%- endmacro %}

{#- Pre-hook in the transaction: delete the windows that this load rebuilds. -#}
{#- The windows are looked up when the hook runs and written into the delete as literal
    ranges: DuckDB then skips the row groups outside them by their zone maps, and a night with
    nothing to rebuild (the usual one) deletes nothing without reading the table. A delete
    joined to the windows' query scanned every activity instead: 3.5 s and 1.7 GB at 30M. -#}
{% macro activity_windows_delete() -%}
    {%- set windows = run_query(rebuild_windows_sql()).rows if execute and is_incremental() else [] -%}
    {%- if windows -%}
        delete from {{ this }} as a
        where
        {%- for window in windows %}
            a.occurred_at between timestamp '{{ window[0] }}' and timestamp '{{ window[1] }}'{{ " or" if not loop.last }}
        {%- endfor %}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#- Post-hook in the transaction: record the files read and the load. -#}
{% macro activity_landings_record() -%}
    {{ landings_record('occurred_at', rebuild_windows_sql()) }}
{%- endmacro %}

{#- The raw rows a load reads: the new and the replaced files in full, and every current
    file's rows in the windows being rebuilt (nothing when nothing landed). -#}
{% macro incoming_activities(plan) -%}
    {%- set parts = [] %}
    {%- if not landing_files_read() %}
        {%- do parts.append("select lead_id, occurred_at, activity_type from " ~ source('raw', 'activities')) %}
    {%- else %}
        {%- if plan['read'] %}
            {%- do parts.append("select lead_id, occurred_at, activity_type from " ~ parquet_files(plan['read'])) %}
        {%- endif %}
        {%- if plan['windows'] and plan['all'] %}
            {%- set ranges = [] %}
            {%- for window in plan['windows'] %}
                {%- do ranges.append("cast(occurred_at as timestamp) between timestamp '" ~ window[0] ~ "' and timestamp '" ~ window[1] ~ "'") %}
            {%- endfor %}
            {%- do parts.append("select lead_id, occurred_at, activity_type from " ~ parquet_files(plan['all']) ~ " where " ~ ranges | join(" or ")) %}
        {%- endif %}
        {%- if not parts %}
            {%- do parts.append("select null::bigint as lead_id, null::timestamp as occurred_at, null::varchar as activity_type where false") %}
        {%- endif %}
    {%- endif %}
    {{- parts | join("\n    union all\n    ") }}
{%- endmacro %}
