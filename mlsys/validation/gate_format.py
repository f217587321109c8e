"""The gate format: ``mlsys_gate.yml`` and the ``meta.gate`` blocks of the marts' YAML, checked
against the committed JSON Schema (``mlsys_gate.schema.json``, described key by key in
docs/gate-format.md) when they are loaded.

Every problem is one :class:`GateSpecError` that names the file, the key path and what was
expected, so a typo is found when the gate is loaded (``write-context``, ``mlsys source
check``, the first task of a DAG), not when a suite runs.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).with_name("mlsys_gate.schema.json")


class GateSpecError(ValueError):
    """A gate declaration that does not follow the gate format; the message says where."""


@functools.cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_FILE.read_text())
    return loaded


@functools.cache
def _validator(definition: str | None) -> Any:
    import jsonschema

    root = schema()
    target = root if definition is None else {"$ref": f"#/$defs/{definition}", "$defs": root["$defs"]}
    return jsonschema.Draft202012Validator(target)


def key_path(parts: Iterable[Any], prefix: str = "") -> str:
    """``suites.raw_x.expectations[2].type`` from a JSON Schema error's path."""
    out = prefix
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _explain(error: Any) -> str:
    """What was expected, in words a YAML author can act on."""
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties") or {})
        unknown = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        return f"unknown key(s) {', '.join(map(repr, unknown))}; expected one of {', '.join(allowed)}"
    if error.validator == "anyOf" and error.schema.get("anyOf") == [
        {"required": ["columns"]},
        {"required": ["source"]},
    ]:
        return "a suite needs `columns` (name: [DuckDB types]) or `source` (<dbt source>.<table>)"
    if error.validator == "dependentRequired":
        return f"{error.message}: a raw suite gates some of the stages scoring, training"
    if error.validator == "pattern" and error.schema is schema()["$defs"]["duckdb_type"]:
        return f"{error.instance!r} is not a DuckDB type name in upper case (BIGINT, DOUBLE, VARCHAR, ...)"
    if error.validator == "oneOf" and error.instance is not None:
        return f"{error.instance!r} is not a DuckDB type name or a list of them (e.g. [BIGINT, DOUBLE])"
    return str(error.message)


def check(data: Any, where: Path | str, *, definition: str | None = None, prefix: str = "") -> None:
    """Raise :class:`GateSpecError` unless ``data`` follows the schema (or one of its
    ``$defs``: ``column_gate``, ``model_gate``)."""
    import jsonschema

    errors = list(_validator(definition).iter_errors(data))
    if not errors:
        return
    error = jsonschema.exceptions.best_match(errors)
    path = key_path(error.absolute_path, prefix)
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    raise GateSpecError(f"{where}: {path}: {_explain(error)}{more}")


def first_line(exc: BaseException) -> str:
    return (str(exc).strip() or type(exc).__name__).splitlines()[0]


def read_yaml(path: Path) -> Any:
    """The YAML document of ``path``; a file that is not YAML is a :class:`GateSpecError`."""
    import yaml

    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise GateSpecError(f"{path}: cannot read: {exc}") from None
    try:
        return yaml.safe_load(text)
    except (ValueError, RecursionError) as exc:  # e.g. a date 2026-13-01, nesting too deep
        raise GateSpecError(f"{path}: not valid YAML: {first_line(exc)}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise GateSpecError(f"{path}: not valid YAML{where}: {problem}") from None


def load(path: Path) -> dict[str, Any]:
    """``mlsys_gate.yml`` read and checked against the schema."""
    data = read_yaml(path)
    check(data, path)
    loaded: dict[str, Any] = data
    return loaded
