{#- The marts' `external` materialization on Spark (DuckDB's comes with dbt-duckdb): the rows
    are written as Parquet at config('location') and the model's relation is a view over that
    path, so dbt's tests and any Spark reader query the exported file itself.

    Spark writes a location as a folder of part files; one part here (COALESCE(1)), which
    mlsys then moves to the location as a single file (mlsys.engines.spark.flatten_mart), the
    layout every reader of the marts expects. A folder left by a dbt run by hand reads the
    same with DuckDB (`<location>/*.parquet`), pyarrow or Spark.

    Row groups of 122,880 rows, DuckDB's: Spark's default (128 MB groups, about 3.9M rows of
    lead_features at 10M leads) made the features gate, which reads the mart through DuckDB
    with 256 MB of memory, run out of it (docs/benchmarks.md). -#}
{% materialization external, adapter='spark' %}
    {%- set location = config.require('location') -%}
    {%- set quoted_location = "'" ~ location | replace("\\", "\\\\") | replace("'", "\\'") ~ "'" -%}
    {%- set existing = adapter.get_relation(database=this.database, schema=this.schema, identifier=this.identifier) -%}
    {%- set target_relation = this.incorporate(type='view') -%}

    {{ run_hooks(pre_hooks) }}
    {%- if existing is not none and existing.type != 'view' %}
        {{ adapter.drop_relation(existing) }}
    {%- endif %}

    {% call statement('main') -%}
        insert overwrite directory {{ quoted_location }} using parquet
        options ('parquet.block.row.count.limit' '122880')
        select /*+ COALESCE(1) */ * from (
            {{ sql }}
        ) as mart
    {%- endcall %}

    {% call statement('relation') -%}
        create or replace view {{ target_relation }} as select * from parquet.`{{ location }}`
    {%- endcall %}

    {{ run_hooks(post_hooks) }}
    {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}
