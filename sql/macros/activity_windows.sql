{#- The activity counters of the windows, in their column order: per window of
    var('activity_windows_days') the count of every activity, the trend's previous week
    (14 to 7 days back), then per type and window. `from_days`/`to_days`: the counter's window
    is [as_of - from_days, as_of - to_days). One list for the aggregates below and for
    bringing the windows forward (int_scoring_activity_windows). -#}
{% macro window_counters() -%}
    {%- set counters = [] %}
    {%- for days in var('activity_windows_days') %}
        {%- do counters.append({'column': 'n_activities_' ~ days ~ 'd', 'from_days': days, 'to_days': 0, 'type_id': none}) %}
    {%- endfor %}
    {%- do counters.append({'column': 'n_activities_prev_7d', 'from_days': 14, 'to_days': 7, 'type_id': none}) %}
    {%- for activity_type in var('activity_types') %}
        {%- set type_id = loop.index %}
        {%- for days in var('activity_windows_days') %}
            {%- do counters.append({
                'column': 'n_' ~ activity_type ~ '_' ~ days ~ 'd', 'from_days': days, 'to_days': 0,
                'type_id': type_id, 'type': activity_type,
            }) %}
        {%- endfor %}
    {%- endfor %}
    {{ return(counters) }}
{%- endmacro %}

{#- Whether activity `a` falls in the counter's window as of `as_of`, given a.occurred_at <
    as_of (the callers' filter), so a window ending at as_of needs no upper bound. -#}
{% macro counter_filter(counter, a, as_of) -%}
    {%- if counter['type_id'] is not none -%}
        {{ a }}.activity_type_id = {{ counter['type_id'] }}  -- {{ counter['type'] }}
        and {{ a }}.occurred_at >= {{ as_of }} - interval {{ counter['from_days'] }} day
    {%- elif counter['to_days'] > 0 -%}
        {{ a }}.occurred_at >= {{ as_of }} - interval {{ counter['from_days'] }} day
        and {{ a }}.occurred_at < {{ as_of }} - interval {{ counter['to_days'] }} day
    {%- else -%}
        {{ a }}.occurred_at >= {{ as_of }} - interval {{ counter['from_days'] }} day
    {%- endif -%}
{%- endmacro %}

{#- Aggregates over one lead's activities strictly before `as_of` (a SQL expression).
    Used by the scoring and the training windows alike, so a feature means the same thing
    at training and at scoring time. The caller filters `a.occurred_at < as_of`.
    Types are matched on activity_type_id (see stg_activities): a number compare per row
    instead of a string compare, for 24 filtered counts over every activity. -#}
{% macro activity_window_aggregates(as_of) -%}
    count(*) as n_activities_total,
    {%- for counter in window_counters() %}
    {%- if counter['type_id'] is none and counter['to_days'] == 0 %}
    count(*) filter (where {{ counter_filter(counter, 'a', as_of) }}) as {{ counter['column'] }},
    {%- else %}
    count(*) filter (
        where {{ counter_filter(counter, 'a', as_of) }}
    ) as {{ counter['column'] }},
    {%- endif %}
    {%- endfor %}
    min(a.occurred_at) as first_activity_at,
    max(a.occurred_at) as last_activity_at
{%- endmacro %}

{#- The edges of the windows that move when as_of moves `gap_days` forward from a previous
    as_of P: [P - k, P - k + gap_days) for every window bound k, as [from, to] days before P
    (overlapping ones merged, so each activity is read once; none past P, where nothing was
    counted). Outside them, an activity counted at P is in the same windows at as_of. -#}
{% macro window_edges(gap_days) -%}
    {%- set bounds = [] %}
    {%- for counter in window_counters() %}
        {%- for k in [counter['from_days'], counter['to_days']] if k > 0 and k not in bounds %}
            {%- do bounds.append(k) %}
        {%- endfor %}
    {%- endfor %}
    {%- set edges = [] %}
    {%- for k in bounds | sort(reverse=true) %}
        {%- if edges and k > edges[-1][1] %}
            {%- do edges.append([edges.pop()[0], [k - gap_days, 0] | max]) %}
        {%- else %}
            {%- do edges.append([k, [k - gap_days, 0] | max]) %}
        {%- endif %}
    {%- endfor %}
    {{ return(edges) }}
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
