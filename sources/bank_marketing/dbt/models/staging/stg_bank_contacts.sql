-- One row per contact, typed and dated. The export has no identifier and no year: the
-- contact_id is the row's position in the export and the year starts at var('first_year'),
-- incrementing whenever the month number goes down (the rows are in date order). Both rely on
-- the profile's preserve_insertion_order = true.
with

source as (
    select * from {{ source('bank', 'contacts') }}
),

numbered as (
    select
        row_number() over () as contact_id,
        source.*
    from source
),

months as (
    select
        numbered.*,
        list_position(
            ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'],
            lower(trim(numbered.month))
        ) as month_number
    from numbered
),

new_years as (
    select
        months.*,
        coalesce(months.month_number < lag(months.month_number) over (order by months.contact_id), false)
            as starts_a_year
    from months
),

years as (
    select
        new_years.*,
        {{ var('first_year') }}
        + sum(cast(new_years.starts_a_year as integer)) over (order by new_years.contact_id) as contact_year
    from new_years
),

renamed as (
    select
        cast(contact_id as bigint) as contact_id,
        make_date(cast(contact_year as integer), month_number, cast(day as integer)) as contact_date,
        cast(age as integer) as age,
        lower(trim(job)) as job,
        lower(trim(marital)) as marital,
        lower(trim(education)) as education,
        lower(trim("default")) as has_credit_in_default,
        cast(balance as bigint) as balance_eur,
        lower(trim(housing)) as has_housing_loan,
        lower(trim(loan)) as has_personal_loan,
        lower(trim(contact)) as contact_channel,
        lower(trim(month)) as contact_month,
        cast(day as integer) as contact_day_of_month,
        cast(campaign as integer) as contacts_this_campaign,
        case when cast(pdays as integer) >= 0 then cast(pdays as integer) end as days_since_previous_campaign,
        cast(previous as integer) as contacts_before_this_campaign,
        case when cast(pdays as integer) < 0 then 'not_contacted' else lower(trim(poutcome)) end
            as previous_outcome,
        cast(duration as integer) as call_duration_seconds,
        lower(trim(y)) = 'yes' as subscribed
    from years
)

select
    renamed.*,
    lower(dayname(renamed.contact_date)) as contact_weekday
from renamed
