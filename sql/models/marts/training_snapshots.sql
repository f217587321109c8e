-- One row per lead per weekly snapshot date with its label: what `retrain` learns from.
-- Joining every snapshot to every earlier activity takes more memory than the nightly scoring
-- build is allowed (about 3.2 GB peak at 1M leads; out of memory at the profile's 1.5 GB), so
-- this weekly model raises DuckDB's limit for the rest of its dbt run.
{{ config(
    location=feature_location('training_snapshots'),
    pre_hook="set memory_limit = '" ~ env_var('MLSYS_DUCKDB_TRAINING_MEMORY_LIMIT', '4GB') ~ "'",
) }}

with

spine as (
    select * from {{ ref('int_training_spine') }}
),

leads as (
    select * from {{ ref('stg_leads') }}
),

windows as (
    select * from {{ ref('int_training_activity_windows') }}
)

select
    spine.lead_id,
    spine.as_of,
    {{ lead_feature_columns('leads', 'windows', 'spine.as_of') }},
    spine.label
from spine
inner join leads on spine.lead_id = leads.lead_id
left join windows on spine.lead_id = windows.lead_id and spine.as_of = windows.as_of
order by spine.as_of, spine.lead_id
