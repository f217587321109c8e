-- Point-in-time rule (docs/contracts.md): a feature row at date D uses nothing at or after D.
-- Every returned row is a violation.
select
    f.lead_id,
    f.as_of,
    'lead created on or after as_of' as problem
from {{ ref('lead_features') }} as f
where f.lead_age_days < 0
union all
select
    f.lead_id,
    f.as_of,
    'activity on or after as_of counted' as problem
from {{ ref('lead_features') }} as f
where f.days_since_last_activity <= 0
