{#- `<relation>.* <all but columns>`: every column of a relation but the named ones. DuckDB
    spells it `* exclude (...)`, Spark `* except (...)` (DuckDB takes both; the SQL linter's
    DuckDB dialect only the first). -#}
{% macro star_except(relation, columns) -%}
    {{ return(adapter.dispatch('star_except', 'mlsys')(relation, columns)) }}
{%- endmacro %}

{% macro default__star_except(relation, columns) -%}
    {{ relation }}.* exclude ({{ columns | join(', ') }})
{%- endmacro %}

{% macro spark__star_except(relation, columns) -%}
    {{ relation }}.* except ({{ columns | join(', ') }})
{%- endmacro %}
