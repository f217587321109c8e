"""The gate's suites of the feature marts, derived from the marts' YAML of a dbt project.

A feature is its SQL plus one YAML block in the marts' YAML (``_marts.yml``); the gate does
not list it again. For ``lead_features`` and ``training_snapshots`` this module reads:

* every column's ``data_type`` (DuckDB's name): the suite's required columns and their types;
* the dbt ``data_tests`` the gate understands: ``not_null``, ``unique``, ``accepted_values``
  (``{{ var('name') }}`` is read from ``dbt_project.yml``), ``accepted_range`` /
  ``dbt_utils.accepted_range``, and on the model ``unique_combination`` /
  ``dbt_utils.unique_combination_of_columns``. dbt's own ``severity`` is dbt's business: in the
  gate they all block;
* ``meta.gate`` of a column (``not_null``, ``min_value``/``max_value``, ``accepted_values``,
  ``expectations``) and of a model (``expectations``), in the gate format (docs/gate-format.md),
  for what dbt's tests do not say: warnings, distributions, checks across columns.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlsys.contract import TYPE_FAMILIES, ContractError, project_yaml_files
from mlsys.validation.gate_format import GateSpecError, check, read_yaml
from mlsys.validation.suites import ERROR, WARNING, expectation

LEAD_FEATURES = "lead_features"
TRAINING_SNAPSHOTS = "training_snapshots"
MARTS = (LEAD_FEATURES, TRAINING_SNAPSHOTS)
# The output contract (docs/onboarding.md): the columns each mart must carry, besides features.
REQUIRED_COLUMNS: Mapping[str, tuple[str, ...]] = {
    LEAD_FEATURES: ("lead_id", "as_of"),
    TRAINING_SNAPSHOTS: ("lead_id", "as_of", "label"),
}

_VAR = re.compile(r"^\s*\{\{\s*var\(\s*['\"](\w+)['\"]\s*\)\s*\}\}\s*$")


@dataclass(frozen=True)
class MartSuite:
    name: str
    path: Path  # the YAML file that declares the model
    columns: dict[str, tuple[str, ...]]
    expectations: list[dict[str, Any]]


def yaml_expectation(item: Mapping[str, Any], *, column: str | None = None) -> dict[str, Any]:
    """A gate-format expectation item (already checked against the schema) as a definition;
    ``column`` is the default ``kwargs.column`` of a column's ``meta.gate``."""
    kwargs = dict(item.get("kwargs") or {})
    type_ = str(item["type"])
    if column and type_.startswith("expect_column_") and "column" not in kwargs:
        kwargs["column"] = column
    if item.get("column"):  # the column of a table-level (unexpected rows) expectation
        kwargs["meta_column"] = str(item["column"])
    # Built here rather than by expectation(**kwargs): GX arguments may be named anything.
    meta: dict[str, Any] = {"severity": str(item.get("severity", ERROR))}
    if item.get("check"):
        meta["check"] = str(item["check"])
    out: dict[str, Any] = {"type": type_, "kwargs": kwargs, "meta": meta}
    if item.get("description"):
        out["description"] = str(item["description"])
    return out


