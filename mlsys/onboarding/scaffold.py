"""``mlsys source new NAME --raw PATH``: a source folder written from a CRM export.

DuckDB reads the whole export (``sample_size = -1``: every row decides a column's type, not a
sample), and the folder it writes is the bank source's shape (docs/onboarding.md):

* ``<name>.env``: the switch (own home, dbt project, gate, model name, random split);
* ``dbt/``: project, profile, ``_sources.yml`` with every column and its DuckDB type, a staging
  model renaming the columns to snake_case, the marts ``lead_features`` and
  ``training_snapshots`` carrying the output contract, one macro listing the features, and
  ``_marts.yml`` with one YAML block per feature;
* ``great_expectations/``: ``mlsys_gate.yml`` (types from ``_sources.yml``, the id unique and
  not null) and the GX files rendered from it.

What a machine cannot know is left to the user, marked ``EDIT`` where it goes: the label, the
date columns, and which columns leak the outcome.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mlsys.onboarding.sources import SourceError

CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt")
# DuckDB type (DESCRIBE) -> the contract's data_type (mlsys.contract.TYPE_FAMILIES).
_DECLARED = {
    "TINYINT": "BIGINT",
    "SMALLINT": "BIGINT",
    "INTEGER": "BIGINT",
    "BIGINT": "BIGINT",
    "FLOAT": "DOUBLE",
    "DOUBLE": "DOUBLE",
    "VARCHAR": "VARCHAR",
    "BOOLEAN": "BOOLEAN",
    "DATE": "DATE",
    "TIMESTAMP": "TIMESTAMP",
    "TIMESTAMP_S": "TIMESTAMP",
    "TIMESTAMP_MS": "TIMESTAMP",
    "TIMESTAMP_NS": "TIMESTAMP",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMP",
}
# What `mlsys source new` writes where the label goes when it was not told (--label); `mlsys
# source check` looks for it.
LABEL_PLACEHOLDER = "null  -- EDIT: 1 when the lead converted"
# A text column with more distinct values than this share of the rows (and over 50) looks like
# free text or an identifier: no use as a category, left out of the features.
_FREE_TEXT_SHARE = 0.5


@dataclass(frozen=True)
class ExportColumn:
    raw_name: str  # as in the export
    name: str  # snake_case, in staging and the marts
    duckdb_type: str  # as DuckDB reads the whole file
    distinct: int
    nulls: int

    @property
    def declared(self) -> str | None:
        return _DECLARED.get(self.duckdb_type)

    @property
    def is_date(self) -> bool:
        return self.declared in ("DATE", "TIMESTAMP")


@dataclass(frozen=True)
class Export:
    path: Path
    is_csv: bool
    delimiter: str | None
    rows: int
    columns: tuple[ExportColumn, ...]

    def column(self, wanted: str) -> ExportColumn:
        for c in self.columns:
            if wanted in (c.raw_name, c.name):
                return c
        raise SourceError(
            f"{self.path} has no column {wanted!r}; it has " + ", ".join(c.raw_name for c in self.columns)
        )


def snake_case(name: str) -> str:
    """``Lead Source`` -> ``lead_source``, ``LeadID`` -> ``lead_id``, ``2nd call`` -> ``c_2nd_call``."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip())
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", text)
    text = re.sub(r"[^0-9a-zA-Z]+", "_", text).strip("_").lower()
    if not text:
        text = "column"
    return f"c_{text}" if text[0].isdigit() else text


def sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _reader(path: Path, is_csv: bool, delimiter: str | None) -> str:
    if not is_csv:
        return f"read_parquet({sql_str(str(path))})"
    delim = f", delim = {sql_str(delimiter)}" if delimiter else ""
    return f"read_csv({sql_str(str(path))}, header = true, sample_size = -1{delim})"


