"""Gate spec: which suites a GX context holds, what each reads and which stage it gates."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlsys.settings import Settings
from mlsys.validation.suites import (
    ERROR,
    FRESHNESS_DAYS,
    RAW_SCORING_SUITES,
    RAW_TABLES,
    RAW_TRAINING_SUITES,
    SCHEMAS,
    SUITES,
    WARNING,
    built_in_suites,
    expectation,
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

    def raw_suites(self, *, training: bool) -> tuple[str, ...]:
        stage = "training" if training else "scoring"
        return tuple(name for name, s in self.suites.items() if s.input and stage in s.stages)


def default_gate_spec() -> GateSpec:
    """The synthetic CRM's gate: the built-in suites of ``mlsys.validation.suites``."""
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
            columns=dict(SCHEMAS[name]),
            input=f"raw/{raw}/*.parquet" if raw else None,
            stages=stages,
            freshness_days=FRESHNESS_DAYS.get(name, 0),
        )
    return GateSpec(suites)


def _spec_expectation(suite: str, item: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(item, Mapping) or "type" not in item:
        raise ValueError(f"{GATE_SPEC_FILE}: every expectation of {suite} needs a `type`")
    unknown = set(item) - {"type", "kwargs", "severity", "check", "column", "description"}
    if unknown:
        raise ValueError(f"{GATE_SPEC_FILE}: {suite}: unknown expectation key(s) {sorted(unknown)}")
    severity = str(item.get("severity", ERROR))
    if severity not in (ERROR, WARNING):
        raise ValueError(f"{GATE_SPEC_FILE}: {suite}: severity must be {ERROR} or {WARNING}")
    kwargs = dict(item.get("kwargs") or {})
    if item.get("column"):  # the column of a table-level (unexpected rows) expectation
        kwargs["meta_column"] = str(item["column"])
    return expectation(
        str(item["type"]),
        severity=severity,
        check=item.get("check"),
        description=item.get("description"),
        **kwargs,
    )


def load_gate_spec(root: Path) -> GateSpec:
    """The gate of the GX context at ``root``: its ``mlsys_gate.yml`` when it has one (a second
    data source, onboarded with YAML only), else the built-in gate of the synthetic CRM."""
    path = Path(root) / GATE_SPEC_FILE
    if not path.is_file():
        return default_gate_spec()
    import yaml

    data = yaml.safe_load(path.read_text()) or {}
    raw_suites = data.get("suites")
    if not isinstance(raw_suites, Mapping) or not raw_suites:
        raise ValueError(f"{path}: `suites` must map suite names to their definitions")
    suites: dict[str, SuiteSpec] = {}
    expectations: dict[str, list[dict[str, Any]]] = {}
    for name, body in raw_suites.items():
        body = body or {}
        columns = body.get("columns")
        if not isinstance(columns, Mapping) or not columns:
            raise ValueError(f"{path}: suite {name} needs `columns` (name: [DuckDB types])")
        stages = tuple(body.get("stages") or ())
        if body.get("input") and not stages:
            raise ValueError(f"{path}: raw suite {name} needs `stages` (some of {STAGES})")
        if set(stages) - set(STAGES):
            raise ValueError(f"{path}: suite {name}: stages must be among {STAGES}")
        suites[str(name)] = SuiteSpec(
            name=str(name),
            columns={str(c): tuple(t if isinstance(t, list) else [t]) for c, t in columns.items()},
            input=body.get("input"),
            stages=stages,
            freshness_days=int(body.get("freshness_days", 0)),
        )
        expectations[str(name)] = [_spec_expectation(name, e) for e in body.get("expectations") or []]
    return GateSpec(suites, expectations)


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
        suites = built_in_suites()
    for expectations in suites.values():
        for exp in expectations:
            # "meta_column" names the column of a table-level (UnexpectedRows) expectation.
            column = exp["kwargs"].pop("meta_column", None)
            if column:
                exp["meta"]["column"] = column
    return suites


# --------------------------------------------------------------------------------------------
# Gate spec: which suites a GX context holds, what each reads and which stage it gates
