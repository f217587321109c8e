{#- The feature cut-off as a SQL date literal (same macro as the synthetic project's). -#}
{% macro as_of_date() -%}
    {%- set raw = var('as_of') | string -%}
    {%- if not modules.re.fullmatch('[0-9]{4}-[0-9]{2}-[0-9]{2}', raw) -%}
        {{ exceptions.raise_compiler_error("var('as_of') must be a date YYYY-MM-DD, got '" ~ raw ~ "'") }}
    {%- endif -%}
    date '{{ raw }}'
{%- endmacro %}

{#- Where a mart is exported: one Parquet file per as_of under $MLSYS_DATA_DIR/features/<mart>/.
    Deliberately not a Hive `as_of=<date>/` folder: DuckDB's hive-partition detection would
    overwrite the `as_of` column of every row (training snapshots have many) with the folder's.
    With var('stage_features') true (mlsys's nightly and retrain builds) the file goes to
    features/.staging/<mart>/ instead, and the gate moves it into place only when it passes:
    a build that fails its gate never replaces the features a published night was scored from. -#}
{% macro feature_location(mart) -%}
    {{ env_var('MLSYS_DATA_DIR', '../../../var/bank_marketing/data') }}/features/{{ '.staging/' if var('stage_features', false) }}{{ mart }}/{{ var('as_of') }}.parquet
{%- endmacro %}
