{#- What the incremental stg_leads does with its landing files (the bookkeeping:
    sql/macros/landing_files.sql). A new file is read in full; a lead of it replaces the
    table's row of the same lead_id only when it comes first by lead_precedence (an earlier
    created_at), so the table stays what a full rebuild gives: the earliest record of each
    lead. A replaced or removed file (a record that won may be gone), or a table without a
    load recorded (built before the bookkeeping existed), rebuilds stg_leads from every
    current file in that build. docs/data-engineering.md explains the semantics. -#}

{#- The order in which the records of one lead_id win: the earliest created_at; on a tie, the
    record first by the other columns (nulls last), so which of two records of the same
    instant is kept does not depend on the order the engine read them. Records equal in every
    column are the same row. -#}
{% macro lead_precedence() -%}
    {%- for column in stg_lead_columns()[1:] %}{{ column }} nulls last{{ ", " if not loop.last }}{% endfor %}
{%- endmacro %}

{#- The columns of stg_leads, lead_id first: the raw leads' contract. -#}
{% macro stg_lead_columns() -%}
    {{- return(['lead_id', 'created_at', 'source', 'industry', 'country', 'company_size', 'job_level']) -}}
{%- endmacro %}

{#- Whether this incremental load rebuilds stg_leads from every current file. -#}
{% macro lead_landings_rebuild(plan) -%}
    {{- return(is_incremental() and landing_files_read() and (plan['replaced'] | length > 0 or plan['batch'] == 1)) -}}
{%- endmacro %}

{#- The landing files' load plan of stg_leads, plus whether it 'rebuild's the table. -#}
{% macro lead_load_plan(incremental) -%}
    {%- set plan = landing_load_plan('leads', incremental) %}
    {%- do plan.update({'rebuild': lead_landings_rebuild(plan)}) %}
    {%- if plan['rebuild'] %}{% do plan.update({'read': plan['all']}) %}{% endif %}
    {{ return(plan) }}
{%- endmacro %}

{#- Looked up again when a hook runs: the listing and the bookkeeping are those the model
    compiled with (the hooks change neither before the post-hook records the load). -#}
{% macro lead_hook_plan() -%}
    {%- set plan = {'replaced': [], 'batch': 1} %}
    {%- if execute and is_incremental() and landing_files_read() %}
        {%- do plan.update({
            'replaced': run_query(replaced_files_sql()).rows,
            'batch': run_query("select coalesce(max(batch), 0) + 1 from " ~ landing_relation('loads')).rows[0][0] | int,
        }) %}
    {%- endif %}
    {{ return(plan) }}
{%- endmacro %}

{#- Pre-hook in the transaction: a rebuild starts from an empty table. -#}
{% macro lead_landings_delete() -%}
    {%- if lead_landings_rebuild(lead_hook_plan()) -%}
        delete from {{ this }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#- Post-hook in the transaction: record the files read and the load (rebuilt_windows: the
    replaced or removed files that made it rebuild the table). -#}
{% macro lead_landings_record() -%}
    {{ landings_record('created_at', replaced_files_sql(), read_all=lead_landings_rebuild(lead_hook_plan())) }}
{%- endmacro %}

{#- The raw lead records a load reads: the files of the plan (nothing when nothing landed), as
    columns of the raw contract; a file without an optional column reads it as null. -#}
{% macro incoming_leads(plan) -%}
    {%- set columns = stg_lead_columns() %}
    {%- if not landing_files_read() -%}
        select * from {{ source('raw', 'leads') }}
    {%- else -%}
        select
        {%- for column in columns %}
            null as {{ column }}{{ "," if not loop.last }}
        {%- endfor %}
        where false
        {%- if plan['read'] %}
        union all by name
        select * from {{ parquet_files(plan['read']) }}
        {%- endif %}
    {%- endif %}
{%- endmacro %}