def inspect_export(path: Path) -> Export:
    """Columns, types (DuckDB over the whole file) and distinct counts of an export."""
    import duckdb

    if not path.is_file():
        raise SourceError(f"--raw {path}: no such file")
    is_csv = path.name.lower().endswith(CSV_SUFFIXES)
    if not is_csv and not path.name.lower().endswith(".parquet"):
        raise SourceError(f"--raw {path}: expected a CSV (.csv, .csv.gz, .tsv) or a Parquet file")
    con = duckdb.connect(":memory:")
    try:
        delimiter = None
        if is_csv:
            sniff = f"select Delimiter from sniff_csv({sql_str(str(path))}, sample_size = -1)"  # noqa: S608 - quoted path
            sniffed = con.execute(sniff).fetchone()
            delimiter = str(sniffed[0]) if sniffed else None
        reader = _reader(path, is_csv, delimiter)
        described = con.execute(f"describe select * from {reader}").fetchall()  # noqa: S608 - quoted path
        counted = con.execute(f"select count(*) from {reader}").fetchone()  # noqa: S608 - quoted path
        rows = int(counted[0]) if counted else 0
        stats = []
        for raw_name, duckdb_type, *_ in described:
            quoted = '"' + str(raw_name).replace('"', '""') + '"'
            query = f"select count(distinct {quoted}), count(*) - count({quoted}) from {reader}"  # noqa: S608 - quoted names
            got = con.execute(query).fetchone() or (0, 0)
            stats.append((str(raw_name), str(duckdb_type), int(got[0]), int(got[1])))
    except duckdb.Error as exc:
        raise SourceError(f"--raw {path}: DuckDB cannot read it: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()
    if rows == 0 or not stats:
        raise SourceError(f"--raw {path}: the export is empty")
    names: set[str] = set()
    columns = []
    for raw_name, duckdb_type, distinct, nulls in stats:
        name = snake_case(raw_name)
        while name in names or name in ("as_of", "label"):
            name += "_raw"
        names.add(name)
        columns.append(ExportColumn(raw_name, name, duckdb_type, distinct, nulls))
    return Export(path, is_csv, delimiter, rows, tuple(columns))


def guess_id(export: Export) -> ExportColumn:
    """The first column named like an id whose values are unique, else the first unique one."""
    unique = [c for c in export.columns if c.distinct == export.rows and c.nulls == 0]
    for c in unique:
        if c.name == "id" or c.name.endswith("_id") or c.raw_name.lower().endswith("id"):
            return c
    if unique:
        return unique[0]
    raise SourceError(
        f"--raw {export.path}: no column has a distinct value on every row; give the lead id with --id"
    )


@dataclass(frozen=True)
class Plan:
    """Which column is the id, which the label, which are features (and why the others are not)."""

    name: str
    export: Export
    id_column: ExportColumn
    label: ExportColumn | None
    features: tuple[ExportColumn, ...]
    left_out: tuple[tuple[ExportColumn, str], ...]


def plan(name: str, export: Export, *, id_column: str | None, label: str | None) -> Plan:
    lead = export.column(id_column) if id_column else guess_id(export)
    outcome = export.column(label) if label else None
    features: list[ExportColumn] = []
    left_out: list[tuple[ExportColumn, str]] = []
    for c in export.columns:
        if c in (lead, outcome):
            continue
        if c.declared is None:
            left_out.append((c, f"type {c.duckdb_type} is not one the contract knows"))
        elif c.is_date:
            left_out.append((c, "a date: derive features from it (e.g. days before as_of), not the date"))
        elif c.declared == "VARCHAR" and c.distinct > max(50, _FREE_TEXT_SHARE * export.rows):
            left_out.append((c, f"{c.distinct} distinct values: free text or an identifier"))
        elif c.nulls == export.rows:
            left_out.append((c, "always empty"))
        else:
            features.append(c)
    if not features:
        raise SourceError(f"--raw {export.path}: no column can be a feature")
    return Plan(name, export, lead, outcome, tuple(features), tuple(left_out))


def summary(p: Plan) -> list[str]:
    """What the scaffold decided, and what the user edits next."""
    lines = [
        f"{p.export.rows} rows, {len(p.export.columns)} columns; lead id: {p.id_column.raw_name}",
        f"label: {p.label.raw_name if p.label else 'not set: EDIT training_snapshots.sql'}",
        f"features ({len(p.features)}): {', '.join(c.name for c in p.features)}",
    ]
    lines += [f"left out: {c.raw_name} ({why})" for c, why in p.left_out]
    return lines
