-- Activity windows of every (lead, snapshot date) of the training spine, from activities
-- strictly before that snapshot date only.
select
    spine.lead_id,
    spine.as_of,
    {{ activity_window_aggregates('spine.as_of') }}
from {{ ref('int_training_spine') }} as spine
inner join {{ ref('stg_activities') }} as a
    on spine.lead_id = a.lead_id and spine.as_of > a.occurred_at
group by spine.lead_id, spine.as_of
