{#- The typed, de-duplicated activities of `relation` (default: the raw landing source).
    With `partitions` > 1, only the leads whose hash(lead_id) % partitions = `partition`: the
    filter sits inside each DISTINCT, so its hash table holds that share of the activities
    (DuckDB does not push a filter on the view's output below the DISTINCTs).

    Exact duplicates (same lead, instant and type) are exported twice by some CRMs and would
    double-count, so they collapse to one row. Keyed on the type's name, DuckDB cannot spill
    the DISTINCT's hash table to disk (150M activities ran out of memory at the profile's
    1.5 GB); keyed on a number it can. So the types of var('activity_types') are de-duplicated
    by number, and only the rows of any other type (rare: a warning test reports them) by name. -#}
{% macro deduplicated_activities(partition=none, partitions=1, relation=none) -%}
{%- if partition is none -%}
    {%- set partition_filter = "" -%}
{%- else -%}
    {%- set partition_filter = "and hash(cast(lead_id as bigint)) % " ~ partitions ~ " = " ~ partition -%}
{%- endif %}
{%- set relation = relation or source('raw', 'activities') %}
{%- set type_name = "lower(trim(cast(activity_type as string)))" %}

with

known_types as (
    select distinct
        cast(lead_id as bigint) as lead_id,
        cast(occurred_at as timestamp) as occurred_at,
        {{ activity_type_id(type_name) }} as activity_type_id
    from {{ relation }}
    where
        lead_id is not null
        and occurred_at is not null
        and {{ activity_type_id(type_name) }} is not null
        {{ partition_filter }}
),

other_types as (
    select distinct
        cast(lead_id as bigint) as lead_id,
        cast(occurred_at as timestamp) as occurred_at,
        {{ type_name }} as activity_type
    from {{ relation }}
    where
        lead_id is not null
        and occurred_at is not null
        and {{ activity_type_id(type_name) }} is null
        {{ partition_filter }}
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
{%- endmacro %}
