"""``mlsys source check NAME``: is a source ready to train and score? In plain words.

Four checks, each a line that starts with ``ok`` or ``MISSING``:

1. the gate: ``mlsys_gate.yml`` follows the gate format, points at the source's dbt project,
   and the committed GX files are those it renders to;
2. the output contract: the marts' YAML declares ``lead_features`` (and ``training_snapshots``)
   with ``lead_id``, ``as_of`` (and ``label``), a ``data_type`` on every column, and at least one
   feature in dbt's manifest;
3. the export: files landed where the raw suites read them, and the raw gate passes them;
4. a dry dbt build (``dbt build --empty``: every model and test compiled and run on no rows),
   into a scratch folder, so nothing of the source's home changes.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from mlsys.onboarding.scaffold import LABEL_PLACEHOLDER
from mlsys.settings import Settings


@dataclass(frozen=True)
class Finding:
    ok: bool
    text: str

    def __str__(self) -> str:
        return f"{'ok     ' if self.ok else 'MISSING'} {self.text}"


def gate_findings(settings: Settings) -> list[Finding]:
    from mlsys.validation import GATE_SPEC_FILE, load_gate_spec
    from mlsys.validation.context_files import render_context_files
    from mlsys.validation.gate_format import GateSpecError

    root = Path(settings.gx_context_dir)
    gate_file = root / GATE_SPEC_FILE
    if not gate_file.is_file():
        return [Finding(False, f"the gate: {gate_file} does not exist (mlsys source new writes one)")]
    try:
        spec = load_gate_spec(root)
    except GateSpecError as exc:
        return [Finding(False, f"the gate does not load: {exc}")]
    out = [Finding(True, f"the gate {gate_file} loads: suites {', '.join(spec.suites)}")]
    if spec.dbt_project is not None and spec.dbt_project != settings.dbt_project_dir.resolve():
        text = f"{gate_file}: dbt_project is {spec.dbt_project}"
        text += f", but MLSYS_DBT_PROJECT_DIR is {settings.dbt_project_dir}"
        out.append(Finding(False, text))
    marts = [name for name, suite in spec.suites.items() if suite.dated]
    if "lead_features" not in marts:
        out.append(Finding(False, f"the gate has no lead_features suite: set dbt_project in {gate_file}"))
    stale = [rel for rel, text in render_context_files(spec).items() if _text(root / rel) != text]
    if stale:
        out.append(
            Finding(
                False,
                f"the GX files are older than the YAML ({', '.join(sorted(stale)[:3])}...): run "
                f".venv/bin/python -m mlsys.validation write-context --root {root}",
            )
        )
    else:
        out.append(Finding(True, "the committed GX files match the gate's YAML"))
    return out


def _text(path: Path) -> str | None:
    return path.read_text() if path.is_file() else None


def contract_findings(settings: Settings) -> list[Finding]:
    from mlsys.catalog import CatalogError, load_catalog
    from mlsys.contract import ContractError
    from mlsys.validation.mart_suites import mart_suites

    project = settings.dbt_project_dir
    try:
        suites = mart_suites(project)
    except ContractError as exc:
        return [Finding(False, f"the output contract: {exc}")]
    out = [Finding(True, f"the marts' YAML declares {', '.join(suites)} with their columns and types")]
    for sql in sorted((project / "models").rglob("*.sql")):
        if LABEL_PLACEHOLDER in sql.read_text():
            out.append(
                Finding(False, f"the label: {sql} still has the placeholder; say when a lead converted")
            )
    if "training_snapshots" not in suites:
        out.append(Finding(False, f"no training_snapshots model in {project}: the source cannot train"))
    for mart in suites:
        try:
            catalog = load_catalog(mart, settings)
        except CatalogError as exc:
            out.append(Finding(False, f"the feature catalogue of {mart}: {exc}"))
            continue
        out.append(
            Finding(
                True,
                f"{mart}: {len(catalog.numeric)} numeric, {len(catalog.categorical)} categorical feature(s)",
            )
        )
    return out


def _export(settings: Settings, as_of: date) -> tuple[list[Finding], bool]:
    from mlsys.validation import DataValidationError, gate_all, gate_spec, validate_raw
    from mlsys.validation.gate_format import GateSpecError

    try:
        spec = gate_spec(settings)
    except GateSpecError:
        return [], False
    raw = {name: suite for name, suite in spec.suites.items() if suite.input}
    out: list[Finding] = []
    landed = True
    for name, suite in raw.items():
        pattern = settings.data_dir / str(suite.input)
        if not glob.glob(str(pattern)):
            landed = False
            out.append(Finding(False, f"no export landed for {name}: copy it to {pattern.parent}/"))
    if not landed:
        return out, False
    reports = [validate_raw(name, settings, as_of=as_of) for name in raw]
    try:
        gate_all(reports)
    except DataValidationError as exc:
        return [*out, Finding(False, f"the raw gate stops the export:\n{exc}")], True
    return [*out, Finding(True, f"the raw gate passes the export ({', '.join(raw)})")], True


def _dry_build(settings: Settings, as_of: date) -> list[Finding]:
    from mlsys import dbt

    with tempfile.TemporaryDirectory(prefix="mlsys-source-check-") as scratch:
        data_dir = Path(scratch) / "data"
        data_dir.mkdir()
        (data_dir / "raw").symlink_to(settings.data_dir / "raw", target_is_directory=True)
        for mart in (
            "lead_features",
            "training_snapshots",
            ".staging/lead_features",
            ".staging/training_snapshots",
        ):
            (data_dir / "features" / mart).mkdir(parents=True, exist_ok=True)
        dry = dataclasses.replace(settings, data_dir=data_dir, warehouse=Path(scratch) / "warehouse.duckdb")
        variables = json.dumps(dbt.build_vars(dry, as_of, stage_features=True))
        args = dbt.args(
            dry,
            "build",
            "--empty",
            "--vars",
            variables,
            target_path=Path(scratch) / "target",
            log_path=Path(scratch),
        )
        result = dbt.run(args, dry)
    if result.success:
        return [Finding(True, "a dry dbt build (dbt build --empty) compiles and runs every model and test")]
    lines = []
    for node in getattr(result.result, "results", None) or []:
        status = str(getattr(node, "status", "")).lower()
        if status in ("error", "fail", "runtime error"):
            lines.append(
                f"  {node.node.resource_type} {node.node.name}: {' '.join(str(node.message).split())}"
            )
    if result.exception is not None:
        lines.append(f"  {str(result.exception).strip().splitlines()[0]}")
    return [Finding(False, "the dry dbt build fails:\n" + "\n".join(lines or ["  (see dbt's log above)"]))]


def check_source(settings: Settings, as_of: date) -> list[Finding]:
    """Every check of a source, in order; a check whose inputs are missing is skipped."""
    findings = gate_findings(settings)
    findings += contract_findings(settings)
    export, landed = _export(settings, as_of)
    findings += export
    if landed:
        findings += _dry_build(settings, as_of)
    else:
        findings.append(Finding(False, "the dry dbt build needs the export landed first"))
    return findings