def _test_name_and_args(test: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(test, str):
        return test, {}
    if isinstance(test, Mapping) and len(test) == 1:
        name, body = next(iter(test.items()))
        body = dict(body or {}) if isinstance(body, Mapping) else {}
        arguments = body.pop("arguments", None) or {}
        body.pop("config", None)
        return str(name), {**body, **arguments}
    return "", {}


def _values(raw: Any, variables: Mapping[str, Any], where: str) -> list[Any]:
    if isinstance(raw, str):
        found = _VAR.match(raw)
        if not found or not isinstance(variables.get(found.group(1)), list):
            expected = "a list, or {{ var('name') }} of a list var in dbt_project.yml"
            raise ContractError(f"{where}: values must be {expected}, got {raw!r}")
        raw = variables[found.group(1)]
    if not isinstance(raw, list) or not raw:
        raise ContractError(f"{where}: values must be a non-empty list")
    return list(raw)


def _column_expectations(
    column: Mapping[str, Any], variables: Mapping[str, Any], where: str
) -> list[dict[str, Any]]:
    name = str(column["name"])
    out: list[dict[str, Any]] = []
    for test in column.get("data_tests") or column.get("tests") or []:
        test_name, args = _test_name_and_args(test)
        if test_name == "not_null":
            out.append(expectation("expect_column_values_to_not_be_null", column=name))
        elif test_name == "unique":
            out.append(expectation("expect_column_values_to_be_unique", column=name))
        elif test_name == "accepted_values":
            values = _values(args.get("values"), variables, f"{where}.accepted_values")
            if args.get("quote", True) is not False:
                values = [str(v) for v in values]
            out.append(expectation("expect_column_values_to_be_in_set", column=name, value_set=values))
        elif test_name in ("accepted_range", "dbt_utils.accepted_range"):
            bounds = {k: args[k] for k in ("min_value", "max_value") if k in args}
            out.append(expectation("expect_column_values_to_be_between", column=name, **bounds))
    meta = column.get("meta") or (column.get("config") or {}).get("meta") or {}
    gate = meta.get("gate")
    if gate is None:
        return out
    check(gate, where, definition="column_gate", prefix="meta.gate")
    if gate.get("not_null") and not any(e["type"] == "expect_column_values_to_not_be_null" for e in out):
        out.append(expectation("expect_column_values_to_not_be_null", column=name))
    bounds = {k: gate[k] for k in ("min_value", "max_value") if k in gate}
    if bounds:
        out.append(expectation("expect_column_values_to_be_between", column=name, **bounds))
    if "accepted_values" in gate:
        values = list(gate["accepted_values"])
        out.append(expectation("expect_column_values_to_be_in_set", column=name, value_set=values))
    out += [yaml_expectation(item, column=name) for item in gate.get("expectations") or []]
    return out


def _model_expectations(model: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for test in model.get("data_tests") or model.get("tests") or []:
        test_name, args = _test_name_and_args(test)
        columns = args.get("columns") or args.get("combination_of_columns")
        if test_name in ("unique_combination", "dbt_utils.unique_combination_of_columns") and columns:
            out.append(expectation("expect_compound_columns_to_be_unique", column_list=list(columns)))
    meta = model.get("meta") or (model.get("config") or {}).get("meta") or {}
    gate = meta.get("gate")
    if gate is not None:
        check(gate, where, definition="model_gate", prefix="meta.gate")
        out += [yaml_expectation(item) for item in gate.get("expectations") or []]
    return out


def _mart_suite(path: Path, index: int, model: Mapping[str, Any], variables: Mapping[str, Any]) -> MartSuite:
    name = str(model["name"])
    columns: dict[str, tuple[str, ...]] = {}
    expectations: list[dict[str, Any]] = []
    for position, column in enumerate(model.get("columns") or []):
        where = f"{path}: models[{index}].columns[{position}]"
        if not isinstance(column, Mapping) or not column.get("name"):
            raise ContractError(f"{where}: a column needs a name")
        where = f"{where} ({name}.{column['name']})"
        data_type = str(column.get("data_type") or "").upper()
        if data_type not in TYPE_FAMILIES:
            raise ContractError(
                f"{where}: needs a data_type, one of {', '.join(TYPE_FAMILIES)}"
                f" (got {column.get('data_type')!r})"
            )
        columns[str(column["name"])] = TYPE_FAMILIES[data_type]
        expectations += _column_expectations(column, variables, where)
    model_expectations = _model_expectations(model, f"{path}: models[{index}] ({name})")
    missing = [c for c in REQUIRED_COLUMNS[name] if c not in columns]
    if missing:
        raise ContractError(
            f"{path}: models[{index}] ({name}): missing column(s) {', '.join(missing)},"
            " required by the output contract"
        )
    # The keys first, then the features in YAML order, then the checks across columns.
    return MartSuite(name, path, columns, expectations + model_expectations)


def project_vars(project_dir: Path) -> dict[str, Any]:
    path = project_dir / "dbt_project.yml"
    try:
        data = read_yaml(path)
    except GateSpecError as exc:
        raise ContractError(str(exc)) from None
    variables = data.get("vars") if isinstance(data, Mapping) else None
    return dict(variables) if isinstance(variables, Mapping) else {}


@functools.cache
def mart_suites(project_dir: Path) -> dict[str, MartSuite]:
    """The suites of the marts a dbt project declares (``lead_features``, and
    ``training_snapshots`` when it has one), read from its models' YAML."""
    variables = project_vars(project_dir)
    found: dict[str, MartSuite] = {}
    for path in project_yaml_files(project_dir):
        try:
            data = read_yaml(path)
        except GateSpecError as exc:
            raise ContractError(str(exc)) from None
        models = data.get("models") if isinstance(data, Mapping) else None
        for index, model in enumerate(models or []):
            if isinstance(model, Mapping) and model.get("name") in MARTS:
                found[str(model["name"])] = _mart_suite(path, index, model, variables)
    if LEAD_FEATURES not in found:
        raise ContractError(
            f"{project_dir / 'models'}: no YAML declares the model {LEAD_FEATURES} (the output contract)"
        )
    return {name: found[name] for name in MARTS if name in found}


__all__ = ["MARTS", "REQUIRED_COLUMNS", "WARNING", "MartSuite", "mart_suites", "yaml_expectation"]
