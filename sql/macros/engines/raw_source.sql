{#- The raw landing tables as the engine reads them. On DuckDB the source's
    meta.external_location (read_parquet of the folder, _sources.yml) does it; Spark reads
    the same folder as a path-addressed Parquet relation, with the files' schemas merged
    (spark.sql.parquet.mergeSchema, profiles.yml) as DuckDB's union_by_name does. -#}
{% macro source(source_name, table_name) -%}
    {%- set relation = builtins.source(source_name, table_name) -%}
    {%- if target.type == 'spark' and source_name == 'raw' -%}
        {{- return('parquet.`' ~ env_var('MLSYS_DATA_DIR', '../var/data') ~ '/raw/' ~ relation.identifier ~ '`') -}}
    {%- endif -%}
    {{- return(relation) -}}
{%- endmacro %}
