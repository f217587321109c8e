"""The gate of a second data source, declared in YAML: a GX context with an mlsys_gate.yml.

Real GX and DuckDB on a tiny CSV export; the built-in gate of the synthetic CRM must be
unchanged by the generalisation.
"""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path

import pytest

from mlsys import validation
from mlsys.settings import Settings
from mlsys.validation import context_files, suites
from mlsys.validation import spec as spec_module

AS_OF = date(2026, 6, 1)

GATE_YML = """\
suites:
  raw_contacts:
    input: raw/contacts/*.csv*
    stages: [scoring, training]
    columns:
      contact_id: [BIGINT]
      segment: [VARCHAR]
      spend: [BIGINT, DOUBLE]
    expectations:
      - type: expect_column_values_to_be_unique
        kwargs: {column: contact_id}
      - type: expect_column_values_to_be_in_set
        kwargs: {column: segment, value_set: [gold, silver]}
      - type: expect_column_mean_to_be_between
        kwargs: {column: spend, min_value: 0, max_value: 1000}
        severity: warning
        check: distribution
        description: Mean spend is plausible.
  outcomes:
    input: raw/outcomes/*.parquet
    stages: [training]
    columns:
      contact_id: [BIGINT]
  lead_features:
    columns:
      lead_id: [BIGINT]
    expectations:
      - type: expect_column_values_to_not_be_null
        kwargs: {column: lead_id}
"""


@pytest.fixture
def spec_settings(tmp_path: Path) -> Settings:
    context = tmp_path / "gx"
    context.mkdir()
    (context / validation.GATE_SPEC_FILE).write_text(GATE_YML)
    context_files.write_context(context)
    base = Settings.from_env()
    return dataclasses.replace(base, data_dir=tmp_path / "data", gx_context_dir=context)


def _land_csv(settings: Settings, text: str) -> Path:
    folder = settings.data_dir / "raw" / "contacts"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "export.csv"
    path.write_text(text)
    return path


def test_default_gate_is_the_built_in_one(settings: Settings) -> None:
    spec = validation.gate_spec(settings)
    assert spec.expectations is None
    assert set(spec.suites) == set(validation.SUITES)
    assert spec.raw_suites(training=False) == suites.RAW_SCORING_SUITES
    assert spec.raw_suites(training=True) == suites.RAW_TRAINING_SUITES
    assert validation.raw_suites(settings, training=True) == suites.RAW_TRAINING_SUITES
    marts = {name for name, s in spec.suites.items() if s.dated}
    assert marts == set(suites.DATED_SUITES)
    # Rendering the built-in context is unchanged (the committed files still match).
    committed = Path(settings.gx_context_dir)
    for relative, text in context_files.render_context_files().items():
        assert (committed / relative).read_text() == text, relative


def test_spec_context_renders_and_chooses_suites_by_stage(spec_settings: Settings) -> None:
    spec = validation.gate_spec(spec_settings)
    assert list(spec.suites) == ["raw_contacts", "outcomes", "lead_features"]
    assert spec.raw_suites(training=False) == ("raw_contacts",)
    assert spec.raw_suites(training=True) == ("raw_contacts", "outcomes")
    root = Path(spec_settings.gx_context_dir)
    for suite in spec.suites:
        for folder in ("expectations", "validation_definitions", "checkpoints"):
            assert (root / folder / f"{suite}.json").is_file()
    # Writing again changes nothing: the committed files are a pure function of the YAML.
    assert context_files.write_context(root) == []
    definitions = spec_module.suite_definitions(spec)
    checks = [e["meta"].get("check") for e in definitions["raw_contacts"]]
    assert "required_columns" in checks and "column_types" in checks  # the table checks come free


def test_a_good_csv_export_passes_and_a_bad_one_is_stopped(spec_settings: Settings) -> None:
    _land_csv(spec_settings, "contact_id;segment;spend\n1;gold;10\n2;silver;20.5\n3;gold;7\n")
    report = validation.validate_raw("raw_contacts", spec_settings, as_of=AS_OF)
    assert report.success, report.summary()
    assert report.row_count == 3
    assert report.evaluated == len(
        spec_module.suite_definitions(validation.gate_spec(spec_settings))["raw_contacts"]
    )

    _land_csv(spec_settings, "contact_id;segment;spend\n1;gold;10\n1;bronze;20\n")
    report = validation.validate_raw("raw_contacts", spec_settings, as_of=AS_OF)
    assert not report.success
    failed = {(f.expectation, f.column) for f in report.failures}
    assert ("expect_column_values_to_be_unique", "contact_id") in failed
    assert ("expect_column_values_to_be_in_set", "segment") in failed

    _land_csv(spec_settings, "contact_id;segment;spend\nx1;gold;10\n")
    report = validation.validate_raw("raw_contacts", spec_settings, as_of=AS_OF)
    assert not report.success
    assert report.failures[0].column == "contact_id"  # the type failure first, with the value and line
    assert (
        "contact_id: VARCHAR (expected BIGINT), 1 value(s) that do not read as BIGINT, "
        "e.g. 'x1' at line 2 of export.csv" in str(report.failures[0].observed)
    )
    # The other checks still ran, on what could be read (contact_id as null, no value: the
    # checks of that column that observed nothing are covered by the type failure).
    assert report.evaluated > 0
    assert [f.column for f in report.failures].count("contact_id") == 1, report.summary()


def test_unknown_suites_and_bad_specs_are_refused(spec_settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="raw_leads"):
        validation.validate_raw("raw_leads", spec_settings)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / validation.GATE_SPEC_FILE).write_text(
        "suites:\n  raw_x:\n    input: raw/x/*.csv\n    columns: {a: [BIGINT]}\n"
    )
    with pytest.raises(ValueError, match="stages"):
        validation.load_gate_spec(bad)


def test_conversions_and_estimator_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLSYS_CONVERSIONS", raising=False)
    monkeypatch.delenv("MLSYS_ESTIMATOR", raising=False)
    default = Settings.from_env()
    assert default.conversions_files == default.raw_dir / "conversions" / "*.parquet"
    assert default.estimator == "logreg"
    monkeypatch.setenv("MLSYS_CONVERSIONS", "features/conversions/*.parquet")
    monkeypatch.setenv("MLSYS_ESTIMATOR", "hgb")
    changed = Settings.from_env()
    assert changed.conversions_files == changed.data_dir / "features" / "conversions" / "*.parquet"
    assert changed.estimator == "hgb"
