-- One row per contact with its label: weekly snapshot dates as in the synthetic project (the
-- last is as_of - horizon_days, var('snapshot_weeks') of them), and a snapshot at D holds the
-- contacts of [D, D + snapshot_days) with the features known before the call. The label is the
-- raw contract's rule: converted within [D, D + horizon_days), read from the conversions mart.
{{ config(location=feature_location('training_snapshots')) }}

with

bounds as (
    select
        {{ as_of_date() }} - interval {{ var('horizon_days') }} day as last_snapshot,
        {{ as_of_date() }} - interval {{ var('horizon_days') }} day
        - interval {{ 7 * (var('snapshot_weeks') | int - 1) }} day as first_snapshot
),

snapshot_dates as (
    select cast(unnest(generate_series(first_snapshot, last_snapshot, interval 7 day)) as date) as as_of
    from bounds
),

contacts as (
    select * from {{ ref('stg_bank_contacts') }}
),

conversions as (
    select * from {{ ref('conversions') }}
)

select
    contacts.contact_id as lead_id,
    snapshot_dates.as_of,
    {{ bank_feature_columns('contacts') }},
    cast(
        coalesce(
            conversions.converted_at < snapshot_dates.as_of + interval {{ var('horizon_days') }} day,
            false
        ) as integer
    ) as label
from snapshot_dates
inner join contacts
    on
        snapshot_dates.as_of <= contacts.contact_date
        and snapshot_dates.as_of + interval {{ var('snapshot_days') }} day > contacts.contact_date
left join conversions on contacts.contact_id = conversions.lead_id
order by snapshot_dates.as_of, contacts.contact_id
