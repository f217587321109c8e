-- Typed activities; exact duplicates (same lead, instant and type) are exported twice by
-- some CRMs and would double-count, so they collapse to one row.
--
-- The de-duplication is the costliest step of the features: a hash table as large as the
-- activity table. Keyed on the type's name, DuckDB cannot spill it to disk (150M activities
-- ran out of memory at the profile's 1.5 GB); keyed on a number it can. So the types of
-- var('activity_types') are de-duplicated by number, and only the rows of any other type
-- (rare: a warning test reports them) by name.
{%- set type_name = "lower(trim(cast(activity_type as varchar)))" %}

with

known_types as (
    select distinct
        cast(lead_id as bigint) as lead_id,
        cast(occurred_at as timestamp) as occurred_at,
        {{ activity_type_id(type_name) }} as activity_type_id
    from {{ source('raw', 'activities') }}
    where
        lead_id is not null
        and occurred_at is not null
        and {{ activity_type_id(type_name) }} is not null
),

other_types as (
    select distinct
        cast(lead_id as bigint) as lead_id,
        cast(occurred_at as timestamp) as occurred_at,
        {{ type_name }} as activity_type
    from {{ source('raw', 'activities') }}
    where
        lead_id is not null
        and occurred_at is not null
        and {{ activity_type_id(type_name) }} is null
)

select
    lead_id,
    occurred_at,
    {{ activity_type_name('activity_type_id') }} as activity_type,
    activity_type_id
from known_types
union all
select
    lead_id,
    occurred_at,
    activity_type,
    null as activity_type_id
from other_types
