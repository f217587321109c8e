{#- Seconds from timestamp `start` to timestamp `end` as a double (fractions kept): the age and
    recency features. DuckDB takes the epoch of the interval, which it holds as whole days
    plus microseconds and converts as days * 86400 + micros / 1e6. Spark has no interval
    epoch: it subtracts the instants in microseconds and converts in the same two parts, so
    both engines round to the same double (micros / 1e6 in one step differs in the last bit
    for about one value in a thousand). -#}
{% macro seconds_between(start, end) -%}
    {{ return(adapter.dispatch('seconds_between', 'mlsys')(start, end)) }}
{%- endmacro %}

{% macro default__seconds_between(start, end) -%}
    epoch({{ end }} - {{ start }})
{%- endmacro %}

{% macro spark__seconds_between(start, end) -%}
    {%- set micros = "(unix_micros(" ~ end ~ ") - unix_micros(" ~ start ~ "))" -%}
    (cast(div({{ micros }}, 86400000000) as double) * 86400 + cast({{ micros }} % 86400000000 as double) / 1000000)
{%- endmacro %}
