-- The conversions known at var('as_of'), in the shape of the raw contract's conversions table
-- (docs/contracts.md): the realized-performance check joins scored partitions to it
-- (MLSYS_CONVERSIONS in ../../bank_marketing.env). A subscription happens on the call itself.
-- Written next to the marts' folders, not in one of its own: DuckDB's COPY creates no folder,
-- and the pipeline creates only those of lead_features and training_snapshots.
{{ config(location=env_var('MLSYS_DATA_DIR', '../../../var/bank_marketing/data') ~ '/features/conversions-' ~ var('as_of') ~ '.parquet') }}

select
    contact_id as lead_id,
    cast(contact_date as timestamp) as converted_at
from {{ ref('stg_bank_contacts') }}
where subscribed and contact_date < {{ as_of_date() }}
