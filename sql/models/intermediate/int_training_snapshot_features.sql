-- The features of every lead at each weekly snapshot date, computed once per date and kept in
-- the warehouse: a retrain computes only the dates it does not hold yet (normally the one new
-- week), never again the weeks before. Labels are not kept: training_snapshots joins them from
-- the conversions at every build, so a conversion that lands late is counted by the next one.
--
-- One date is one pass over the activities before it, like the nightly lead_features, instead
-- of joining every snapshot to every earlier activity (which ran out of memory at 1M leads).
-- var('new_snapshots_per_build') (mlsys sets it from the lead count) caps the dates one run
-- adds, so a first build at 10M leads adds them a few at a time; 0 = all.
--
-- Kept features are frozen: an activity that lands after its snapshot date was built is not
-- added to it (it was not known then either). `dbt build --full-refresh` rebuilds them all.
{#- Keeping dates from one build to the next deletes rows: DuckDB's. On Spark (plain Parquet
    tables, no delete) the table is rebuilt with every snapshot date at each build. #}
{%- set keep_snapshots = target.type == 'duckdb' %}
{%- if keep_snapshots %}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='sync_all_columns',
    pre_hook=[
        "set memory_limit = '" ~ env_var('MLSYS_DUCKDB_TRAINING_MEMORY_LIMIT', '3GB') ~ "'",
        "{% if is_incremental() %}delete from {{ this }} where features_sql_md5 != "
        "'{{ snapshot_features_fingerprint() }}' or as_of < date '{{ training_snapshot_dates()[0] }}'{% endif %}",
    ],
) }}
{%- else %}
{{ config(materialized='table') }}
{%- endif %}
{%- set fingerprint = snapshot_features_fingerprint() %}
{%- set kept = [] %}
{%- if execute and is_incremental() %}
    {%- set query -%}
        select distinct strftime(as_of, '%Y-%m-%d') from {{ this }} where features_sql_md5 = '{{ fingerprint }}'
    {%- endset %}
    {%- set kept = run_query(query).columns[0].values() | list %}
{%- endif %}
{%- set missing = [] %}
{%- for snapshot in training_snapshot_dates() if snapshot not in kept %}
    {%- do missing.append(snapshot) %}
{%- endfor %}
{%- set per_build = var('new_snapshots_per_build', 0) | int %}
{%- if per_build > 0 and keep_snapshots %}
    {%- set missing = missing[:per_build] %}
{%- endif %}

{%- for snapshot in missing %}
    select
        features.*,
        '{{ fingerprint }}' as features_sql_md5
    from ({{ snapshot_features("date '" ~ snapshot ~ "'") }}) as features
    {% if not loop.last %}union all{% endif %}
{%- endfor %}
{%- if not missing %}
    select * from {{ this }} where false
{%- endif %}
