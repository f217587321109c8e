-- The year of a contact is derived from the row order (stg_bank_contacts): an export whose
-- rows are not in date order would get wrong years silently. Fails on every contact dated
-- before the row above it.
with

ordered as (
    select
        contact_id,
        contact_date,
        lag(contact_date) over (order by contact_id) as previous_date
    from {{ ref('stg_bank_contacts') }}
)

select
    contact_id,
    contact_date,
    previous_date
from ordered
where contact_date < previous_date
