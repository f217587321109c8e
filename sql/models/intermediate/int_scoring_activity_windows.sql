-- Activity windows of every lead as of var('as_of'): the windows (up to 90 days) from the
-- activities inside them, the totals, first and last touch from the per-lead state of what
-- came before (int_lead_activity_state). stg_activities is laid out by occurred_at, so the
-- window's filter skips the row groups of the rest of the history.
--
-- var('features_from_full_history') true: every aggregate straight from all the activities
-- before as_of (the reference the tests compare with; the same rows).
{%- if var('features_from_full_history', false) %}
{#- The state stays in the lineage (a build of +lead_features keeps it current), called
    without rendering: the compiled SQL of this mode reads only stg_activities. #}
{%- set _state = ref('int_lead_activity_state') %}
select
    a.lead_id,
    {{ activity_window_aggregates(as_of_date()) }}
from {{ ref('stg_activities') }} as a
where a.occurred_at < {{ as_of_date() }}
group by a.lead_id
{%- else %}
    with

    recent as (
        select
            a.lead_id,
            {{ activity_window_aggregates(as_of_date()) }}
        from {{ ref('stg_activities') }} as a
        where a.occurred_at >= {{ window_start(as_of_date()) }} and a.occurred_at < {{ as_of_date() }}
        group by a.lead_id
    )

    select
        coalesce(recent.lead_id, state.lead_id) as lead_id,
        coalesce(state.n_activities, 0) + coalesce(recent.n_activities_total, 0) as n_activities_total,
        {{ star_except('recent', ['lead_id', 'n_activities_total', 'first_activity_at', 'last_activity_at']) }},
        coalesce(state.first_activity_at, recent.first_activity_at) as first_activity_at,
        coalesce(recent.last_activity_at, state.last_activity_at) as last_activity_at
    from recent
    full outer join {{ ref('int_lead_activity_state') }} as state on recent.lead_id = state.lead_id
{%- endif %}
