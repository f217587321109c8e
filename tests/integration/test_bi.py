"""The scored-leads table as BI readers see it (docs/bi.md, ADR 0005).

* Each reader snippet of docs/bi.md runs as written, from a folder whose `var/` is the
  session's home: DuckDB, pyarrow.dataset and Polars return the same rows and columns, and the
  `score_date` partition key never clashes with an in-file column.
* The view file opens from another path (the data folder copied elsewhere).
* A reader holding the view file open - read-only in this process, read-write in another -
  never fails a night: `mlsys score` and a `score_leads` run succeed and the held connection's
  next query sees the new partition.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlsys import bi, score
from mlsys.settings import REPO_ROOT, Settings

pytestmark = pytest.mark.slow

BI_DOC = REPO_ROOT / "docs" / "bi.md"
AS_OF = date(2026, 6, 1)
FILE_COLUMNS = [f.name for f in score.SCORED_SCHEMA]


def doc_snippet(heading: str) -> str:
    """The first ```python block under the `## <heading>` of docs/bi.md."""
    section = BI_DOC.read_text().split(f"\n## {heading}\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, f"no python block under {heading!r}"
    return match.group(1)


@pytest.fixture
def repo_like(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory whose `var` is the session's home, as the repository root is after
    `make demo`: the documented relative paths resolve as they would there."""
    (tmp_path / "var").symlink_to(settings.home)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_snippet(heading: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(compile(doc_snippet(heading), f"docs/bi.md:{heading}", "exec"), namespace)
    return namespace


def as_rows(table: pa.Table) -> list[tuple]:
    """Rows as Python values in (score_date, lead_id) order: string types of any width compare."""
    rows = table.to_pylist()
    return sorted((tuple(r.values()) for r in rows), key=lambda r: (r[-1], r[0]))


def test_every_reader_returns_the_same_rows_and_columns(published: Path, repo_like: Path) -> None:
    tables = {
        "duckdb": run_snippet("DuckDB")["table"],
        "pyarrow": run_snippet("pyarrow.dataset")["table"],
        "polars": run_snippet("Polars")["table"].to_arrow(),
    }
    published_rows = sum(
        pq.read_metadata(f).num_rows
        for f in (repo_like / "var" / "data" / "scored_leads").glob("*/*.parquet")
    )
    for name, table in tables.items():
        # The file's columns, then the partition key once: no clash, no duplicate.
        assert table.schema.names == [*FILE_COLUMNS, "score_date"], name
        assert table.schema.field("score_date").type == pa.date32(), name
        assert table.num_rows == published_rows, name
        assert table.column("score_date").to_pylist() == table.column("as_of").to_pylist(), name
    reference = as_rows(tables["duckdb"])
    assert as_rows(tables["pyarrow"]) == reference
    assert as_rows(tables["polars"]) == reference
    # A single file read alone has no partition key: as_of carries the date.
    alone = pq.read_table(published / score.PART_FILE)
    assert alone.schema.names == FILE_COLUMNS and set(alone.column("as_of").to_pylist()) == {AS_OF}


def test_the_view_file_opens_from_its_documented_snippet(
    published: Path, settings: Settings, repo_like: Path
) -> None:
    from collections import Counter

    latest = run_snippet("The DuckDB view file, from any folder or host")["latest"]
    newest = max(settings.scored_dir.glob("score_date=*"), key=lambda p: p.name)
    bands = Counter(pq.read_table(newest, columns=["score_band"]).column("score_band").to_pylist())
    assert latest == sorted(bands.items())


def test_the_view_file_works_from_another_path(published: Path, settings: Settings, tmp_path: Path) -> None:
    """The data folder copied (or mounted) elsewhere: the views follow it, not the producer's
    absolute path - and a query of the original folder's file from another working directory
    without file_search_path finds nothing (the glob is relative by design)."""
    import duckdb

    elsewhere = tmp_path / "mnt" / "mlsys-data"
    elsewhere.mkdir(parents=True)
    shutil.copy2(settings.bi_database, elsewhere / settings.bi_database.name)
    shutil.copytree(settings.scored_dir, elsewhere / "scored_leads")
    # fetchall: a fetchone would leave the default connection's result unfinished for later tests.
    expected = duckdb.execute(
        "select count(*), count(distinct score_date) from read_parquet($glob, hive_partitioning = true)",
        {"glob": str(settings.scored_dir / "*" / "*.parquet")},
    ).fetchall()[0]
    con = duckdb.connect(
        str(elsewhere / settings.bi_database.name),
        read_only=True,
        config={"file_search_path": str(elsewhere)},
    )
    try:
        assert (
            con.execute("select count(*), count(distinct score_date) from scored_leads").fetchone()
            == expected
        )
        # The SET form docs/bi.md gives for other clients.
        con.execute(f"set file_search_path = '{elsewhere}'")
        assert con.execute("select max(score_date) from scored_leads_latest").fetchone()[0] is not None
        comment = con.execute(
            "select comment from duckdb_views() where view_name = 'scored_leads'"
        ).fetchone()
        assert comment == (bi.COMMENTS["scored_leads"],)
    finally:
        con.close()
    assert bi.SCORED_GLOB in bi.VIEWS["swap"]["scored_leads"]
    assert settings.scored_dir.relative_to(settings.data_dir).as_posix() == bi.SCORED_GLOB.split("/")[0]


@pytest.fixture
def outdated_view_file(published: Path, settings: Settings) -> Iterator[Path]:
    """Marks the view file as written by an older mlsys: the next publish rewrites it (aside,
    then renamed) - the worst case for a reader holding it."""
    marker = bi.version_marker(settings)
    marker.write_text("mlsys BI views v1: absolute paths\n")
    yield marker
    assert marker.read_text().strip().startswith(bi.BI_FILE_VERSION)


def test_a_read_only_reader_held_open_never_fails_a_night(
    outdated_view_file: Path, settings: Settings, airflow_db: dict[str, str]
) -> None:
    """docs/reliability.md: a client holding scored_leads.duckdb read-only across `mlsys score`
    (another process) and a score_leads run (dag.test, this process)."""
    from mlsys_local.demo import run_dag

    cli_date, dag_date = date(2026, 5, 28), date(2026, 5, 27)
    held = bi.connect(settings)
    try:
        before = held.execute("select count(distinct score_date) from scored_leads").fetchone()[0]
        mlsys = str(Path(sys.executable).with_name("mlsys"))
        for command in (["features", "--as-of", str(cli_date)], ["score", "--as-of", str(cli_date)]):
            done = subprocess.run([mlsys, *command], capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        assert "Conflicting lock" not in done.stderr
        # The held connection's next query sees the night the other process published.
        count = "select count(*) from scored_leads where score_date = ?"
        assert (
            held.execute(count, [cli_date]).fetchone()[0]
            == pq.read_metadata(settings.partition_dir(cli_date) / score.PART_FILE).num_rows
        )
        run_dag("score_leads", dag_date)
        assert held.execute(count, [dag_date]).fetchone()[0] > 0
        assert held.execute("select count(distinct score_date) from scored_leads").fetchone()[0] == before + 2
    finally:
        held.close()
    fresh = bi.connect(settings)
    try:
        dates = {d for (d,) in fresh.execute("select distinct score_date from scored_leads").fetchall()}
    finally:
        fresh.close()
    assert {cli_date, dag_date, AS_OF} <= dates


HOLDER = textwrap.dedent(
    """
    import sys, duckdb
    con = duckdb.connect(sys.argv[1], read_only=False, config={"file_search_path": sys.argv[2]})
    print("held", flush=True)
    for line in sys.stdin:
        print(con.execute(line).fetchall(), flush=True)
    """
)


def test_a_read_write_reader_held_open_never_fails_a_publish(
    outdated_view_file: Path, night_restored: Path, settings: Settings
) -> None:
    """DuckDB lets one process hold a file read-write: the publish neither waits for it nor
    fails, and that process's next query sees the re-published night."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(settings.bi_database), str(settings.data_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "held", holder.stderr.read() if holder.stderr else ""
        result = score.score(AS_OF, settings, run_id="rw-held")
        score.publish(AS_OF, result.staging_dir, settings)
        holder.stdin.write(f"select distinct run_id from scored_leads where score_date = '{AS_OF}'\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "[('rw-held',)]"
    finally:
        if holder.stdin:
            holder.stdin.close()
        holder.wait(30)


def test_partitions_are_written_in_whole_row_groups(tmp_path: Path) -> None:
    """docs/bi.md, "Row groups": 122,880 rows per group whatever the scoring batch size."""
    n = 2 * score.ROW_GROUP_ROWS + 1234
    ids = np.arange(n, dtype=np.int64)
    scores = np.random.default_rng(3).random(n)
    unranked = pa.table(
        {
            "lead_id": ids,
            "score": scores,
            "score_band": pa.array(["B"] * n),
            "top_reasons": pa.array([[]] * n, score.REASON_TYPE),
            "model_name": pa.array(["m"] * n),
            "model_version": pa.array(["1"] * n),
            "as_of": pa.array([AS_OF] * n, pa.date32()),
            "scored_at": pa.array([datetime(2026, 6, 1, 2)] * n, pa.timestamp("us")),
            "run_id": pa.array(["r"] * n),
        },
        schema=score.UNRANKED_SCHEMA,
    )
    pq.write_table(unranked, tmp_path / "unranked.parquet", row_group_size=50_000)
    out = tmp_path / score.PART_FILE
    score._write_ranked([tmp_path / "unranked.parquet"], out, np.sort(scores), batch_size=70_000)
    meta = pq.read_metadata(out)
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [
        score.ROW_GROUP_ROWS,
        score.ROW_GROUP_ROWS,
        1234,
    ]
    written = pq.read_table(out)
    assert written.column("lead_id").to_numpy().tolist() == ids.tolist()
    assert written.schema.names == FILE_COLUMNS


def test_a_failed_view_file_write_leaves_the_night_published(
    published: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    marker = bi.version_marker(settings)
    marker.write_text("old\n")

    def broken(path: Path, data_dir: Path, publish_mode: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bi, "_write_views", broken)
    assert bi.ensure_view_file(settings) is False
    assert "could not write the BI view file" in caplog.text
    assert not list(settings.data_dir.glob(".scored_leads.duckdb.*.tmp"))
    monkeypatch.undo()
    assert bi.ensure_view_file(settings) is True
    assert bi.ensure_view_file(settings) is False


def test_export_top_leads_writes_the_best_of_a_night(published: Path, settings: Settings) -> None:
    import csv

    from mlsys import exports

    out = exports.export_top_leads(AS_OF, settings, n=20)
    with Path(out["path"]).open() as handle:
        rows = list(csv.DictReader(handle))
    table = pq.read_table(published).to_pylist()
    best = sorted(table, key=lambda r: (-r["score"], r["lead_id"]))[:20]
    assert out["rows"] == len(rows) == 20
    assert [int(r["lead_id"]) for r in rows] == [r["lead_id"] for r in best]
    assert rows[0]["top_reasons"] == "; ".join(x["feature"] for x in best[0]["top_reasons"])
    with pytest.raises(FileNotFoundError, match="no published partition of 2020-01-01"):
        exports.export_top_leads(date(2020, 1, 1), settings)
    with pytest.raises(ValueError, match=">= 1"):
        exports.export_top_leads(AS_OF, settings, n=0)


def test_the_documented_paths_are_the_settings(settings: Settings) -> None:
    assert os.path.relpath(settings.scored_dir, settings.data_dir) == "scored_leads"
    assert settings.bi_database.parent == settings.data_dir
