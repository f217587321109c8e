"""The files of a scaffolded source (``mlsys source new``), rendered from a :class:`Plan` and written."""

from __future__ import annotations

import re
from pathlib import Path

from mlsys.onboarding.scaffold import LABEL_PLACEHOLDER, ExportColumn, Plan, inspect_export, plan, sql_str
from mlsys.onboarding.sources import SOURCES_DIR, SourceError, check_name


def _quoted(name: str) -> str:
    return name if re.fullmatch(r"[a-z_][a-z0-9_]*", name) else '"' + name.replace('"', '""') + '"'


def _yaml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _feature_kind(c: ExportColumn) -> str:
    return "numeric" if c.declared in ("BIGINT", "DOUBLE") else "categorical"


def _feature_sql(c: ExportColumn) -> str:
    # Booleans become 'true'/'false' categories: the model's categorical encoder reads text.
    return (
        f"cast({{{{ c }}}}.{c.name} as varchar) as {c.name}"
        if c.declared == "BOOLEAN"
        else f"{{{{ c }}}}.{c.name}"
    )


def _label_sql(p: Plan) -> str:
    if p.label is None:
        return f"{LABEL_PLACEHOLDER}, else 0 (e.g. stg.converted = 'yes')"
    c = p.label
    if c.declared == "BOOLEAN":
        return f"stg.{c.name}  -- 1 when {c.raw_name} is true"
    if c.declared in ("BIGINT", "DOUBLE"):
        return f"stg.{c.name} > 0  -- EDIT if {c.raw_name} is not 1 for a conversion"
    return f"stg.{c.name} = 'EDIT'  -- EDIT: the value of {c.raw_name} that means converted"


def _env(p: Plan) -> str:
    n = p.name
    return f"""\
# Switch the pipeline to the source {n}: `set -a; . sources/{n}/{n}.env; set +a` from the
# repository root (then any mlsys command, or `make airflow`). Paths are relative to the
# repository root. Everything this source writes (raw landing copy, features, warehouse, MLflow
# store, scored table) lives under its own home, apart from every other source's.
# Land the export under $MLSYS_HOME/data/raw/{n}/ (docs/onboarding.md, step 1).
MLSYS_HOME=var/{n}
MLSYS_DBT_PROJECT_DIR=sources/{n}/dbt
MLSYS_GX_CONTEXT_DIR=sources/{n}/great_expectations
MLSYS_MODEL_NAME={n}
MLSYS_EXPERIMENT={n}
# An export without dates has one training snapshot holding each lead once: split it at random
# (stratified). EDIT: with dated rows and weekly snapshots, remove this line (split by time).
MLSYS_SPLIT=random
# Calibrate with isotonic or sigmoid, whichever has the lower cross-validated log-loss: on a
# few thousand leads a sigmoid often wins (isotonic's steps overfit a small calibration set).
MLSYS_CALIBRATION=auto
# Dated conversions (lead_id, converted_at) let the realized-performance check compare scores
# with outcomes. EDIT: point this at a mart that writes them, e.g. features/conversions-*.parquet;
# without it that check cannot run (docs/onboarding.md, "Exports without dates").
# MLSYS_CONVERSIONS=features/conversions-*.parquet
"""


def _dbt_project(p: Plan) -> str:
    return f"""\
# The CRM export {p.export.path.name} onboarded as the source {p.name} (mlsys source new).
# Staging types and renames the export; the marts follow the output contract
# (docs/onboarding.md). Switch the pipeline to it with ../{p.name}.env.
name: {p.name}
version: "1.0.0"
config-version: 2
profile: mlsys

model-paths: ["models"]
macro-paths: ["macros"]
test-paths: ["tests"]
clean-targets: ["target", "logs"]

flags:
  send_anonymous_usage_stats: false
  indirect_selection: buildable

vars:
  # Passed by the pipeline on every run; defaults only let `dbt parse` run by hand.
  as_of: "2026-01-01"
  horizon_days: 30
  snapshot_weeks: 12

models:
  {p.name}:
    +persist_docs:
      relation: false
    staging:
      +materialized: table
    marts:
      +materialized: external
      +format: parquet
"""


