"""Errors that point at the row: what the gate and the realized-performance check say about a
broken export, read as a user reads them (real GX and DuckDB on tiny files of their own)."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from mlsys import cli, drift, validation
from mlsys.settings import Settings
from mlsys.validation import context_files

AS_OF = date(2026, 6, 1)

# A CRM export keyed by text ids whose target column `Converted` must read as BIGINT 0/1.
GATE_YML = """\
suites:
  raw_leads_export:
    input: raw/leads_export/*.csv*
    stages: [scoring, training]
    columns:
      Prospect ID: [VARCHAR]
      Lead Source: [VARCHAR]
      Converted: [BIGINT]
    expectations:
      - type: expect_column_values_to_be_in_set
        kwargs: {column: Converted, value_set: [0, 1]}
      - type: expect_column_values_to_be_in_set
        kwargs: {column: Lead Source, value_set: [Google, Direct Traffic, Olark Chat]}
  lead_features:
    columns:
      lead_id: [VARCHAR]
      visits: [TINYINT, SMALLINT, INTEGER, BIGINT]
    expectations:
      - type: expect_column_values_to_be_between
        kwargs: {column: visits, min_value: 0}
"""


@pytest.fixture
def export_settings(tmp_path: Path, settings: Settings) -> Settings:
    context = tmp_path / "gx"
    context.mkdir()
    (context / validation.GATE_SPEC_FILE).write_text(GATE_YML)
    context_files.write_context(context)
    return dataclasses.replace(settings, data_dir=tmp_path / "data", gx_context_dir=context)


def _land(settings: Settings, text: str) -> None:
    folder = settings.data_dir / "raw" / "leads_export"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "export.csv").write_text(text)


def test_a_mistyped_target_shows_its_values_and_lines_and_the_set_check_still_runs(
    export_settings: Settings,
) -> None:
    _land(
        export_settings,
        "Prospect ID,Lead Source,Converted\n"
        "7927b2df-8bba-4d29-b9a2-b6e0beafe620,Google,0\n"
        "2a272436-5132-4136-86fa-dcc88c88f482,Direct Traffic,1\n"
        "8cc8c611-a219-4f35-ad23-fdfd2656bd8a,Google,maybe\n"
        "0cc2df48-7cf4-4e39-9de9-19797f9b38cc,Olark Chat,2\n",
    )
    report = validation.validate_raw("raw_leads_export", export_settings, as_of=AS_OF)
    assert not report.success
    first = report.failures[0]
    assert first.column == "Converted"
    assert str(first.observed).startswith(
        "wrong type for Converted: VARCHAR (expected BIGINT), 1 value(s) that do not read as BIGINT, "
        "e.g. 'maybe' at line 4 of export.csv"
    )
    # The allowed-values check ran on what could be read: 2 is out of the set, 'maybe' is not
    # counted twice, and the report says how many checks GX evaluated.
    [in_set] = [f for f in report.failures if f.expectation == "expect_column_values_to_be_in_set"]
    assert in_set.column == "Converted" and in_set.unexpected_sample == [2]
    assert report.evaluated > 0
    summary = report.summary()
    assert "0 expectation(s) evaluated" not in summary
    assert "line 4 of export.csv" in summary


def test_a_missing_column_names_the_contract_that_requires_it(export_settings: Settings) -> None:
    _land(export_settings, "Prospect ID,Converted\nabc,1\n")
    report = validation.validate_raw("raw_leads_export", export_settings, as_of=AS_OF)
    [failure] = report.failures
    assert failure.column == "Lead Source"
    line = report.summary()
    assert (
        "missing column Lead Source, required by the raw contract of source mlsys (suite raw_leads_export)"
        in line
    )
    assert "unexpected e.g." not in line


def test_a_mistyped_parquet_column_shows_its_rows(export_settings: Settings) -> None:
    path = export_settings.lead_features_path(AS_OF)
    path.parent.mkdir(parents=True, exist_ok=True)
    duckdb.sql(
        "copy (select * from (values ('a', '3'), ('b', 'many'), ('c', '-1')) as t(lead_id, visits)) "
        f"to '{path}' (format parquet)"
    )
    report = validation.validate_mart("lead_features", AS_OF, export_settings)
    assert "'many' at row 2 of " + path.name in str(report.failures[0].observed)
    [between] = [f for f in report.failures if f.expectation == "expect_column_values_to_be_between"]
    assert between.unexpected_sample == [-1]  # the range check ran on the readable values


def test_realized_performance_says_why_it_cannot_run(
    published: Path,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An export that says whether a lead converted but never when: the check cannot match a
    score to its horizon, and the log and `mlsys drift` say so."""
    undated = tmp_path / "conversions.parquet"
    duckdb.sql(
        "copy (select lead_id, null::timestamp as converted_at "
        f"from read_parquet('{settings.raw_dir}/conversions/*.parquet')) to '{undated}' (format parquet)"
    )
    later = AS_OF + timedelta(days=settings.horizon_days + 1)
    no_dates = dataclasses.replace(settings, conversions_glob=str(undated))
    with caplog.at_level(logging.WARNING, logger="mlsys.drift"):
        assert drift.realized_performance(later, no_dates) is None
    assert "no dated conversions in " + str(undated) in caplog.text

    # `mlsys drift` as of the session's night (its features exist), with an older night in
    # place for a moment: a copy of the published partition, removed again.
    older = settings.partition_dir(AS_OF - timedelta(days=settings.horizon_days + 1))
    placed = not older.exists()  # another test may have published that night: keep it then
    if placed:
        shutil.copytree(published, older)
    try:
        monkeypatch.setenv("MLSYS_CONVERSIONS", str(undated))
        assert cli.main(["drift", "--as-of", AS_OF.isoformat()]) == 0
    finally:
        if placed:
            shutil.rmtree(older)
    out = capsys.readouterr().out
    assert "realized performance not measured: no dated conversions in " + str(undated) in out

    # Too early: no night's horizon is over yet (the session's earliest night, whatever other
    # tests published before this one).
    earliest = min(
        date.fromisoformat(p.name.split("=", 1)[1]) for p in settings.scored_dir.glob("score_date=*")
    )
    too_early = earliest + timedelta(days=settings.horizon_days - 1)
    _, reason = drift.realized_performance_or_reason(too_early, settings)
    assert reason.startswith("no published partition scored on or before")
