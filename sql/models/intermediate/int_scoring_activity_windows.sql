-- Activity windows of every lead as of var('as_of'). One date, so activities are filtered
-- and aggregated per lead first (no join of the activity table against a date spine).
--
-- var('activity_partitions') > 1 (mlsys sets it from the landed row count): the leads are
-- split by hash(lead_id) into that many parts, each de-duplicated and aggregated on its own,
-- so each DISTINCT's hash table holds a share of the activities instead of spilling all of
-- them (5M leads / 150M activities: 75 s -> 51 s with 8 parts; same rows). A lead's
-- activities all fall in one part, so its aggregates are complete there.
-- depends_on: {{ ref('stg_activities') }}
{%- set partitions = var('activity_partitions', 1) | int %}

{%- if partitions <= 1 %}
    select
        a.lead_id,
        {{ activity_window_aggregates(as_of_date()) }}
    from {{ ref('stg_activities') }} as a
    where a.occurred_at < {{ as_of_date() }}
    group by a.lead_id
{%- else %}
    {%- for partition in range(partitions) %}
    select
        a.lead_id,
        {{ activity_window_aggregates(as_of_date()) }}
    from ({{ deduplicated_activities(partition, partitions) }}) as a
    where a.occurred_at < {{ as_of_date() }}
    group by a.lead_id
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
{%- endif %}
