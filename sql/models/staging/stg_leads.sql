-- Typed, trimmed and de-duplicated leads: one row per lead_id (the earliest record wins,
-- macro lead_precedence). A table, not a view like the other staging models: every mart and
-- about ten tests read it, and as a view each of them would re-run the de-duplicating window
-- over all leads.
--
-- Loaded incrementally, as stg_activities is: each build reads only the landing files new or
-- changed since the last (sql/macros/landing_files.sql keeps the list). A lead of a new file
-- replaces the table's row of the same lead_id only when it comes first (an earlier
-- created_at): the rows are those a full rebuild gives. A replaced or removed file rebuilds
-- the table from every current file (sql/macros/lead_landings.sql). `dbt build
-- --full-refresh` (`mlsys features --full-refresh`) rebuilds it from every file.
{#- The landing bookkeeping (read_blob, delete) is DuckDB's. On Spark the model is a table
    rebuilt from every landing file at each build, as stg_activities is (docs/spark.md). #}
{%- set landing_bookkeeping = target.type == 'duckdb' %}
{%- if landing_bookkeeping %}
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='lead_id',
    on_schema_change='fail',
    pre_hook=[
        {'sql': "{{ landings_reset() }}", 'transaction': false},
        "{{ lead_landings_delete() }}",
    ],
    post_hook=["{{ lead_landings_record() }}"],
) }}
{%- else %}
{{ config(materialized='table') }}
{%- endif %}
{%- set plan = lead_load_plan(is_incremental()) %}
{#- An incremental load that reads new files (and does not rebuild) weighs their records
    against the table's rows of the same leads. #}
{%- set merge = is_incremental() and landing_files_read() and not plan['rebuild'] and plan['read'] | length > 0 %}

with

source as (
    {{ incoming_leads(plan) }}
),

renamed as {{ 'materialized' if merge }} (
    select
        cast(lead_id as bigint) as lead_id,
        cast(created_at as timestamp) as created_at,
        lower(trim(cast(source as string))) as source,
        nullif(trim(cast(industry as string)), '') as industry,
        upper(nullif(trim(cast(country as string)), '')) as country,
        cast(company_size as bigint) as company_size,
        lower(nullif(trim(cast(job_level as string)), '')) as job_level
    from source
    where lead_id is not null
),

candidates as (
    select
        *,
        false as in_table
    from renamed
    {%- if merge %}
    -- The table's rows of the leads read: one of them stays unless a new record comes first
    -- (on equal records the table's: it is not rewritten). DuckDB skips the row groups whose
    -- lead_ids are all outside the new records' (new leads: all of them).
    union all
    select
        {%- for column in stg_lead_columns() %}
        t.{{ column }},
        {%- endfor %}
        true as in_table
    from {{ this }} as t
    where t.lead_id in (select r.lead_id from renamed as r)
    {%- endif %}
)

select {{ stg_lead_columns() | join(", ") }}
from candidates
qualify
    row_number() over (partition by lead_id order by {{ lead_precedence() }}, in_table desc) = 1
    and not in_table
