"""A CRM keyed by text ids: lead_id keeps the CRM's VARCHAR from the export to the scored table.

The test source in tests/fixtures/text_ids (a dbt project, a GX gate, an env file) receives a
generated export of 3,000 leads, most keyed by UUIDs and some by 18-character Salesforce-style
ids; real dbt, GX, MLflow and the real DAGs through `dag.test()` (retrain, then score_leads),
then one lead scored on demand by its text id.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlsys import registry, score, validation
from mlsys.cli import main
from mlsys.on_demand import RequestError, score_leads
from mlsys.settings import REPO_ROOT, Settings
from mlsys.validation.context_files import render_context_files
from mlsys_local.demo import run_dag

pytestmark = pytest.mark.slow

SOURCE = REPO_ROOT / "tests" / "fixtures" / "text_ids"
TRAIN_AS_OF = date(2025, 6, 1)
SCORE_AS_OF = date(2025, 6, 15)
N_LEADS = 3000
_ALPHANUMERIC = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))


def _source_env(home: Path) -> dict[str, str]:
    """The switch: the variables of text_ids.env (paths relative to the repo, where this
    fixture source lives outside sources/), with a home of the test's own."""
    from mlsys.onboarding.sources import read_env

    return {**read_env(SOURCE, root=REPO_ROOT), "MLSYS_HOME": str(home)}


