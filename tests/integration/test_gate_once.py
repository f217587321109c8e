"""A mart is validated once per build: `mlsys score` does not re-run the suite that
`mlsys features` passed on the same file, and any other file is validated again."""

from __future__ import annotations

import logging
import shutil
from datetime import date

import duckdb
import pytest

from mlsys import pipeline
from mlsys.settings import Settings
from mlsys.validation import DataValidationError, passes

AS_OF = date(2026, 6, 1)


def _validation_results(settings: Settings) -> int:
    return sum(1 for p in settings.gx_runtime_dir.rglob("*.json") if "validations" in p.parts)


def test_a_passed_mart_is_not_validated_again(
    isolated_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    s = isolated_settings
    with caplog.at_level(logging.INFO, logger="mlsys"):
        pipeline.build_features_gated(AS_OF, s)
    # Each model of the build says when it starts and ends (mlsys.dbt.BuildProgress).
    assert "dbt model stg_activities: started" in caplog.text
    assert "dbt model lead_features: success in " in caplog.text
    caplog.clear()
    final = s.lead_features_path(AS_OF)
    record = passes.record_path(final)
    assert record.is_file() and not s.mart_path("lead_features", AS_OF, staged=True).exists()
    results = _validation_results(s)
    assert results > 0

    # What `mlsys score` runs first: the suite is not run again on the same file.
    with caplog.at_level(logging.INFO, logger="mlsys.pipeline"):
        again = pipeline.gate_scoring(AS_OF, s, raw=False)
    assert again["lead_features"]["already_passed"] is True
    assert again["lead_features"]["success"] is True
    assert "already passed its gate" in caplog.text
    assert _validation_results(s) == results

    # The same bytes copied over it (a new file): validated again, and recorded again.
    copy = final.with_name("copy.parquet")
    shutil.copyfile(final, copy)
    copy.replace(final)
    assert "already_passed" not in pipeline.gate_scoring(AS_OF, s, raw=False)["lead_features"]
    assert _validation_results(s) > results
    assert passes.passed_before("lead_features", final, s) is not None

    # A bad file put in place by hand after the pass: the gate runs and stops it.
    duckdb.sql(
        f"copy (select * replace (-1 as n_activities_total) from read_parquet('{final}')) "
        f"to '{copy}' (format parquet)"
    )
    copy.replace(final)
    assert passes.passed_before("lead_features", final, s) is None
    with pytest.raises(DataValidationError, match="n_activities_total"):
        pipeline.gate_scoring(AS_OF, s, raw=False)
