"""Gate spec: which suites a GX context holds, what each reads and which stage it gates."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlsys.contract import BUILT_IN_PROJECT, ContractError, source_table
from mlsys.settings import Settings
from mlsys.validation.gate_format import GateSpecError, first_line, load
from mlsys.validation.mart_suites import mart_suites, yaml_expectation
from mlsys.validation.suites import (
    FRESHNESS_DAYS,
    RAW_SCORING_SUITES,
    RAW_TABLES,
    RAW_TRAINING_SUITES,
    SCHEMAS,
    SUITES,
    built_in_raw_suites,
    table_expectations,
)

GATE_SPEC_FILE = "mlsys_gate.yml"
STAGES = ("scoring", "training")


@dataclass(frozen=True)
class SuiteSpec:
    """One suite of a gate: its column contract (checked before GX runs) and, for a raw
    table, the files it reads (a glob under MLSYS_DATA_DIR) and the stages it gates.
    A suite without ``input`` is a mart (``lead_features``, ``training_snapshots``), read
    from the settings' feature paths, whose row-drop baseline is dated."""

    name: str
    columns: dict[str, tuple[str, ...]]
    input: str | None = None
    stages: tuple[str, ...] = ()
    freshness_days: int = 0

    @property
    def dated(self) -> bool:
        return self.input is None


@dataclass(frozen=True)
class GateSpec:
    suites: dict[str, SuiteSpec]
    # None: the built-in expectations of suite_definitions(); else per suite, from the spec.
    expectations: dict[str, list[dict[str, Any]]] | None = None
    # The dbt project whose marts' YAML gave the mart suites (mlsys_gate.yml's dbt_project).
    dbt_project: Path | None = None

    def raw_suites(self, *, training: bool) -> tuple[str, ...]:
        stage = "training" if training else "scoring"
        return tuple(name for name, s in self.suites.items() if s.input and stage in s.stages)


def default_gate_spec() -> GateSpec:
    """The synthetic CRM's gate: the raw suites of ``mlsys.validation.suites``, the marts'
    suites from their YAML in ``sql/`` (``mart_suites``)."""
    marts = mart_suites(BUILT_IN_PROJECT)
    suites: dict[str, SuiteSpec] = {}
    for name in SUITES:
        raw = RAW_TABLES.get(name)
        stages = tuple(
            stage
            for stage, members in (("scoring", RAW_SCORING_SUITES), ("training", RAW_TRAINING_SUITES))
            if name in members
        )
        suites[name] = SuiteSpec(
            name=name,
            columns=dict(SCHEMAS[name]) if raw else dict(marts[name].columns),
            input=f"raw/{raw}/*.parquet" if raw else None,
            stages=stages,
            freshness_days=FRESHNESS_DAYS.get(name, 0),
        )
    return GateSpec(suites)


def _columns(body: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    return {str(c): tuple(t if isinstance(t, list) else [t]) for c, t in body["columns"].items()}


def load_gate_spec(root: Path) -> GateSpec:
    """The gate of the GX context at ``root``: its ``mlsys_gate.yml`` when it has one (a second
    data source, onboarded with YAML only), else the built-in gate of the synthetic CRM.

    The file is checked against the gate format (``mlsys_gate.schema.json``, docs/gate-format.md)
    first; every problem, there or in the dbt YAML it points at, is a :class:`GateSpecError`
    that names the file and the key."""
    path = Path(root) / GATE_SPEC_FILE
    if not path.is_file():
        return default_gate_spec()
    data = load(path)
    try:
        project = (path.parent / data["dbt_project"]).resolve() if "dbt_project" in data else None
    except (OSError, ValueError, RuntimeError) as exc:
        reason = first_line(exc)
        raise GateSpecError(f"{path}: dbt_project: not a usable path ({reason})") from None
    if project is not None and not (project / "dbt_project.yml").is_file():
        raise GateSpecError(f"{path}: dbt_project: no dbt_project.yml in {project}")
    suites: dict[str, SuiteSpec] = {}
    expectations: dict[str, list[dict[str, Any]]] = {}
    try:
        for name, body in data["suites"].items():
            columns: dict[str, tuple[str, ...]] = {}
            landing: str | None = None
            if "source" in body:
                if project is None:
                    raise GateSpecError(
                        f"{path}: suites.{name}.source: needs `dbt_project` (the folder of its _sources.yml)"
                    )
                declared = source_table(project, body["source"])
                columns = {c.name: c.accepted_types for c in declared.table.columns}
                landing = declared.landing_glob
            if "columns" in body:
                columns = _columns(body)
            input_glob = body.get("input", landing)
            if "source" in body and input_glob is None:
                raise GateSpecError(
                    f"{path}: suites.{name}: the external_location of {body['source']} names no"
                    " raw/... folder; give the suite an `input` glob"
                )
            suites[str(name)] = SuiteSpec(
                name=str(name),
                columns=columns,
                input=input_glob,
                stages=tuple(body.get("stages") or ()),
                freshness_days=int(body.get("freshness_days", 0)),
            )
            expectations[str(name)] = [yaml_expectation(e) for e in body.get("expectations") or []]
        if project is not None:
            for mart in mart_suites(project).values():
                if mart.name in suites:
                    raise GateSpecError(
                        f"{path}: suites.{mart.name}: declared in {mart.path} (the marts' YAML);"
                        " remove it here"
                    )
                suites[mart.name] = SuiteSpec(name=mart.name, columns=dict(mart.columns))
                expectations[mart.name] = copy.deepcopy(mart.expectations)
    except ContractError as exc:
        raise GateSpecError(str(exc)) from None
    return GateSpec(suites, expectations, project)


def gate_spec(settings: Settings) -> GateSpec:
    return load_gate_spec(Path(settings.gx_context_dir))


def raw_suites(settings: Settings, *, training: bool = False) -> tuple[str, ...]:
    """The raw suites that gate scoring (or, with ``training``, retraining) in this context."""
    return gate_spec(settings).raw_suites(training=training)


def suite_definitions(spec: GateSpec | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every suite as a list of ``{"type", "kwargs", "meta", "description"}`` dicts: the
    built-in suites of the synthetic CRM, or those of a context's gate spec (``mlsys_gate.yml``),
    each preceded by the same table checks (non-empty, row drop, required columns, types)."""
    if spec is not None and spec.expectations is not None:
        suites = {
            name: table_expectations(spec.suites[name].columns) + [dict(e) for e in spec.expectations[name]]
            for name in spec.suites
        }
    else:
        marts = mart_suites(BUILT_IN_PROJECT)
        suites = built_in_raw_suites()
        for mart in marts.values():
            suites[mart.name] = table_expectations(mart.columns) + copy.deepcopy(mart.expectations)
    suites = copy.deepcopy(suites)
    for expectations in suites.values():
        for exp in expectations:
            # "meta_column" names the column of a table-level (UnexpectedRows) expectation.
            column = exp["kwargs"].pop("meta_column", None)
            if column:
                exp["meta"]["column"] = column
    return suites


# --------------------------------------------------------------------------------------------
# Gate spec: which suites a GX context holds, what each reads and which stage it gates
