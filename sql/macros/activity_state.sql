{#- The start of the longest window a scoring feature reads (the 90-day counts, the 14 days
    of the trend), as a timestamp expression: the per-lead state holds what came before it. -#}
{% macro window_start(as_of) -%}
    {%- set longest = [var('activity_windows_days') | max, 14] | max -%}
    cast({{ as_of }} - interval {{ longest }} day as timestamp)
{%- endmacro %}

{#- The stg_activities loads' bookkeeping table (sql/macros/activity_landings.sql). -#}
{% macro activity_loads_relation() -%}
    {{- api.Relation.create(database=this.database, schema=this.schema, identifier='stg_activities__loads') -}}
{%- endmacro %}

{#- What int_scoring_activity_windows records of the build that made it: its as_of, the last
    stg_activities load and the generation it counted, and the fingerprint of the window SQL. -#}
{% macro windows_bookkeeping_columns(as_of, fingerprint) -%}
    {{ as_of }} as windows_as_of,
    (select coalesce(max(loads.batch), 0) from {{ activity_loads_relation() }} as loads) as windows_batch,
    (select any_value(loads.generation) from {{ activity_loads_relation() }} as loads) as windows_generation,
    '{{ fingerprint }}' as windows_fingerprint
{%- endmacro %}

{#- The windows the previous build left, if this build can bring them forward to var('as_of'):
    {'as_of', 'batch', 'gap_days'}, or none (see int_scoring_activity_windows for when). -#}
{% macro brought_forward_windows(fingerprint) -%}
    {%- set relation = adapter.get_relation(this.database, this.schema, this.identifier) %}
    {%- if relation is none
        or 'windows_fingerprint' not in adapter.get_columns_in_relation(relation) | map(attribute='name') | list %}
        {{ return(none) }}
    {%- endif %}
    {%- set kept = run_query(
        "select strftime(any_value(windows_as_of), '%Y-%m-%d'), max(windows_batch), "
        ~ "any_value(windows_generation), any_value(windows_fingerprint) from " ~ this
    ).rows[0] %}
    {%- set current = run_query(
        "select any_value(generation), coalesce(max(batch) filter (where rebuilt_windows > 0 or full_refresh), 0) "
        ~ "from " ~ activity_loads_relation()
    ).rows[0] %}
    {%- if kept[0] is none or kept[2] != current[0] or kept[3] != fingerprint or current[1] > kept[1] %}
        {{ return(none) }}
    {%- endif %}
    {%- set as_of = modules.datetime.date.fromisoformat(var('as_of') | string) %}
    {%- set gap_days = (as_of - modules.datetime.date.fromisoformat(kept[0])).days %}
    {%- if gap_days < 0 or gap_days > var('windows_brought_forward_days') | int %}
        {{ return(none) }}
    {%- endif %}
    {{ return({'as_of': kept[0], 'batch': kept[1] | int, 'gap_days': gap_days}) }}
{%- endmacro %}
