{#- A data test's `where: __last_load__` keeps it to the rows that this build's load of an
    incremental staging model inserted (its <model>__loads bookkeeping: landing_files.sql).
    A row-wise test (not null, a value in the vocabulary, a lead that exists) gives each row the
    same verdict every night: testing the history again each night made the tests cost what
    the history costs (three scans of 300M activities at 10M leads). A full refresh's load is
    every row, so it tests everything. Where the model keeps no bookkeeping (Spark rebuilds it
    from every file at each build) the test reads the whole model.
    dbt's own macro, overridden as its docs suggest for a `where` with placeholders. -#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') %}
    {%- if where and '__last_load__' in where %}
        {%- set last_load = "landing_batch = (select max(batch) from " ~ landing_relation('loads', relation) ~ ")" if target.type == 'duckdb' else "true" %}
        {%- set where = where | replace('__last_load__', last_load) %}
    {%- endif %}
    {%- if where %}
        {%- do return("(select * from " ~ relation ~ " where " ~ where ~ ") dbt_subquery") %}
    {%- else %}
        {%- do return(relation) %}
    {%- endif %}
{%- endmacro %}