def _profiles(p: Plan) -> str:
    return f"""\
# Same profile as the built-in project's sql/profiles.yml (paths from MLSYS_* variables).
mlsys:
  target: "{{{{ env_var('MLSYS_DBT_TARGET', 'dev') }}}}"
  outputs:
    dev:
      type: duckdb
      path: "{{{{ env_var('MLSYS_WAREHOUSE', '../../../var/{p.name}/warehouse.duckdb') }}}}"
      threads: 2
      settings:
        preserve_insertion_order: false
        memory_limit: "{{{{ env_var('MLSYS_DUCKDB_MEMORY_LIMIT', '1400MB') }}}}"
    prod:
      type: duckdb
      path: "{{{{ env_var('MLSYS_WAREHOUSE', '/opt/mlsys/var/warehouse.duckdb') }}}}"
      threads: "{{{{ env_var('MLSYS_DBT_THREADS', '4') | int }}}}"
      settings:
        preserve_insertion_order: false
        memory_limit: "{{{{ env_var('MLSYS_DUCKDB_MEMORY_LIMIT', '3GB') }}}}"
"""


_SQLFLUFF = """\
[sqlfluff]
dialect = duckdb
templater = dbt
max_line_length = 110
# Layout rules that fight dbt's Jinja-generated column lists are excluded; the rest apply.
# RF04: an export's columns may be named like SQL keywords (status, source, ...).
exclude_rules = LT05, ST06, AM04, RF04
large_file_skip_byte_limit = 0

[sqlfluff:templater:dbt]
project_dir = .
profiles_dir = .
profile = mlsys
target = dev

[sqlfluff:templater:jinja]
apply_dbt_builtins = True

[sqlfluff:rules:capitalisation.keywords]
capitalisation_policy = lower

[sqlfluff:rules:capitalisation.functions]
extended_capitalisation_policy = lower

[sqlfluff:rules:capitalisation.literals]
capitalisation_policy = lower

[sqlfluff:rules:capitalisation.types]
extended_capitalisation_policy = lower

[sqlfluff:rules:aliasing.table]
aliasing = explicit

[sqlfluff:rules:aliasing.column]
aliasing = explicit
"""

_AS_OF = """\
{#- The feature cut-off as a SQL date literal (same macro as the built-in project's). -#}
{% macro as_of_date() -%}
    {%- set raw = var('as_of') | string -%}
    {%- if not modules.re.fullmatch('[0-9]{4}-[0-9]{2}-[0-9]{2}', raw) -%}
        {{ exceptions.raise_compiler_error("var('as_of') must be a date YYYY-MM-DD, got '" ~ raw ~ "'") }}
    {%- endif -%}
    date '{{ raw }}'
{%- endmacro %}

{#- Where a mart is exported: $MLSYS_DATA_DIR/features/<mart>/<as_of>.parquet, or under
    features/.staging/ while the gate has not passed it (var('stage_features'), set by mlsys). -#}
{% macro feature_location(mart) -%}
    {{- env_var('MLSYS_DATA_DIR', '../../../var/NAME/data') ~ '/features/' -}}
    {{- '.staging/' if var('stage_features', false) -}}
    {{- mart ~ '/' ~ var('as_of') ~ '.parquet' -}}
{%- endmacro %}
"""


def _sources(p: Plan) -> str:
    e = p.export
    pattern = "*.csv*" if e.is_csv else "*.parquet"
    location = f"'{{{{ env_var('MLSYS_DATA_DIR', '../../../var/{p.name}/data') }}}}/raw/{p.name}/{pattern}'"
    if e.is_csv:
        delim = f", delim = {sql_str(e.delimiter)}" if e.delimiter else ""
        reader = f"read_csv({location}, header = true, sample_size = -1, union_by_name = true{delim})"
    else:
        reader = f"read_parquet({location}, union_by_name = true)"
    lines = [
        "version: 2",
        "",
        "sources:",
        f"  - name: {p.name}",
        "    description: >",
        f"      The CRM export as landed: files under $MLSYS_DATA_DIR/raw/{p.name}/ ({pattern}), read by",
        "      DuckDB over every row (sample_size = -1). The gate's raw suite checks the same columns",
        f"      and types before dbt runs (great_expectations/mlsys_gate.yml, source: {p.name}.export).",
        "    meta:",
        "      external_location: >-",
        f"        {reader}",
        "    tables:",
        "      - name: export",
        f"        description: {_yaml_str(f'One row per lead ({e.rows} rows in {e.path.name}).')}",
        "        # data_type: the DuckDB type of the whole file. EDIT the descriptions; mark each column",
        "        # that is filled in after the outcome (it leaks it) and keep it out of the features.",
        "        columns:",
    ]
    for c in e.columns:
        if c.declared is None:
            lines.append(
                f"          # {c.raw_name}: {c.duckdb_type}, not checked by the gate (no contract type)"
            )
            continue
        lines += [
            f"          - name: {_yaml_str(c.raw_name)}",
            f"            data_type: {c.declared}",
            f"            description: {_yaml_str('EDIT: what it is; known before the outcome?')}",
        ]
        if c.nulls == 0 and c is p.id_column:
            lines += ["            meta:", "              nullable: false"]
    return "\n".join(lines) + "\n"


