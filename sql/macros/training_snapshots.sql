{#- The weekly training snapshot dates as of var('as_of'), oldest first: the last one is
    as_of - horizon_days (so every label's horizon has passed), then one a week back, for
    var('snapshot_weeks') weeks. mlsys.snapshots.snapshot_dates is the same rule in Python. -#}
{% macro training_snapshot_dates() -%}
    {%- set as_of = modules.datetime.date.fromisoformat(var('as_of') | string) -%}
    {%- set last = as_of - modules.datetime.timedelta(days=var('horizon_days') | int) -%}
    {%- set weeks = var('snapshot_weeks') | int -%}
    {%- set dates = [] -%}
    {%- for back in range(weeks - 1, -1, -1) -%}
        {%- do dates.append((last - modules.datetime.timedelta(days=7 * back)).isoformat()) -%}
    {%- endfor -%}
    {{ return(dates) }}
{%- endmacro %}

{#- The features of every lead known at `snapshot` (a date literal), from activities strictly
    before it: the nightly lead_features query for one date, so a kept snapshot is exactly
    what scoring would have computed that night from the same data. -#}
{% macro snapshot_features(snapshot) -%}
    select
        leads.lead_id,
        {{ snapshot }} as as_of,
        {{ lead_feature_columns('leads', 'windows', snapshot) }}
    from {{ ref('stg_leads') }} as leads
    left join (
        select
            a.lead_id,
            {{ activity_window_aggregates(snapshot) }}
        from {{ ref('stg_activities') }} as a
        where a.occurred_at < {{ snapshot }}
        group by a.lead_id
    ) as windows on leads.lead_id = windows.lead_id
    where leads.created_at < {{ snapshot }}
{%- endmacro %}

{#- A fingerprint of the feature SQL: kept snapshots built by other feature SQL (a feature
    added, a window changed) are not reused, they are dropped and built again. -#}
{% macro snapshot_features_fingerprint() -%}
    {{ return(local_md5(lead_feature_columns('l', 'w', 'd') ~ activity_window_aggregates('d'))) }}
{%- endmacro %}
