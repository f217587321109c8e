-- One row per lead known at var('as_of'): the features the nightly scorer reads.
{{ config(location=feature_location('lead_features')) }}

with

leads as (
    select * from {{ ref('stg_leads') }}
    where created_at < {{ as_of_date() }}
),

windows as (
    select * from {{ ref('int_scoring_activity_windows') }}
)

select
    leads.lead_id,
    {{ as_of_date() }} as as_of,
    {{ lead_feature_columns('leads', 'windows', as_of_date()) }}
from leads
left join windows on leads.lead_id = windows.lead_id
