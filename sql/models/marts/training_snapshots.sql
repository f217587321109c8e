-- One row per lead per weekly snapshot date with its label: what `retrain` learns from.
-- The features come from int_training_snapshot_features (each date computed once and kept);
-- the labels and the point-in-time rule are applied here, at every build, from all the
-- conversions landed so far (docs/contracts.md): a lead converted before a snapshot is not in
-- it, and its label is "converted within horizon_days of the snapshot". The last snapshot is
-- as_of - horizon_days, so every label's horizon has passed.
{{ config(location=feature_location('training_snapshots')) }}

with

snapshots as (
    select {{ star_except('kept', ['features_sql_md5']) }}
    from {{ ref('int_training_snapshot_features') }} as kept
    where kept.as_of in (
        {%- for snapshot in training_snapshot_dates() %}
            date '{{ snapshot }}'{{ "," if not loop.last }}
        {%- endfor %}
    )
),

conversions as (
    select * from {{ ref('stg_conversions') }}
)

select
    snapshots.*,
    cast(
        coalesce(
            conversions.converted_at < snapshots.as_of + interval {{ var('horizon_days') }} day,
            false
        ) as integer
    ) as label
from snapshots
left join conversions on snapshots.lead_id = conversions.lead_id
where conversions.converted_at is null or conversions.converted_at >= snapshots.as_of
order by snapshots.as_of, snapshots.lead_id
