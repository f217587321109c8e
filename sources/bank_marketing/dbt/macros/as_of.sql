{#- The feature cut-off as a SQL date literal (same macro as the synthetic project's). -#}
{% macro as_of_date() -%}
    {%- set raw = var('as_of') | string -%}
    {%- if not modules.re.fullmatch('[0-9]{4}-[0-9]{2}-[0-9]{2}', raw) -%}
        {{ exceptions.raise_compiler_error("var('as_of') must be a date YYYY-MM-DD, got '" ~ raw ~ "'") }}
    {%- endif -%}
    date '{{ raw }}'
{%- endmacro %}

{#- Where a mart is exported: $MLSYS_DATA_DIR/features/<mart>/<as_of>.parquet, the paths the
    pipeline reads (mlsys.settings). -#}
{% macro feature_location(mart) -%}
    {{ env_var('MLSYS_DATA_DIR', '../../../var/bank_marketing/data') }}/features/{{ mart }}/{{ var('as_of') }}.parquet
{%- endmacro %}
