"""Synthetic mart rows for the gate's tests and its benchmark: a mart of any size without a
dbt build (benchmarks/bench_validation.py, tests/integration/test_validation.py)."""

from __future__ import annotations

from datetime import date

from mlsys.validation.suites import ACTIVITY_TYPE_COUNTS, JOB_LEVELS, SOURCES, sql_list


def synthetic_features_sql(rows: int, as_of: date, *, label: bool = False) -> str:
    """A SELECT producing ``rows`` valid lead_features (or training_snapshots) rows, for the
    gate's tests and benchmark: no dbt build needed to have a mart of any size."""
    sources, levels = sql_list(SOURCES), sql_list(JOB_LEVELS)
    cols = [
        "i::BIGINT AS lead_id",
        f"DATE '{as_of.isoformat()}' AS as_of",
        f"{sources}[1 + i % 6] AS source",
        "CASE WHEN i % 5 = 0 THEN NULL ELSE 'industry_' || (i % 12)::VARCHAR END AS industry",
        "CASE WHEN i % 7 = 0 THEN NULL ELSE ['US', 'DE', 'GB', 'FR'][1 + i % 4] END AS country",
        f"CASE WHEN i % 9 = 0 THEN NULL ELSE {levels}[1 + i % 5] END AS job_level",
        "CASE WHEN i % 11 = 0 THEN NULL ELSE (1 + i % 5000)::BIGINT END AS company_size",
        "(i % 720)::INTEGER AS lead_age_days",
        "CASE WHEN i % 4 = 0 THEN NULL ELSE (9 + i % 9)::DOUBLE END AS days_since_first_activity",
        "CASE WHEN i % 4 = 0 THEN NULL ELSE (i % 10)::DOUBLE END AS days_since_last_activity",
        "(i % 50 + 30)::BIGINT AS n_activities_total",
        "(i % 5)::BIGINT AS n_activities_7d",
        "(i % 5 + 10)::BIGINT AS n_activities_30d",
        "(i % 5 + 20)::BIGINT AS n_activities_90d",
    ]
    cols += [f"(i % 3)::BIGINT AS {c}" for c in ACTIVITY_TYPE_COUNTS]
    cols.append("((i % 7) - 3)::BIGINT AS activity_trend_7d")
    if label:
        cols.append("(CASE WHEN i % 20 = 0 THEN 1 ELSE 0 END)::INTEGER AS label")
    return "SELECT\n  " + ",\n  ".join(cols) + f"\nFROM range({int(rows)}) AS t(i)"
