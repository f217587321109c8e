"""The gate format (mlsys_gate.yml): validated when loaded against the committed JSON Schema, with
errors that name the file, the key path and what was expected; malformed YAML of any shape gives
that error and nothing else (a property test)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from mlsys.settings import REPO_ROOT
from mlsys.validation import GATE_SPEC_FILE, load_gate_spec
from mlsys.validation.gate_format import SCHEMA_FILE, GateSpecError, schema
from tests.fuzz import JSON_VALUES, fuzz_settings

VALID: dict[str, Any] = {
    "suites": {
        "raw_contacts": {
            "input": "raw/contacts/*.csv*",
            "stages": ["scoring", "training"],
            "columns": {"contact_id": ["BIGINT"], "segment": "VARCHAR"},
            "expectations": [
                {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "contact_id"}},
                {
                    "type": "expect_column_mean_to_be_between",
                    "kwargs": {"column": "contact_id", "min_value": 0},
                    "severity": "warning",
                    "check": "distribution",
                },
            ],
        },
        "lead_features": {"columns": {"lead_id": ["BIGINT"]}},
    }
}


def _write(folder: Path, data: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / GATE_SPEC_FILE
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def _error(folder: Path, data: Any) -> str:
    path = _write(folder, data)
    with pytest.raises(GateSpecError) as excinfo:
        load_gate_spec(folder)
    message = str(excinfo.value)
    assert message.startswith(f"{path}: "), message
    return message


def test_the_schema_is_valid_json_schema_and_committed_with_the_package() -> None:
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(schema())
    assert SCHEMA_FILE.parent == REPO_ROOT / "mlsys" / "validation"
    assert json.loads(SCHEMA_FILE.read_text())["required"] == ["suites"]


def test_a_valid_gate_loads(tmp_path: Path) -> None:
    _write(tmp_path, VALID)
    spec = load_gate_spec(tmp_path)
    assert spec.raw_suites(training=True) == ("raw_contacts",)
    assert spec.suites["raw_contacts"].columns["segment"] == ("VARCHAR",)


def _raw(data: dict[str, Any]) -> dict[str, Any]:
    raw: dict[str, Any] = data["suites"]["raw_contacts"]
    return raw


@pytest.mark.parametrize(
    ("change", "where", "expected"),
    [
        (lambda d: _raw(d).update(colums={}), "suites.raw_contacts:", "unknown key(s) 'colums'"),
        (lambda d: _raw(d).update(stages=["scorin"]), "suites.raw_contacts.stages[0]:", "'scorin'"),
        (lambda d: _raw(d).pop("stages"), "suites.raw_contacts:", "'stages' is a dependency"),
        (
            lambda d: d["suites"]["raw_contacts"]["expectations"][1].update(severity="fatal"),
            "suites.raw_contacts.expectations[1].severity:",
            "'error', 'warning'",
        ),
        (
            lambda d: d["suites"]["raw_contacts"]["expectations"][0].update(typ="x"),
            "suites.raw_contacts.expectations[0]:",
            "unknown key(s) 'typ'; expected one of check, column, description, kwargs, severity, type",
        ),
        (
            lambda d: d["suites"]["raw_contacts"]["columns"].update(segment=["varchar"]),
            "suites.raw_contacts.columns.segment[0]:",
            "not a DuckDB type name",
        ),
        (lambda d: d["suites"]["lead_features"].pop("columns"), "suites.lead_features:", "needs `columns`"),
        (lambda d: d.update(suite=d.pop("suites")), "(top level):", "unknown key(s) 'suite'"),
        (lambda d: d.update(dbt_project="nowhere"), "dbt_project:", "no dbt_project.yml"),
        (
            lambda d: d["suites"]["raw_contacts"].update(source="bank.contacts"),
            "suites.raw_contacts.source:",
            "needs `dbt_project`",
        ),
    ],
)
def test_a_typo_names_the_file_the_key_and_what_was_expected(
    tmp_path: Path, change: Any, where: str, expected: str
) -> None:
    data = copy.deepcopy(VALID)
    change(data)
    message = _error(tmp_path, data)
    assert where in message and expected in message, message


def test_broken_yaml_says_where(tmp_path: Path) -> None:
    assert "not valid YAML at line 2, column 9: mapping values" in _error(tmp_path, "suites:\n  raw: a: b\n")
    assert "(top level): [1, 2] is not of type 'object'" in _error(tmp_path, "[1, 2]\n")


def test_the_bank_gate_follows_the_format() -> None:
    spec = load_gate_spec(REPO_ROOT / "sources" / "bank_marketing" / "great_expectations")
    assert spec.suites["raw_bank_contacts"].input == "raw/bank_marketing/*.csv*"  # from _sources.yml


# Mutations of a valid gate: any value at any key path, and whole random documents.
def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out += _paths(child, (*prefix, index))
    return out


PATHS = _paths(VALID)[1:]


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    data = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        parent: Any = data
        try:
            for part in path[:-1]:
                parent = parent[part]
            parent[path[-1]] = draw(JSON_VALUES)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation replaced the parent
    return data


TOP_KEYS = st.sampled_from(["suites", "dbt_project", "x"])
DOCUMENTS = mutated() | JSON_VALUES | st.dictionaries(TOP_KEYS, JSON_VALUES)
ODD_TEXTS = ["suites:\n  a: &x [*x]\n", "x: 2026-13-01\n", "- [" * 50, "\t"]
TEXTS = st.text(max_size=200) | st.sampled_from(ODD_TEXTS)


@hypothesis_settings(fuzz_settings(150), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=DOCUMENTS, text=TEXTS)
def test_malformed_gates_raise_only_the_format_error(tmp_path: Path, document: Any, text: str) -> None:
    for content in (yaml.safe_dump(document), text):
        _write(tmp_path, content)
        try:
            load_gate_spec(tmp_path)
        except GateSpecError as exc:
            assert str(exc).startswith(str(tmp_path / GATE_SPEC_FILE))
