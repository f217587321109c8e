{#- The bookkeeping of the incremental stg_activities: which landing files it has read.

    Three small tables next to the model, in its schema:
    * <model>__listing: the landing folder as this build found it (name, size, modified time),
      snapshotted once when the model compiles, so the rows read, the files recorded and the
      windows rebuilt all follow the same listing (a file landing mid-build waits for the next);
    * <model>__files: every file read so far, with its size and modified time when read, the
      first and last occurred_at in it, and the load (batch) that read it;
    * <model>__loads: one row per build: batch number, generation (a new one at each full
      refresh), when, how many files were read, whether a window of dates was rebuilt.
    A file is read when its name is new, or when its size or modified time changed (a
    corrected file replacing an earlier one). A replaced or removed file's old date range
    [first_at, last_at] is deleted and rebuilt from every current file, as is the window of
    var('rebuild_activities_from') .. var('rebuild_activities_to') (dates, both included).
    docs/data-engineering.md explains the semantics. -#}

{% macro landing_relation(suffix) -%}
    {{- api.Relation.create(database=this.database, schema=this.schema, identifier=this.identifier ~ '__' ~ suffix) -}}
{%- endmacro %}

{% macro raw_files_glob(table) -%}
    {{ env_var('MLSYS_DATA_DIR', '../var/data') }}/raw/{{ table }}/*.parquet
{%- endmacro %}

{% macro sql_string(text) -%}
    '{{ text | replace("'", "''") }}'
{%- endmacro %}

{#- Create the bookkeeping tables if missing (a full refresh empties them: pre-hook). -#}
{% macro landing_tables_ddl(replace=false) -%}
    create {{ 'or replace' if replace }} table {{ 'if not exists' if not replace }} {{ landing_relation('files') }} (
        filename varchar, size bigint, modified_us bigint,
        first_at timestamp, last_at timestamp, batch integer
    );
    create {{ 'or replace' if replace }} table {{ 'if not exists' if not replace }} {{ landing_relation('loads') }} (
        batch integer, generation varchar, loaded_at timestamp, files_read integer,
        rebuilt_windows integer, full_refresh boolean
    );
{%- endmacro %}

{#- Files of the listing that are new or changed since they were read (to read in full). -#}
{% macro files_to_read_sql() -%}
    select l.filename from {{ landing_relation('listing') }} as l
    where not exists (
        select 1 from {{ landing_relation('files') }} as f
        where f.filename = l.filename and f.size = l.size and f.modified_us = l.modified_us
    )
{%- endmacro %}

{#- The windows of occurred_at to delete and rebuild from every file: the old range of each
    replaced or removed file, and the window a user asked for. -#}
{% macro rebuild_windows_sql() -%}
    {%- set rebuild_from = var('rebuild_activities_from', none) %}
    {%- set rebuild_to = var('rebuild_activities_to', none) or rebuild_from %}
    select f.first_at as from_at, f.last_at as to_at
    from {{ landing_relation('files') }} as f
    where f.first_at is not null and not exists (
        select 1 from {{ landing_relation('listing') }} as l
        where f.filename = l.filename and f.size = l.size and f.modified_us = l.modified_us
    )
    {%- if rebuild_from %}
    union all
    select
        cast(date {{ sql_string(rebuild_from) }} as timestamp) as from_at,
        cast(date {{ sql_string(rebuild_to) }} + interval 1 day - interval 1 microsecond as timestamp) as to_at
    {%- endif %}
{%- endmacro %}

{#- Run at compile time of the model (execute): snapshot the listing, return the load plan. -#}
{% macro activity_load_plan(incremental) -%}
    {%- set plan = {'read': [], 'all': [], 'windows': [], 'batch': 1} %}
    {#- var('activities_from_source'): the on-demand compile, whose raw activities are a
        request's payload (the source relation), not landing files: no listing, no bookkeeping. #}
    {#- Spark (no read_blob, no deletes): stg_activities is rebuilt from the source at each build. #}
    {%- if not execute or var('activities_from_source', false) or target.type != 'duckdb' %}{{ return(plan) }}{% endif %}
    {%- do run_query(
        "create or replace table " ~ landing_relation('listing') ~ " as "
        ~ "select filename, size, epoch_us(last_modified) as modified_us from read_blob("
        ~ sql_string(raw_files_glob('activities')) ~ ")"
    ) %}
    {%- set listing = run_query("select filename from " ~ landing_relation('listing') ~ " order by filename") %}
    {%- for row in listing.rows %}{% do plan['all'].append(row[0]) %}{% endfor %}
    {%- if not incremental %}
        {%- do plan.update({'read': plan['all']}) %}
        {{ return(plan) }}
    {%- endif %}
    {%- do run_query(landing_tables_ddl()) %}
    {%- for row in run_query(files_to_read_sql() ~ " order by 1").rows %}{% do plan['read'].append(row[0]) %}{% endfor %}
    {%- for row in run_query(rebuild_windows_sql()).rows %}{% do plan['windows'].append([row[0], row[1]]) %}{% endfor %}
    {%- set batch = run_query("select coalesce(max(batch), 0) + 1 from " ~ landing_relation('loads')) %}
    {%- do plan.update({'batch': batch.rows[0][0] | int}) %}
    {{ return(plan) }}
{%- endmacro %}

{% macro parquet_files(files) -%}
    read_parquet([{% for f in files %}{{ sql_string(f) }}{{ ", " if not loop.last }}{% endfor %}], union_by_name = true)
{%- endmacro %}

{#- Pre-hook outside the transaction: a full refresh starts the bookkeeping afresh. -#}
{% macro activity_landings_reset() -%}
    {%- if is_incremental() -%}
        {{ landing_tables_ddl() }}
    {%- else -%}
        {{ landing_tables_ddl(replace=true) }}
    {%- endif -%}
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

{#- Post-hook in the transaction (so it commits with the rows or not at all): record the
    files this load read and the load itself. -#}
{% macro activity_landings_record() -%}
    {%- set read = [] %}
    {%- if execute %}
        {%- for row in run_query(files_to_read_sql()).rows %}{% do read.append(row[0]) %}{% endfor %}
    {%- endif %}
    create or replace temp table __activity_files_read as
    {%- if read %}
    select filename, min(cast(occurred_at as timestamp)) as first_at, max(cast(occurred_at as timestamp)) as last_at
    from read_parquet([{% for f in read %}{{ sql_string(f) }}{{ ", " if not loop.last }}{% endfor %}], filename = true, union_by_name = true)
    group by filename
    {%- else %}
    select null::varchar as filename, null::timestamp as first_at, null::timestamp as last_at where false
    {%- endif %};
    insert into {{ landing_relation('loads') }}
    select
        coalesce(max(batch), 0) + 1,
        coalesce(any_value(generation), cast(gen_random_uuid() as varchar)),
        now()::timestamp,
        {{ read | length }},
        (select count(*) from ({{ rebuild_windows_sql() }})),
        count(*) = 0
    from {{ landing_relation('loads') }};
    create or replace table {{ landing_relation('files') }} as
    select
        l.filename, l.size, l.modified_us,
        coalesce(kept.first_at, fresh.first_at) as first_at,
        coalesce(kept.last_at, fresh.last_at) as last_at,
        coalesce(kept.batch, (select max(batch) from {{ landing_relation('loads') }})) as batch
    from {{ landing_relation('listing') }} as l
    left join {{ landing_relation('files') }} as kept
        on kept.filename = l.filename and kept.size = l.size and kept.modified_us = l.modified_us
    left join __activity_files_read as fresh on fresh.filename = l.filename
{%- endmacro %}

{#- The raw rows a load reads: the new and the replaced files in full, and every current
    file's rows in the windows being rebuilt (nothing when nothing landed). -#}
{% macro incoming_activities(plan) -%}
    {%- set parts = [] %}
    {%- if not execute or var('activities_from_source', false) or target.type != 'duckdb' %}
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
