-- Typed activities; exact duplicates (same lead, instant and type) are exported twice by
-- some CRMs and would double-count, so they collapse to one row.
with

source as (
    select * from {{ source('raw', 'activities') }}
),

renamed as (
    select distinct
        cast(lead_id as bigint) as lead_id,
        cast(occurred_at as timestamp) as occurred_at,
        lower(trim(cast(activity_type as varchar))) as activity_type
    from source
    where lead_id is not null and occurred_at is not null
)

select * from renamed
