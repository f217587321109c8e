-- Activity windows of every lead as of var('as_of'). One date, so activities are filtered
-- and aggregated per lead first (no join of the activity table against a date spine).
select
    a.lead_id,
    {{ activity_window_aggregates(as_of_date()) }}
from {{ ref('stg_activities') }} as a
where a.occurred_at < {{ as_of_date() }}
group by a.lead_id
