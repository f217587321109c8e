-- A lead converts at most once: keep its first conversion.
with

source as (
    select * from {{ source('raw', 'conversions') }}
),

renamed as (
    select
        cast(lead_id as bigint) as lead_id,
        cast(converted_at as timestamp) as converted_at
    from source
    where lead_id is not null and converted_at is not null
)

select
    lead_id,
    min(converted_at) as converted_at
from renamed
group by lead_id
