"""The raw landing contract of the built-in source, read from where data engineers keep it.

The built-in source (the synthetic CRM of ``mlsys generate``, dbt project ``sql/``) lands
three tables under ``$MLSYS_DATA_DIR/raw/<table>/*.parquet``. Their columns and types are
declared once, in the dbt project: ``models/staging/_sources.yml`` gives every column of the
``raw`` source a ``data_type`` (DuckDB's name) and ``meta.nullable: false`` where a value is
required; ``dbt_project.yml`` holds the vocabularies as vars (``lead_sources``,
``job_levels``, ``activity_types``), which the SQL and the staging tests also read. The gate,
the generator and on-demand payloads derive from this module; docs/contracts.md describes the
contract in words.

Reading is plain YAML (no dbt run, no manifest) and cached per project folder.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlsys.settings import REPO_ROOT

BUILT_IN_PROJECT = REPO_ROOT / "sql"
RAW_SOURCE = "raw"
LEADS, ACTIVITIES, CONVERSIONS = "leads", "activities", "conversions"
# Vocabulary var in dbt_project.yml -> the raw column whose values it lists.
VOCABULARY_VARS: Mapping[str, tuple[str, str]] = {
    "lead_sources": (LEADS, "source"),
    "job_levels": (LEADS, "job_level"),
    "activity_types": (ACTIVITIES, "activity_type"),
}

# The DuckDB type names (as DESCRIBE reports them) a declared type accepts on landing: any
# signed integer width for an integer (an INTEGER written where BIGINT is declared still
# reads the same), any precision for a timestamp, FLOAT or DOUBLE for a double.
_INTEGERS = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT")
TYPE_FAMILIES: Mapping[str, tuple[str, ...]] = {
    "BIGINT": _INTEGERS,
    "INTEGER": _INTEGERS,
    "DOUBLE": ("FLOAT", "DOUBLE"),
    "TIMESTAMP": ("TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "TIMESTAMP WITH TIME ZONE"),
    "DATE": ("DATE",),
    "VARCHAR": ("VARCHAR",),
    "BOOLEAN": ("BOOLEAN",),
}


# The Arrow type a writer of landing files (the synthetic generator) uses per declared type.
_ARROW_TYPES: Mapping[str, str] = {
    "BIGINT": "int64",
    "INTEGER": "int32",
    "DOUBLE": "float64",
    "TIMESTAMP": "timestamp[us]",
    "DATE": "date32",
    "VARCHAR": "string",
    "BOOLEAN": "bool",
}


class ContractError(ValueError):
    """The dbt YAML that declares the contract is incomplete; the message names the file."""


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str  # DuckDB's name, upper case: BIGINT, TIMESTAMP, VARCHAR, ...
    nullable: bool
    description: str

    @property
    def accepted_types(self) -> tuple[str, ...]:
        """The DuckDB types a landed file may carry for this column."""
        return TYPE_FAMILIES[self.data_type]


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"raw table {self.name} has no column {name!r}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if not c.nullable)

    def accepted_types(self) -> dict[str, tuple[str, ...]]:
        return {c.name: c.accepted_types for c in self.columns}

    def arrow_schema(self) -> Any:
        """The pyarrow schema of a landing file that follows the contract exactly."""
        import pyarrow as pa

        types = {"timestamp[us]": pa.timestamp("us"), "date32": pa.date32()}
        return pa.schema(
            [
                (c.name, types.get(_ARROW_TYPES[c.data_type]) or pa.type_for_alias(_ARROW_TYPES[c.data_type]))
                for c in self.columns
            ]
        )


@dataclass(frozen=True)
class RawContract:
    tables: Mapping[str, Table]
    vocabularies: Mapping[str, tuple[str, ...]]  # keyed by var name (lead_sources, ...)
    # The feature windows (var activity_windows_days): not landing data, but the marts'
    # column names follow from them and the activity types.
    activity_windows_days: tuple[int, ...]

    def table(self, name: str) -> Table:
        return self.tables[name]

    def values_of(self, table: str, column: str) -> tuple[str, ...] | None:
        """The accepted values of a raw column, when a vocabulary var lists them."""
        for var, (t, c) in VOCABULARY_VARS.items():
            if (t, c) == (table, column):
                return self.vocabularies[var]
        return None


def _yaml(path: Path) -> Any:
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ContractError(f"{path} is missing: it declares the raw landing contract") from None
    except yaml.YAMLError as exc:
        raise ContractError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(loaded, Mapping):
        raise ContractError(f"{path}: expected a YAML mapping at the top level")
    return loaded


def _column(path: Path, table: str, raw: Mapping[str, Any]) -> Column:
    name = str(raw.get("name") or "")
    data_type = str(raw.get("data_type") or "").upper()
    if data_type not in TYPE_FAMILIES:
        raise ContractError(
            f"{path}: column {table}.{name or '?'} needs a data_type, one of {', '.join(TYPE_FAMILIES)}"
            f" (got {raw.get('data_type')!r})"
        )
    meta = raw.get("meta") or (raw.get("config") or {}).get("meta") or {}
    return Column(
        name=name,
        data_type=data_type,
        nullable=bool(meta.get("nullable", True)),
        description=str(raw.get("description") or "").strip(),
    )


def project_yaml_files(project_dir: Path) -> list[Path]:
    """Every YAML file of a dbt project's models, in a stable order."""
    models = project_dir / "models"
    return sorted([*models.rglob("*.yml"), *models.rglob("*.yaml")])


