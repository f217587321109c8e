-- Point-in-time rule for training rows: features of a snapshot at D use nothing at or after
-- D, and leads converted before D are not in it. Every returned row is a violation.
select
    t.lead_id,
    t.as_of,
    'lead created on or after the snapshot' as problem
from {{ ref('training_snapshots') }} as t
where t.lead_age_days < 0
union all
select
    t.lead_id,
    t.as_of,
    'activity on or after the snapshot counted' as problem
from {{ ref('training_snapshots') }} as t
where t.days_since_last_activity <= 0
union all
select
    t.lead_id,
    t.as_of,
    'lead converted before its snapshot' as problem
from {{ ref('training_snapshots') }} as t
inner join {{ ref('stg_conversions') }} as c on t.lead_id = c.lead_id
where c.converted_at < t.as_of
