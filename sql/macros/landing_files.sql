{#- The bookkeeping of an incremental staging model loaded from landing files: which of the
    files of $MLSYS_DATA_DIR/raw/<table>/*.parquet it has read. stg_activities and stg_leads
    share it (sql/macros/activity_landings.sql and lead_landings.sql say what each does with
    a new, a replaced or a removed file).

    Three small tables next to the model, in its schema:
    * <model>__listing: the landing folder as this build found it (name, size, modified time),
      snapshotted once when the model compiles, so the rows read, the files recorded and what
      is rebuilt all follow the same listing (a file landing mid-build waits for the next);
    * <model>__files: every file read so far, with its size and modified time when read, the
      first and last value of the model's time column in it, and the load (batch) that read it;
    * <model>__loads: one row per build: batch number, generation (a new one at each full
      refresh), when, how many files were read, how many windows were rebuilt (stg_leads: the
      replaced or removed files that made it rebuild everything).
    A file is read when its name is new, or when its size or modified time changed (a
    corrected file replacing an earlier one). docs/data-engineering.md explains the semantics. -#}

{% macro landing_relation(suffix, relation=none) -%}
    {%- set model = relation or this %}
    {{- api.Relation.create(database=model.database, schema=model.schema, identifier=model.identifier ~ '__' ~ suffix) -}}
{%- endmacro %}

{% macro raw_files_glob(table) -%}
    {{ env_var('MLSYS_DATA_DIR', '../var/data') }}/raw/{{ table }}/*.parquet
{%- endmacro %}

{% macro sql_string(text) -%}
    '{{ text | replace("'", "''") }}'
{%- endmacro %}

{#- Whether this build reads landing files and keeps their bookkeeping. Not when parsing, not
    on Spark (no read_blob, no deletes: the model is rebuilt from its source at each build),
    and not in the on-demand compile (var('landings_from_source')), whose raw tables are a
    request's payload (the source relations), not landing files. -#}
{% macro landing_files_read() -%}
    {{- return(execute and not var('landings_from_source', false) and target.type == 'duckdb') -}}
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

{#- Files read before whose version is no longer in the listing: replaced or removed. -#}
{% macro replaced_files_sql() -%}
    select f.filename, f.first_at, f.last_at
    from {{ landing_relation('files') }} as f
    where not exists (
        select 1 from {{ landing_relation('listing') }} as l
        where f.filename = l.filename and f.size = l.size and f.modified_us = l.modified_us
    )
{%- endmacro %}

{#- Run at compile time of the model (execute): snapshot the listing of raw/<table>, return the
    load plan: 'all' the files of the listing, the ones to 'read' (all of them when not
    incremental), the 'replaced' or removed ones (filename, first_at, last_at) and the 'batch'
    this load will be (1: no load recorded yet). -#}
{% macro landing_load_plan(table, incremental) -%}
    {%- set plan = {'read': [], 'all': [], 'replaced': [], 'batch': 1} %}
    {%- if not landing_files_read() %}{{ return(plan) }}{% endif %}
    {%- do run_query(
        "create or replace table " ~ landing_relation('listing') ~ " as "
        ~ "select filename, size, epoch_us(last_modified) as modified_us from read_blob("
        ~ sql_string(raw_files_glob(table)) ~ ")"
    ) %}
    {%- set listing = run_query("select filename from " ~ landing_relation('listing') ~ " order by filename") %}
    {%- for row in listing.rows %}{% do plan['all'].append(row[0]) %}{% endfor %}
    {%- if not incremental %}
        {%- do plan.update({'read': plan['all']}) %}
        {{ return(plan) }}
    {%- endif %}
    {%- do run_query(landing_tables_ddl()) %}
    {%- for row in run_query(files_to_read_sql() ~ " order by 1").rows %}{% do plan['read'].append(row[0]) %}{% endfor %}
    {%- for row in run_query(replaced_files_sql() ~ " order by 1").rows %}{% do plan['replaced'].append([row[0], row[1], row[2]]) %}{% endfor %}
    {%- set batch = run_query("select coalesce(max(batch), 0) + 1 from " ~ landing_relation('loads')) %}
    {%- do plan.update({'batch': batch.rows[0][0] | int}) %}
    {{ return(plan) }}
{%- endmacro %}

{% macro parquet_files(files) -%}
    read_parquet([{% for f in files %}{{ sql_string(f) }}{{ ", " if not loop.last }}{% endfor %}], union_by_name = true)
{%- endmacro %}

{#- Pre-hook outside the transaction: a full refresh starts the bookkeeping afresh. -#}
{% macro landings_reset() -%}
    {%- if is_incremental() -%}
        {{ landing_tables_ddl() }}
    {%- else -%}
        {{ landing_tables_ddl(replace=true) }}
    {%- endif -%}
{%- endmacro %}

{#- Post-hook in the transaction (so it commits with the rows or not at all): record the
    files this load read (with the range of `time_column` in each) and the load itself.
    `rebuilt_sql`: a query whose row count is the load's rebuilt_windows. `read_all`: the load
    read every file of the listing (stg_leads' rebuild), not only the new and changed ones. -#}
{% macro landings_record(time_column, rebuilt_sql, read_all=false) -%}
    {%- set read = [] %}
    {%- set files_read = [] %}
    {%- if execute %}
        {%- for row in run_query(files_to_read_sql()).rows %}{% do read.append(row[0]) %}{% endfor %}
        {%- set counted = "select count(*) from " ~ landing_relation('listing') if read_all else "select " ~ read | length %}
        {%- do files_read.append(run_query(counted).rows[0][0]) %}
    {%- else %}
        {%- do files_read.append(0) %}
    {%- endif %}
    {%- set files_read_table = "__" ~ this.identifier ~ "_files_read" %}
    create or replace temp table {{ files_read_table }} as
    {%- if read %}
    select
        filename,
        min(cast({{ time_column }} as timestamp)) as first_at,
        max(cast({{ time_column }} as timestamp)) as last_at
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
        {{ files_read[0] }},
        (select count(*) from ({{ rebuilt_sql }})),
        count(*) = 0
    from {{ landing_relation('loads') }};
    create or replace table {{ landing_relation('files') }} as
    select
        l.filename, l.size, l.modified_us,
        coalesce(kept.first_at, fresh.first_at) as first_at,
        coalesce(kept.last_at, fresh.last_at) as last_at,
        coalesce({{ 'null' if read_all else 'kept.batch' }}, (select max(batch) from {{ landing_relation('loads') }})) as batch
    from {{ landing_relation('listing') }} as l
    left join {{ landing_relation('files') }} as kept
        on kept.filename = l.filename and kept.size = l.size and kept.modified_us = l.modified_us
    left join {{ files_read_table }} as fresh on fresh.filename = l.filename
{%- endmacro %}
