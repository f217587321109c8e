{#- The feature columns of a contact, shared by lead_features and training_snapshots so the
    scorer and the trainer see the same definitions. Only what is known before the call:
    call_duration_seconds is deliberately absent (it leaks the outcome). -#}
{% macro bank_feature_columns(c) -%}
    {{ c }}.age,
    case
        when {{ c }}.age < 25 then 'under_25'
        when {{ c }}.age < 35 then '25_34'
        when {{ c }}.age < 50 then '35_49'
        when {{ c }}.age < 60 then '50_59'
        else '60_plus'
    end as age_band,
    {{ c }}.job,
    {{ c }}.marital,
    {{ c }}.education,
    {{ c }}.has_credit_in_default,
    {{ c }}.balance_eur,
    {{ c }}.has_housing_loan,
    {{ c }}.has_personal_loan,
    {{ c }}.contact_channel,
    {{ c }}.contact_month,
    {{ c }}.contact_day_of_month,
    {{ c }}.contact_weekday,
    {{ c }}.contacts_this_campaign,
    {{ c }}.days_since_previous_campaign,
    {{ c }}.contacts_before_this_campaign,
    {{ c }}.previous_outcome
{%- endmacro %}