# The landing folder inside a source's external_location: `.../raw/<folder>/<glob>'` (a
# `{name}` placeholder is dbt's table name).
_LANDING = re.compile(r"/(raw/[^'\"]+)")


@dataclass(frozen=True)
class SourceTable:
    """One table of a dbt source: its column contract and where its files land."""

    table: Table
    landing_glob: str | None  # under MLSYS_DATA_DIR, from the source's external_location
    path: Path  # the YAML file that declares it


@functools.cache
def source_table(project_dir: Path, qualified: str) -> SourceTable:
    """``<source>.<table>`` of a dbt project's sources YAML (``_sources.yml``): the columns with
    their ``data_type`` and ``meta.nullable``, and the landing glob of its external_location.

    A source's raw gate suite takes its columns from here (``source:`` in ``mlsys_gate.yml``),
    so the columns, the types and the raw folder are written once, where dbt reads them."""
    source_name, _, table_name = qualified.partition(".")
    for path in project_yaml_files(project_dir):
        for source in _yaml(path).get("sources") or []:
            if not isinstance(source, Mapping) or source.get("name") != source_name:
                continue
            for raw in source.get("tables") or []:
                if not isinstance(raw, Mapping) or raw.get("name") != table_name:
                    continue
                columns = tuple(_column(path, table_name, c) for c in raw.get("columns") or [])
                if not columns:
                    raise ContractError(f"{path}: source table {qualified} declares no columns")
                meta = {**(source.get("meta") or {}), **(raw.get("meta") or {})}
                location = str(raw.get("external_location") or meta.get("external_location") or "")
                found = _LANDING.search(location)
                glob = found.group(1).replace("{name}", table_name) if found else None
                description = str(raw.get("description") or "").strip()
                return SourceTable(Table(table_name, description, columns), glob, path)
    raise ContractError(f"{project_dir / 'models'}: no dbt source table {qualified!r} in any sources YAML")


@functools.cache
def raw_contract(project_dir: Path = BUILT_IN_PROJECT) -> RawContract:
    """The raw landing contract declared in a dbt project (the built-in one by default)."""
    sources_path = project_dir / "models" / "staging" / "_sources.yml"
    sources = [s for s in _yaml(sources_path).get("sources") or [] if s.get("name") == RAW_SOURCE]
    if not sources:
        raise ContractError(f"{sources_path}: no source named {RAW_SOURCE!r}")
    tables = {
        str(t["name"]): Table(
            name=str(t["name"]),
            description=str(t.get("description") or "").strip(),
            columns=tuple(_column(sources_path, str(t["name"]), c) for c in t.get("columns") or []),
        )
        for t in sources[0].get("tables") or []
    }
    project_path = project_dir / "dbt_project.yml"
    variables = _yaml(project_path).get("vars") or {}
    vocabularies: dict[str, tuple[str, ...]] = {}
    for var in VOCABULARY_VARS:
        values = variables.get(var)
        if not isinstance(values, list) or not values:
            raise ContractError(f"{project_path}: vars.{var} must list the accepted values")
        vocabularies[var] = tuple(str(v) for v in values)
    windows = variables.get("activity_windows_days")
    if not isinstance(windows, list) or not all(isinstance(w, int) for w in windows):
        raise ContractError(f"{project_path}: vars.activity_windows_days must list whole days")
    return RawContract(tables=tables, vocabularies=vocabularies, activity_windows_days=tuple(windows))
