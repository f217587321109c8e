-- One row per (lead, weekly snapshot date) with its label. The last snapshot is
-- as_of - horizon_days so every label is complete; leads created at or after a snapshot
-- and leads converted before it are not in it (point-in-time rule, docs/contracts.md).
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

leads as (
    select * from {{ ref('stg_leads') }}
),

conversions as (
    select * from {{ ref('stg_conversions') }}
)

select
    leads.lead_id,
    snapshot_dates.as_of,
    cast(
        coalesce(
            conversions.converted_at < snapshot_dates.as_of + interval {{ var('horizon_days') }} day,
            false
        ) as integer
    ) as label
from snapshot_dates
inner join leads on snapshot_dates.as_of > leads.created_at
left join conversions on leads.lead_id = conversions.lead_id
where conversions.converted_at is null or conversions.converted_at >= snapshot_dates.as_of
