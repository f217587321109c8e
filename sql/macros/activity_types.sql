{#- The activity types of var('activity_types') as small integers (1 = the first), so wide
    aggregations can key and filter on a number instead of a string; null for any other type. -#}
{% macro activity_type_id(name) -%}
    case {{ name }}
    {%- for activity_type in var('activity_types') %} when '{{ activity_type }}' then {{ loop.index }}{% endfor %} end
{%- endmacro %}

{#- The name back from activity_type_id(). -#}
{% macro activity_type_name(type_id) -%}
    case {{ type_id }}
    {%- for activity_type in var('activity_types') %} when {{ loop.index }} then '{{ activity_type }}'{% endfor %} end
{%- endmacro %}
