"""The Great Expectations gate's cost: a lead_features mart of N rows, or the raw suites over a
landing folder, each with the time and peak RSS of this process.

    .venv/bin/python benchmarks/bench_validation.py marts --rows 5000000 --workdir /tmp/bench-gate
    .venv/bin/python benchmarks/bench_validation.py raw --data-dir <MLSYS_DATA_DIR of `mlsys generate`>
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from mlsys.settings import Settings
from mlsys.validation import LEAD_FEATURES, validate_mart, validate_raw
from mlsys.validation.engine import get_context
from mlsys.validation.preflight import sql_str
from mlsys.validation.suites import RAW_TRAINING_SUITES
from mlsys_local.synthetic_marts import synthetic_features_sql


def _benchmark(rows: int, workdir: Path) -> dict[str, Any]:
    import resource

    import duckdb

    as_of = date(2026, 6, 1)
    settings = dataclasses.replace(Settings.from_env(), data_dir=workdir)
    path = settings.lead_features_path(as_of)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        con = duckdb.connect()
        con.execute(f"COPY ({synthetic_features_sql(rows, as_of)}) TO {sql_str(str(path))} (FORMAT parquet)")
        con.close()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.monotonic()
    get_context(settings)  # GX import and context: a fixed cost of about 5 s, 300 MB
    context_seconds = time.monotonic() - started
    report = validate_mart(LEAD_FEATURES, as_of, settings)
    seconds = time.monotonic() - started
    return {
        "rows": report.row_count,
        "success": report.success,
        "evaluated": report.evaluated,
        "seconds_total": round(seconds, 2),
        "seconds_gx_import_and_context": round(context_seconds, 2),
        "seconds_validation": round(seconds - context_seconds, 2),
        "peak_rss_mb_before": round(rss_before),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "report": report.summary(),
    }


def _benchmark_raw(data_dir: Path, as_of: date) -> dict[str, Any]:
    """The raw suites over an existing landing folder (e.g. from ``mlsys generate``)."""
    import resource

    settings = dataclasses.replace(Settings.from_env(), data_dir=data_dir)
    started = time.monotonic()
    get_context(settings)
    context_seconds = time.monotonic() - started
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    suites: dict[str, Any] = {}
    reports = []
    for suite in RAW_TRAINING_SUITES:
        suite_started = time.monotonic()
        report = validate_raw(suite, settings, as_of=as_of)
        reports.append(report)
        suites[suite] = {
            "rows": report.row_count,
            "success": report.success,
            "seconds": round(time.monotonic() - suite_started, 2),
            "peak_rss_mb_so_far": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
    return {
        "suites": suites,
        "success": all(r.success for r in reports),
        "seconds_gx_import_and_context": round(context_seconds, 2),
        "seconds_total": round(time.monotonic() - started, 2),
        "peak_rss_mb_before": round(rss_before),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "report": "\n".join(r.summary() for r in reports),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    marts = sub.add_parser("marts", help="validate N synthetic lead_features rows")
    marts.add_argument("--rows", type=int, default=5_000_000)
    marts.add_argument("--workdir", type=Path, required=True)
    raw = sub.add_parser("raw", help="run the raw suites over DATA_DIR/raw (e.g. from `mlsys generate`)")
    raw.add_argument("--data-dir", type=Path, required=True)
    raw.add_argument("--as-of", type=date.fromisoformat, default=date(2026, 6, 1))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "marts":
        result = _benchmark(args.rows, args.workdir.resolve())
    else:
        result = _benchmark_raw(args.data_dir.resolve(), args.as_of)
    print(result.pop("report"))
    print(json.dumps(result, indent=2))
    return 0 if result["success"] else 1


if __name__ == "__main__":
    sys.exit(main())
