-- Typed, trimmed and de-duplicated leads: one row per lead_id (the earliest record wins).
-- A table, not a view like the other staging models: every mart and about ten tests read it,
-- and as a view each of them would re-run the de-duplicating window over all leads.
{{ config(materialized='table') }}

with

source as (
    select * from {{ source('raw', 'leads') }}
),

renamed as (
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
)

select * from renamed
qualify row_number() over (partition by lead_id order by created_at) = 1
