{#- Aggregates over one lead's activities strictly before `as_of` (a SQL expression).
    Used by the scoring and the training windows alike, so a feature means the same thing
    at training and at scoring time. The caller filters `a.occurred_at < as_of`.
    Types are matched on activity_type_id (see stg_activities): a number compare per row
    instead of a string compare, for 24 filtered counts over every activity. -#}
{% macro activity_window_aggregates(as_of) -%}
    count(*) as n_activities_total,
    {%- for days in var('activity_windows_days') %}
    count(*) filter (where a.occurred_at >= {{ as_of }} - interval {{ days }} day) as n_activities_{{ days }}d,
    {%- endfor %}
    count(*) filter (
        where a.occurred_at >= {{ as_of }} - interval 14 day
        and a.occurred_at < {{ as_of }} - interval 7 day
    ) as n_activities_prev_7d,
    {%- for activity_type in var('activity_types') %}
    {%- set type_id = loop.index %}
    {%- for days in var('activity_windows_days') %}
    count(*) filter (
        where a.activity_type_id = {{ type_id }}  -- {{ activity_type }}
        and a.occurred_at >= {{ as_of }} - interval {{ days }} day
    ) as n_{{ activity_type }}_{{ days }}d,
    {%- endfor %}
    {%- endfor %}
    min(a.occurred_at) as first_activity_at,
    max(a.occurred_at) as last_activity_at
{%- endmacro %}

{#- The feature columns of both marts, from a lead row `l`, its window row `w` (left-joined,
    so counts of leads without activity are 0, not null) and the cut-off `as_of`. -#}
{% macro lead_feature_columns(l, w, as_of) -%}
    {{ l }}.source,
    {{ l }}.industry,
    {{ l }}.country,
    {{ l }}.job_level,
    {{ l }}.company_size,
    cast(floor({{ seconds_between(l ~ '.created_at', 'cast(' ~ as_of ~ ' as timestamp)') }} / 86400) as integer) as lead_age_days,
    {{ seconds_between(w ~ '.first_activity_at', 'cast(' ~ as_of ~ ' as timestamp)') }} / 86400.0 as days_since_first_activity,
    {{ seconds_between(w ~ '.last_activity_at', 'cast(' ~ as_of ~ ' as timestamp)') }} / 86400.0 as days_since_last_activity,
    coalesce({{ w }}.n_activities_total, 0) as n_activities_total,
    {%- for days in var('activity_windows_days') %}
    coalesce({{ w }}.n_activities_{{ days }}d, 0) as n_activities_{{ days }}d,
    {%- endfor %}
    coalesce({{ w }}.n_activities_7d, 0) - coalesce({{ w }}.n_activities_prev_7d, 0) as activity_trend_7d,
    {%- for activity_type in var('activity_types') %}
    {%- for days in var('activity_windows_days') %}
    coalesce({{ w }}.n_{{ activity_type }}_{{ days }}d, 0) as n_{{ activity_type }}_{{ days }}d{{ "," if not loop.last }}
    {%- endfor %}{{ "," if not loop.last }}
    {%- endfor %}
{%- endmacro %}
