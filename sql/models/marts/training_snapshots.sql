-- One row per lead per weekly snapshot date with its label: what `retrain` learns from.
{{ config(location=feature_location('training_snapshots')) }}

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
