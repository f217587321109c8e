-- The call list to score as of var('as_of'): the contacts of [as_of, as_of + horizon_days),
-- with the features known before each call (the bank draws the list before calling).
{{ config(location=feature_location('lead_features')) }}

with

contacts as (
    select * from {{ ref('stg_bank_contacts') }}
    where
        contact_date >= {{ as_of_date() }}
        and contact_date < {{ as_of_date() }} + interval {{ var('horizon_days') }} day
)

select
    contacts.contact_id as lead_id,
    {{ as_of_date() }} as as_of,
    {{ bank_feature_columns('contacts') }}
from contacts
