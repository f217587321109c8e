"""The scored-leads table for BI: the DuckDB view file and how each reader opens the table.

The table is Hive-partitioned Parquet, `scored_leads/score_date=<date>/part-00000.parquet`
under the data folder (in the pointer publish mode, `score_date=<date>/v=<n>/part-00000.parquet`
behind commit markers: mlsys.scored_table). `scored_leads.duckdb` beside it holds two views for
BI tools: `scored_leads` (every night) and `scored_leads_latest` (the newest night). Decision
and alternatives: docs/adr/0005-bi-view-file.md; readers: docs/bi.md.

* The views read a **relative** glob, `scored_leads/*/*.parquet`: DuckDB resolves it against
  the connection's `file_search_path` (or its working directory), so the file works wherever
  the data folder is copied or mounted - open it with `file_search_path` = that folder.
* The nightly publish never opens the file. A glob is expanded at every query, so a new
  partition shows up in the views as soon as it is swapped in. The file is (re)written only
  when it is missing or its definition changed (`BI_FILE_VERSION`), and then aside, under a
  temporary name, and renamed over the old one: a client holding the old file open - read-only
  or read-write - keeps its connection, and no lock of a reader can fail a night.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import duckdb

from mlsys.settings import Settings

log = logging.getLogger(__name__)

# Bump when the views change: the next publish writes the file anew (aside, then renamed).
BI_FILE_VERSION = "mlsys BI views v2: relative glob, resolved against file_search_path"
# Relative to the data folder; the same string the views hold.
SCORED_GLOB = "scored_leads/*/*.parquet"
LATEST_VIEW = (
    "create view scored_leads_latest as select * from scored_leads "
    "where score_date = (select max(score_date) from scored_leads)"
)
# Per publish mode (MLSYS_PUBLISH_MODE). The pointer mode's views follow the commit markers:
# per night the highest committed version, listed by glob() at every query.
VIEWS = {
    "swap": {
        "scored_leads": (
            "create view scored_leads as select * from read_parquet('scored_leads/*/*.parquet', "
            "hive_partitioning = true, hive_types = {'score_date': date})"
        ),
        "scored_leads_latest": LATEST_VIEW,
    },
    "pointer": {
        "scored_leads_versions": (
            "create view scored_leads_versions as select "
            "cast(regexp_extract(file, 'score_date=([0-9-]+)/', 1) as date) as score_date, "
            "max(cast(regexp_extract(file, '/v=([0-9]+)$', 1) as bigint)) as v "
            "from glob('scored_leads/*/_committed/v=*') group by all"
        ),
        "scored_leads": (
            "create view scored_leads as select s.* exclude (v) from read_parquet("
            "'scored_leads/*/v=*/*.parquet', hive_partitioning = true, "
            "hive_types = {'score_date': date, 'v': bigint}) as s "
            "semi join scored_leads_versions using (score_date, v)"
        ),
        "scored_leads_latest": LATEST_VIEW,
    },
}
COMMENTS = {
    "scored_leads_versions": "The committed version of each night (the pointer publish mode).",
    "scored_leads": "Every published night of scored leads, one Hive partition per score_date. "
    + BI_FILE_VERSION,
    "scored_leads_latest": "The newest published night of scored_leads.",
}


def _file_version(settings: Settings) -> str:
    """What the marker records: the views' version and the publish mode they were written for."""
    return f"{BI_FILE_VERSION}; publish mode {settings.publish_mode}"


def version_marker(settings: Settings) -> Path:
    """Beside the view file, so checking it never opens (nor locks) the file readers hold."""
    return settings.bi_database.with_name(f".{settings.bi_database.name}.version")


def connect(settings: Settings, *, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """A connection to the view file whose relative glob resolves against the data folder
    (what docs/bi.md tells BI users to do: `file_search_path` = the folder holding the file)."""
    return duckdb.connect(
        str(settings.bi_database),
        read_only=read_only,
        config={"file_search_path": str(settings.bi_database.parent)},
    )


def ensure_view_file(settings: Settings) -> bool:
    """Write the view file if it is missing or older than `BI_FILE_VERSION`; True when it was
    written. Needs at least one published partition (DuckDB checks a view's glob). Never
    raises: the night is already published, and the Parquet table is the contract; a failure
    here is logged and the next publish tries again."""
    marker = version_marker(settings)
    try:
        if settings.bi_database.exists() and marker.read_text().strip() == _file_version(settings):
            return False
    except FileNotFoundError:
        pass
    tmp = settings.bi_database.with_name(f".{settings.bi_database.name}.{os.getpid()}.tmp")
    try:
        _write_views(tmp, settings.bi_database.parent, settings.publish_mode)
        os.replace(tmp, settings.bi_database)
        marker_tmp = marker.with_name(marker.name + ".tmp")
        marker_tmp.write_text(_file_version(settings) + "\n")
        os.replace(marker_tmp, marker)
    except (OSError, duckdb.Error) as exc:
        log.error("could not write the BI view file %s (%s); the scored table is published", tmp, exc)
        return False
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
            leftover.unlink(missing_ok=True)
    log.info("wrote the BI view file %s", settings.bi_database)
    return True


def _write_views(path: Path, data_dir: Path, publish_mode: str) -> None:
    path.unlink(missing_ok=True)
    with duckdb.connect(str(path), config={"file_search_path": str(data_dir)}) as con:
        for name, sql in VIEWS[publish_mode].items():
            con.execute(sql)
            con.execute(f"comment on view {name} is '{COMMENTS[name]}'")
