{#- The start of the longest window a scoring feature reads (the 90-day counts, the 14 days
    of the trend), as a timestamp expression: the per-lead state holds what came before it. -#}
{% macro window_start(as_of) -%}
    {%- set longest = [var('activity_windows_days') | max, 14] | max -%}
    cast({{ as_of }} - interval {{ longest }} day as timestamp)
{%- endmacro %}
