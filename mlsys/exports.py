"""The example consumer of the scored-leads asset: after each published night, the best leads
of that night as a small CSV for people who want a list, not a table
(`$MLSYS_DATA_DIR/exports/top_leads/score_date=<date>.csv`).

The `export_top_leads` DAG runs this on every `mlsys://scored_leads` event, with the score
date the event's `extra` names (docs/operating.md, "Asset events"); it shows the pattern a
BI-extract refresh would follow. Written aside and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Any

from mlsys.settings import Settings

TOP_N = 100


def top_leads_path(settings: Settings, score_date: date) -> Path:
    return settings.data_dir / "exports" / "top_leads" / f"score_date={score_date.isoformat()}.csv"


def export_top_leads(score_date: date, settings: Settings, n: int = TOP_N) -> dict[str, Any]:
    """The `n` highest scores of the published night `score_date` (ties by lead_id) with their
    band, percentile, reasons and model version; fails clearly when the night is not published."""
    import duckdb

    if n < 1:
        raise ValueError(f"the number of leads to export must be >= 1, got {n}")
    from mlsys.scored_table import current_files

    files = current_files(settings, score_date)
    if not files:
        partition = settings.partition_dir(score_date)
        raise FileNotFoundError(f"no published partition of {score_date} at {partition}: nothing to export")
    out = top_leads_path(settings, score_date)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    con = duckdb.connect()
    try:
        top = (
            con.read_parquet([str(f) for f in files])
            .project(
                "lead_id, score, score_band, score_percentile, "
                "array_to_string(list_transform(top_reasons, lambda r: r.feature), '; ') as top_reasons, "
                "model_name, model_version"
            )
            .order("score desc, lead_id")
            .limit(n)
        )
        rows = len(top.fetchall())
        top.write_csv(str(tmp), header=True)
        os.replace(tmp, out)
    finally:
        con.close()
        tmp.unlink(missing_ok=True)
    return {"score_date": score_date.isoformat(), "rows": rows, "path": str(out)}
