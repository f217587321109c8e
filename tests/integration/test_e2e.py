"""The whole flow through Airflow itself (`dag.test()`), on a small generated CRM:
retrain -> score_leads -> the published partition, then the gate stopping a bad run, which
posts exactly one notification to a webhook (mlsys/notify.py) while a good run posts none."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from mlsys import bi, pipeline, registry
from mlsys.settings import Settings
from mlsys.validation import DataValidationError
from mlsys_local.demo import run_dag
from tests.live import WebhookReceiver

pytestmark = pytest.mark.slow
AS_OF = date(2026, 6, 1)


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_champion_registered(published: Path, settings: Settings) -> None:
    champion = registry.alias_version(settings, registry.CHAMPION)
    challenger = registry.alias_version(settings, registry.CHALLENGER)
    assert champion is not None and challenger is not None
    # The forced retrain's model is both; a later retrain's challenger (test_retrain) is newer.
    assert int(challenger.version) >= int(champion.version)
    run = registry.client(settings).get_run(champion.run_id)
    assert run.data.metrics["roc_auc"] > 0.7
    assert run.data.params["smote_applied"] == "True"
    assert "n_activities_7d" in run.data.params["features_numeric"]


def test_partition_holds_every_lead_once(published: Path, settings: Settings) -> None:
    files = list(published.glob("*.parquet"))
    assert files, f"no parquet in {published}"
    table = pq.read_table(published)
    known = duckdb.sql(
        f"select count(*) from read_parquet('{settings.raw_dir}/leads/*.parquet') "
        f"where created_at < date '{AS_OF}'"
    ).fetchall()[0][0]
    ids = table.column("lead_id").to_pylist()
    assert len(ids) == len(set(ids)) == known
    scores = table.column("score").to_numpy()
    assert ((scores >= 0) & (scores <= 1)).all()
    champion = registry.alias_version(settings, registry.CHAMPION)
    assert set(table.column("model_version").to_pylist()) == {str(champion.version)}
    assert set(table.column("model_name").to_pylist()) == {settings.model_name}
    assert set(table.column("as_of").to_pylist()) == {AS_OF}
    assert set(table.column("score_band").to_pylist()) <= {"A", "B", "C", "D"}
    run_ids = set(table.column("run_id").to_pylist())
    assert len(run_ids) == 1 and next(iter(run_ids)).startswith("manual__")


def test_partition_matches_the_contract(published: Path) -> None:
    schema = pq.read_schema(next(published.glob("*.parquet")))
    assert schema.names == [
        "lead_id",
        "score",
        "score_band",
        "score_percentile",
        "top_reasons",
        "model_name",
        "model_version",
        "as_of",
        "scored_at",
        "run_id",
    ]
    assert str(schema.field("top_reasons").type) == (
        "list<element: struct<feature: string, contribution: double>>"
    )
    assert schema.field("score").metadata[b"description"].startswith(b"Calibrated probability")


def test_bi_views(published: Path, settings: Settings) -> None:
    # Closed at the end: a connection left open would pin this file's configuration for
    # every later connection of the process (docs/bi.md's snippet opens it its own way).
    with bi.connect(settings) as con:  # file_search_path = the data folder (docs/bi.md)
        (latest_date,) = con.execute("select max(score_date) from scored_leads_latest").fetchone()
        top = con.execute(
            "select top_reasons from scored_leads_latest order by score desc limit 5"
        ).fetchall()
        (hi,) = con.execute("select max(score_percentile) from scored_leads_latest").fetchone()
    assert latest_date == AS_OF
    assert all(reasons for (reasons,) in top), "the best leads should have reasons"
    assert hi == pytest.approx(100.0)


def test_rerun_replaces_the_partition(published: Path) -> None:
    before = pq.read_table(published).sort_by("lead_id")
    run_dag("score_leads", AS_OF)
    after = pq.read_table(published).sort_by("lead_id")
    assert len(list(published.iterdir())) == 1
    assert after.column("lead_id").equals(before.column("lead_id"))
    assert after.column("score").equals(before.column("score"))
    assert after.column("run_id")[0].as_py() != before.column("run_id")[0].as_py()


def test_gate_stops_bad_data_and_keeps_the_partition(
    published: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _digest(published)
    bad = settings.raw_dir / "leads" / "zz_bad.parquet"
    duckdb.sql(
        f"""
        copy (
            select 10000000 + lead_id as lead_id, created_at, 'carrier_pigeon' as source, industry,
                   country, company_size, job_level
            from read_parquet('{settings.raw_dir}/leads/leads.parquet') limit 50
        ) to '{bad}' (format parquet)
        """
    )
    with WebhookReceiver() as hook:
        monkeypatch.setenv("MLSYS_ALERT_WEBHOOK_URL", hook.url)
        try:
            run = run_dag("score_leads", AS_OF, check=False)
            # The gate's own verdict on the same data, for the reason the notification names.
            with pytest.raises(DataValidationError) as gate:
                pipeline.gate_raw(AS_OF, Settings.from_env())
        finally:
            bad.unlink()
        posts = hook.received()
    assert str(run.state).endswith("failed")
    assert _digest(published) == before
    # Someone is told, once (the tasks after the gate never ran: no notification of theirs).
    reason = str(gate.value).splitlines()[0]
    assert reason.startswith("GX suite 'raw_leads': FAILED")
    assert len(posts) == 1, posts
    fields = posts[0]["mlsys"]
    assert {k: fields[k] for k in ("event", "dag_id", "task_id", "run_id", "reason")} == {
        "event": "task_failed",
        "dag_id": "score_leads",
        "task_id": "validate_raw",
        "run_id": run.run_id,
        "reason": reason,
    }
    assert posts[0]["text"].startswith(
        f"[mlsys] score_leads task validate_raw FAILED (run {run.run_id}): {reason}"
    )


def test_on_demand_dag_scores_known_leads(
    published: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlsys import on_demand

    lead_ids = pq.read_table(published, columns=["lead_id"]).column("lead_id").to_pylist()[:3]
    run = run_dag("score_on_demand", AS_OF, {"leads": [{"lead_id": i} for i in lead_ids]})
    assert str(run.state).endswith("success")
    direct = on_demand.score_leads({"leads": [{"lead_id": i} for i in lead_ids]}, settings)
    nightly = {
        r["lead_id"]: r["score"] for r in pq.read_table(published).to_pylist() if r["lead_id"] in lead_ids
    }
    for item in direct:
        assert item["score"] == pytest.approx(nightly[item["lead_id"]])
    # A bad request fails its task by design (the caller reads the error): nobody is notified.
    with WebhookReceiver() as hook:
        monkeypatch.setenv("MLSYS_ALERT_WEBHOOK_URL", hook.url)
        with pytest.raises(RuntimeError):
            run_dag("score_on_demand", AS_OF, {"leads": [{"lead_id": "1; drop table x"}]})
        assert hook.received() == []


def test_a_past_logical_date_gets_its_own_correct_partition(
    published: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a backfill run does: the logical date is the feature cut-off of its partition. A
    successful run notifies nobody."""
    past = date(2026, 5, 25)
    with WebhookReceiver() as hook:
        monkeypatch.setenv("MLSYS_ALERT_WEBHOOK_URL", hook.url)
        run_dag("score_leads", past)
        assert hook.received() == []
    table = pq.read_table(settings.partition_dir(past))
    known = duckdb.sql(
        f"select count(*) from read_parquet('{settings.raw_dir}/leads/*.parquet') "
        f"where created_at < date '{past}'"
    ).fetchall()[0][0]
    assert table.num_rows == known < pq.read_metadata(next(published.glob("*.parquet"))).num_rows
    assert set(table.column("as_of").to_pylist()) == {past}
    with bi.connect(settings) as con:  # file_search_path = the data folder (docs/bi.md)
        dates = [
            d for (d,) in con.execute("select distinct score_date from scored_leads order by 1").fetchall()
        ]
        latest = con.execute("select max(score_date) from scored_leads_latest").fetchone()
    assert past in dates and AS_OF in dates
    assert latest == (max(dates),)