def _export(seed: int = 11) -> str:
    """A CSV export: leads arriving over 2025 H1, converting more often with more pages viewed
    and from referrals; one in five keyed by an 18-character Salesforce-style id."""
    rng = np.random.default_rng(seed)
    start = datetime(2025, 1, 1)
    lines = ["lead_key,created_at,channel,pages_viewed,company_size,converted_at"]
    channels = np.array(["web", "referral", "event", "ads"])
    for i in range(N_LEADS):
        if i % 5 == 0:
            key = "00Q" + "".join(rng.choice(_ALPHANUMERIC, 15))
        else:
            key = str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | i, version=4))
        created = start + timedelta(minutes=int(rng.integers(0, 180 * 24 * 60)))
        channel = str(rng.choice(channels, p=[0.5, 0.15, 0.1, 0.25]))
        pages = int(rng.poisson(4))
        size = "" if rng.random() < 0.1 else str(int(rng.lognormal(4, 1.2)) + 1)
        logit = -3.2 + 0.35 * pages + (1.2 if channel == "referral" else 0.0)
        converted = ""
        if rng.random() < 1 / (1 + np.exp(-logit)):
            converted = (created + timedelta(hours=int(rng.integers(24, 40 * 24)))).isoformat(sep=" ")
        lines.append(f"{key},{created.isoformat(sep=' ')},{channel},{pages},{size},{converted}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def text_ids(tmp_path_factory: pytest.TempPathFactory, airflow_db: dict[str, str]) -> Iterator[Settings]:
    home = tmp_path_factory.mktemp("text-ids-home")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("MLSYS_DATA_DIR", "MLSYS_WAREHOUSE", "MLFLOW_TRACKING_URI"):
            mp.delenv(name, raising=False)
        for name, value in _source_env(home).items():
            mp.setenv(name, value)
        settings = Settings.from_env()
        folder = settings.data_dir / "raw" / "web_leads"
        folder.mkdir(parents=True)
        (folder / "export.csv").write_text(_export())
        yield settings


@pytest.fixture(scope="module")
def text_ids_published(text_ids: Settings) -> Path:
    """retrain (forced) then score_leads through Airflow, on the text-id source."""
    run_dag("retrain", date(2025, 7, 6), {"force": True, "as_of": TRAIN_AS_OF.isoformat()})
    run_dag("score_leads", date(2025, 7, 7), {"as_of": SCORE_AS_OF.isoformat()})
    return text_ids.partition_dir(SCORE_AS_OF)


def test_the_committed_gate_is_what_its_yaml_renders(text_ids: Settings) -> None:
    root = SOURCE / "great_expectations"
    spec = validation.load_gate_spec(root)
    assert spec.suites["lead_features"].columns["lead_id"] == ("VARCHAR",)
    for relative, text in render_context_files(spec).items():
        assert (root / relative).read_text() == text, f"{relative}: run write-context --root {root}"


def test_text_ids_run_the_whole_path(
    text_ids_published: Path, text_ids: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    # Training: the snapshots are keyed by text and the champion was registered.
    snapshots = pq.read_table(text_ids.training_snapshots_path(TRAIN_AS_OF), columns=["lead_id", "label"])
    assert snapshots.schema.field("lead_id").type == pa.string()
    assert 0 < pc_sum(snapshots.column("label")) < snapshots.num_rows
    assert registry.alias_version(text_ids, registry.CHAMPION) is not None

    # The scored table: lead_id is VARCHAR, every lead of the features once, ids as the CRM has them.
    table = pq.read_table(text_ids_published)
    assert table.schema.field("lead_id").type == pa.string()
    assert table.schema.field("lead_id").metadata == score.SCORED_SCHEMA.field("lead_id").metadata
    assert table.schema.names == score.SCORED_SCHEMA.names
    features = pq.read_table(text_ids.lead_features_path(SCORE_AS_OF), columns=["lead_id"])
    ids = table.column("lead_id").to_pylist()
    assert sorted(ids) == sorted(features.column("lead_id").to_pylist())
    assert len(set(ids)) == len(ids) > 100
    assert {len(i) for i in ids} == {18, 36}  # Salesforce-style ids and UUIDs
    percentiles = table.column("score_percentile").to_numpy()
    assert percentiles.max() == 100.0 and percentiles.min() > 0

    # Sharded scoring of text ids gives the same partition rows as one shard.
    sharded = score.score(SCORE_AS_OF, text_ids, run_id="sharded", n_shards=3)
    single = pq.read_table(sharded.staging_dir / score.PART_FILE).sort_by("lead_id")
    assert single.column("lead_id").to_pylist() == table.sort_by("lead_id").column("lead_id").to_pylist()
    assert np.allclose(single.column("score").to_numpy(), table.sort_by("lead_id").column("score").to_numpy())

    # On demand, by the text id; an integer id is refused with the reason.
    lead = ids[0]
    [answer] = score_leads({"leads": [{"lead_id": lead}], "as_of": SCORE_AS_OF.isoformat()}, text_ids)
    assert answer["lead_id"] == lead
    published = table.filter(pa.compute.equal(table.column("lead_id"), lead)).column("score")[0].as_py()
    assert answer["score"] == pytest.approx(published)
    [uncached] = score_leads(
        {"leads": [{"lead_id": lead}], "as_of": SCORE_AS_OF.isoformat()}, text_ids, cache_features=False
    )
    assert uncached["score"] == answer["score"]
    with pytest.raises(RequestError, match="lead ids are text"):
        score_leads({"leads": [{"lead_id": 42}], "as_of": SCORE_AS_OF.isoformat()}, text_ids)
    # The command line takes the text id as it is.
    assert main(["score", "--as-of", SCORE_AS_OF.isoformat(), "--lead-id", lead]) == 0
    [printed] = json.loads(capsys.readouterr().out)
    assert printed["lead_id"] == lead and printed["score"] == pytest.approx(published)


def pc_sum(column: pa.ChunkedArray) -> int:
    return int(pa.compute.sum(column).as_py())


def test_bi_views_drift_and_realized_performance_join_on_text_ids(
    text_ids_published: Path, text_ids: Settings
) -> None:
    from mlsys import bi, drift, features

    lead = pq.read_table(text_ids_published, columns=["lead_id"]).column("lead_id")[0].as_py()
    con = bi.connect(text_ids)
    try:
        rows = con.execute(
            "select score_date, lead_id from scored_leads where lead_id = ?", [lead]
        ).fetchall()
        column_type = con.execute(
            "select data_type from information_schema.columns "
            "where table_name = 'scored_leads' and column_name = 'lead_id'"
        ).fetchone()
    finally:
        con.close()
    assert rows == [(SCORE_AS_OF, lead)] and column_type == ("VARCHAR",)

    report = drift.drift_report(SCORE_AS_OF, text_ids)
    assert set(report.psi) >= {"pages_viewed", "channel"}

    # A month later the night's outcomes are known: the conversions mart as of then, joined to
    # the partition on the text ids, gives its realized ROC AUC.
    later = SCORE_AS_OF + timedelta(days=text_ids.horizon_days + 5)
    features.build(later, text_ids, selector="+conversions")
    realized, reason = drift.realized_performance_or_reason(later, text_ids)
    assert realized is not None, reason
    assert realized.score_date == SCORE_AS_OF
    assert realized.rows == pq.read_table(text_ids_published).num_rows
    assert 0 < realized.positive_rate < 1 and 0.5 < realized.roc_auc <= 1.0