def _staging_sql(p: Plan) -> str:
    cols = [
        f"        cast({_quoted(c.raw_name)} as {c.duckdb_type.lower()}) as {c.name}"
        for c in p.export.columns
        if c.declared is not None
    ]
    body = ",\n".join(cols)
    return f"""\
-- One row per record of the export: columns renamed to snake_case and cast to the types DuckDB
-- reads over the whole file. EDIT: trim or lower-case text, parse dates kept as text, and
-- describe in _staging.yml any column that leaks the outcome (filled in after the contact).
with

source as (
    select * from {{{{ source('{p.name}', 'export') }}}}
),

renamed as (
    select
{body}
    from source
)

select * from renamed
"""  # noqa: S608 - a dbt model written to a file, never run here


def _features_macro(p: Plan) -> str:
    body = ",\n".join(f"    {_feature_sql(c)}" for c in p.features)
    notes = "\n".join(f"    - {c.name}: {why}" for c, why in p.left_out) or "    (none)"
    return f"""\
{{#- The features of a lead, shared by lead_features and training_snapshots so the scorer and
    the trainer see the same definitions. One line per feature here plus one YAML block in
    models/marts/_marts.yml. EDIT: remove every column that is filled in after the outcome
    (it leaks it: e.g. a stage, a reason lost, a deal value), and derive features from dates.
    Left out when scaffolded:
{notes}
-#}}
{{% macro {p.name}_feature_columns(c) -%}}
{body}
{{%- endmacro %}}
"""


def _lead_features_sql(p: Plan) -> str:
    return f"""\
-- The leads to score as of var('as_of'), one row each (the output contract: lead_id, as_of and
-- the features). EDIT: keep only the leads still open at as_of (in an export without dates,
-- e.g. those without an outcome yet); with dated rows, only what happened before as_of.
{{{{ config(location=feature_location('lead_features')) }}}}

select
    stg.{p.id_column.name} as lead_id,
    {{{{ as_of_date() }}}} as as_of,
    {{{{ {p.name}_feature_columns('stg') }}}}
from {{{{ ref('stg_{p.name}') }}}} as stg
"""  # noqa: S608 - a dbt model written to a file, never run here


def _training_snapshots_sql(p: Plan) -> str:
    return f"""\
-- One row per lead whose outcome is known, with its label, as of var('as_of'). An export without
-- dates has this single snapshot, split at random (MLSYS_SPLIT=random in ../{p.name}.env); with
-- dated rows, build weekly snapshots (features before each date, label = converted within
-- horizon_days after it) as in sources/bank_marketing. EDIT: the label, and which leads count.
{{{{ config(location=feature_location('training_snapshots')) }}}}

select
    stg.{p.id_column.name} as lead_id,
    {{{{ as_of_date() }}}} as as_of,
    {{{{ {p.name}_feature_columns('stg') }}}},
    cast(
        {_label_sql(p)}
        as integer
    ) as label
from {{{{ ref('stg_{p.name}') }}}} as stg
"""  # noqa: S608 - a dbt model written to a file, never run here


def _marts_yml(p: Plan) -> str:
    id_type = "varchar" if p.id_column.declared == "VARCHAR" else "bigint"
    out = [
        "version: 2",
        "",
        "# The output contract (docs/onboarding.md). lead_features: one row per lead to score, with",
        "# lead_id and as_of; training_snapshots: the same with label (0/1). Every other column is a",
        "# feature: one YAML block here (data_type, meta.feature: numeric|categorical, and the gate's",
        "# checks as dbt data_tests or meta.gate, docs/gate-format.md) and one line in",
        f"# macros/{p.name}_features.sql. training_snapshots lists the same blocks by their anchor",
        "# (- *name): remove a feature in both places. After editing, regenerate the gate's files:",
        f"#   .venv/bin/python -m mlsys.validation write-context --root sources/{p.name}/great_expectations",
        "",
        "models:",
        "  - name: lead_features",
        "    description: The leads to score as of var('as_of'), with their features.",
        "    columns:",
        "      - name: lead_id",
        f"        description: {_yaml_str(f'The lead ({p.id_column.raw_name} of the export).')}",
        f"        data_type: {id_type}",
        "        data_tests: [not_null, unique]",
        "      - name: as_of",
        "        description: The scoring date.",
        "        data_type: date",
        "        data_tests: [not_null]",
    ]
    for c in p.features:
        data_type = "varchar" if c.declared == "BOOLEAN" else c.declared.lower() if c.declared else "varchar"
        out += [
            f"      - &{c.name}",
            f"        name: {c.name}",
            f"        description: {_yaml_str(f'{c.raw_name} of the export. EDIT: known before?')}",
            f"        data_type: {data_type}",
            "        meta:",
            f"          feature: {_feature_kind(c)}",
        ]
    out += [
        "",
        "  - name: training_snapshots",
        "    description: The leads whose outcome is known, with their features and label.",
        "    columns:",
        "      - name: lead_id",
        f"        description: {_yaml_str(f'The lead ({p.id_column.raw_name} of the export).')}",
        f"        data_type: {id_type}",
        "        data_tests: [not_null, unique]",
        "      - name: as_of",
        "        description: The snapshot date.",
        "        data_type: date",
        "        data_tests: [not_null]",
        *(f"      - *{c.name}" for c in p.features),
        "      - name: label",
        "        description: 1 when the lead converted, else 0.",
        "        data_type: integer",
        "        data_tests:",
        "          - not_null",
        "          - accepted_values:",
        "              arguments:",
        "                values: [0, 1]",
        "                quote: false",
    ]
    return "\n".join(out) + "\n"


def _gate(p: Plan) -> str:
    lead = _yaml_str(p.id_column.raw_name)
    return f"""\
# The gate of the source {p.name} (format: docs/gate-format.md; schema:
# mlsys/validation/mlsys_gate.schema.json). After editing it or the dbt YAML it reads, regenerate
# the GX files:  .venv/bin/python -m mlsys.validation write-context --root sources/{p.name}/great_expectations
# The marts' suites (lead_features, training_snapshots) come from ../dbt/models/marts/_marts.yml.
dbt_project: ../dbt
suites:
  raw_{p.name}:
    # Columns and DuckDB types: the dbt source {p.name}.export (../dbt/models/staging/_sources.yml);
    # files: its external_location (raw/{p.name}/...).
    source: {p.name}.export
    stages: [scoring, training]
    expectations:
      - type: expect_column_values_to_not_be_null
        kwargs: {{column: {lead}}}
      - type: expect_column_values_to_be_unique
        kwargs: {{column: {lead}}}
      # EDIT: what a good export looks like: accepted values, ranges, distributions (warnings).
"""


def render(p: Plan) -> dict[str, str]:
    """Relative path (in the source folder) -> text."""
    return {
        f"{p.name}.env": _env(p),
        "dbt/dbt_project.yml": _dbt_project(p),
        "dbt/profiles.yml": _profiles(p),
        "dbt/.sqlfluff": _SQLFLUFF,
        "dbt/.gitignore": "target/\nlogs/\ndbt_packages/\n",
        "dbt/macros/as_of.sql": _AS_OF.replace("NAME", p.name),
        f"dbt/macros/{p.name}_features.sql": _features_macro(p),
        "dbt/models/staging/_sources.yml": _sources(p),
        f"dbt/models/staging/stg_{p.name}.sql": _staging_sql(p),
        "dbt/models/marts/_marts.yml": _marts_yml(p),
        "dbt/models/marts/lead_features.sql": _lead_features_sql(p),
        "dbt/models/marts/training_snapshots.sql": _training_snapshots_sql(p),
        "dbt/tests/.gitkeep": "",
        "great_expectations/mlsys_gate.yml": _gate(p),
        "great_expectations/.gitignore": "# Runtime state of GX is never committed.\nuncommitted/\n",
    }


def new_source(
    name: str,
    raw: Path,
    *,
    sources_dir: Path = SOURCES_DIR,
    id_column: str | None = None,
    label: str | None = None,
) -> list[Path]:
    """Write ``sources_dir/<name>/`` from the export ``raw``; returns the files written.
    Refuses to touch a folder that exists (nothing already there is lost)."""
    from mlsys.validation.context_files import write_context

    check_name(name)
    folder = sources_dir / name
    if folder.exists():
        raise SourceError(f"{folder} exists already: pick another name or remove it first")
    chosen = plan(name, inspect_export(raw), id_column=id_column, label=label)
    written = []
    for relative, text in render(chosen).items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    written += write_context(folder / "great_expectations")
    return written
