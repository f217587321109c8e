"""The UCI Bank Marketing export as a second source, switched on by its env file alone.

Real dbt (sources/bank_marketing/dbt), real GX (its mlsys_gate.yml context), real MLflow
SQLite and the real DAGs through `dag.test()`, on a 1-in-3 systematic sample of the committed
export (every third row: the date order the year derivation needs is kept, and so is the
conversion rate, about 12%).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mlsys import features, pipeline, registry, validation
from mlsys.catalog import load_catalog
from mlsys.champion import Champion
from mlsys.model import member_pipelines
from mlsys.settings import REPO_ROOT, Settings
from mlsys.validation.context_files import render_context_files
from mlsys_local.demo import run_dag

pytestmark = pytest.mark.slow

SOURCE = REPO_ROOT / "sources" / "bank_marketing"
EXPORT = SOURCE / "data" / "bank-full.csv.gz"
TRAIN_AS_OF = date(2008, 9, 22)  # snapshots of May-Aug 2008; holdout the week of 23 Aug
SCORE_AS_OF = date(2008, 11, 1)  # the November 2008 call list
LEAKS = {"duration", "call_duration_seconds"}


def _source_env(home: Path) -> dict[str, str]:
    """The switch: the variables of bank_marketing.env (paths made absolute, as `mlsys source
    check` reads them), with a home of the test's own."""
    from mlsys.onboarding.sources import read_env

    return {**read_env(SOURCE), "MLSYS_HOME": str(home)}


def _land_sample(data_dir: Path, transform: object = None) -> Path:
    lines = gzip.decompress(EXPORT.read_bytes()).decode().splitlines()
    rows = lines[1::3]
    if callable(transform):
        rows = transform(rows)
    folder = data_dir / "raw" / "bank_marketing"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bank-sample.csv"
    path.write_text("\n".join([lines[0], *rows]) + "\n")
    return path


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory, airflow_db: dict[str, str]) -> Iterator[Settings]:
    """The bank source switched on in a home of its own, with the sample landed."""
    home = tmp_path_factory.mktemp("bank-home")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("MLSYS_DATA_DIR", "MLSYS_WAREHOUSE", "MLFLOW_TRACKING_URI"):
            mp.delenv(name, raising=False)
        for name, value in _source_env(home).items():
            mp.setenv(name, value)
        settings = Settings.from_env()
        _land_sample(settings.data_dir)
        yield settings


@pytest.fixture(scope="module")
def bank_published(bank: Settings) -> Path:
    """retrain (forced) then score_leads through Airflow, on the bank source."""
    run_dag("retrain", date(2025, 3, 2), {"force": True, "as_of": TRAIN_AS_OF.isoformat()})
    run_dag("score_leads", date(2025, 3, 3), {"as_of": SCORE_AS_OF.isoformat()})
    return bank.partition_dir(SCORE_AS_OF)


def test_the_switch_is_configuration_only(bank: Settings) -> None:
    assert bank.dbt_project_dir == SOURCE / "dbt"
    assert bank.model_name == "bank_marketing" != Settings.__dataclass_fields__["model_name"].default
    assert validation.raw_suites(bank, training=True) == ("raw_bank_contacts",)
    # The committed GX files are exactly what mlsys_gate.yml renders to.
    root = SOURCE / "great_expectations"
    spec = validation.load_gate_spec(root)
    for relative, text in render_context_files(spec).items():
        assert (root / relative).read_text() == text, f"{relative}: run write-context --root {root}"


def test_duration_is_never_a_feature(bank: Settings) -> None:
    for mart in ("training_snapshots", "lead_features"):
        catalog = load_catalog(mart, bank)
        assert not LEAKS & set(catalog.columns)
        assert (
            "contacts_before_this_campaign" in catalog.numeric and "previous_outcome" in catalog.categorical
        )
    manifest = json.loads((bank.dbt_target_dir / "manifest.json").read_text())
    staging = next(n for n in manifest["nodes"].values() if n["name"] == "stg_bank_contacts")
    assert "leaks the outcome" in staging["columns"]["call_duration_seconds"]["description"].lower()


def test_contacts_are_dated_from_the_row_order(bank: Settings) -> None:
    built = features.build(date(2011, 1, 1), bank, selector="stg_bank_contacts")
    assert built.model_rows["stg_bank_contacts"] == len(
        gzip.decompress(EXPORT.read_bytes()).splitlines()[1::3]
    )
    query = (
        "select min(contact_date), max(contact_date), count(*) filter (where contact_date < prev) "
        "from (select contact_date, lag(contact_date) over (order by contact_id) as prev "
        "from stg_bank_contacts)"
    )
    with duckdb.connect(str(bank.warehouse), read_only=True) as con:
        first, last, backwards = con.execute(query).fetchall()[0]
    assert (first.year, last.year, backwards) == (2008, 2010, 0)


def test_bank_flow_gate_retrain_score(
    bank_published: Path, bank: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlflow

    from mlsys import cli

    champion = registry.alias_version(bank, registry.CHAMPION)
    assert champion is not None
    run = registry.client(bank).get_run(champion.run_id)
    params = run.data.params
    assert params["model.estimator"] == "hgb"  # MLSYS_ESTIMATOR of the env file
    assert params["split"] == "random"  # MLSYS_SPLIT of the env file
    assert params["model.calibration"] == "auto"  # MLSYS_CALIBRATION of the env file
    assert params["calibration_method"] in {"isotonic", "sigmoid"}
    # MLSYS_CALIBRATION_FOLDS of the env file: the published champion averages 5 cross-fitted
    # members, and the nightly partition came through the one-transform split scoring.
    assert params["model.calibration_folds"] == "5"
    loaded = registry.load_version(bank, str(champion.version))
    assert len(member_pipelines(loaded.model)) == 5
    assert Champion(loaded).split_scoring
    assert params["smote_applied"] == "True" and float(params["imbalance_ratio"]) > 2
    assert 0.0 <= run.data.metrics["roc_auc"] <= 1.0
    info = mlflow.models.get_model_info(f"models:/{bank.model_name}/{champion.version}")
    inputs = set(info.signature.inputs.input_names())
    assert inputs == set(load_catalog("training_snapshots", bank).columns)
    assert not LEAKS & inputs
    # Gradient-boosted trees get importances too: the mean absolute path attribution.
    local = mlflow.artifacts.download_artifacts(
        run_id=champion.run_id, artifact_path="feature_importances.csv", tracking_uri=bank.mlflow_tracking_uri
    )
    importances = pd.read_csv(local)
    assert set(importances["feature"]) == inputs
    assert (importances["mean_abs_logit_contribution"] > 0).any()

    table = pq.read_table(bank_published)
    expected = pq.read_table(bank.lead_features_path(SCORE_AS_OF), columns=["lead_id"]).num_rows
    ids = table.column("lead_id").to_pylist()
    assert len(ids) == len(set(ids)) == expected > 0
    assert set(table.column("model_name").to_pylist()) == {"bank_marketing"}
    scores = table.column("score").to_numpy()
    assert ((scores >= 0) & (scores <= 1)).all()
    assert str(bank_published).startswith(str(bank.data_dir))  # its own scored table

    # What `make bank-demo` prints last: the champion and its holdout metrics.
    capsys.readouterr()
    assert cli.main(["champion"]) == 0
    line = capsys.readouterr().out
    roc_auc = run.data.metrics["roc_auc"]
    assert f"bank_marketing v{champion.version} (champion): holdout ROC AUC {roc_auc:.3f}" in line
    assert f"trained as of {TRAIN_AS_OF.isoformat()}" in line


def test_a_bad_bank_file_is_stopped_by_the_gate(bank: Settings, tmp_path: Path) -> None:
    import dataclasses

    def corrupt(rows: list[str]) -> list[str]:
        out = list(rows)
        out[10] = out[10].replace(";may;", ";mai;")  # a month the date derivation cannot read
        out[20] = out[20].rsplit(";", 1)[0] + ";maybe"  # an outcome that is not yes/no
        return out

    bad = dataclasses.replace(bank, data_dir=tmp_path / "data")
    _land_sample(bad.data_dir, corrupt)
    with pytest.raises(validation.DataValidationError) as excinfo:
        pipeline.gate_raw(TRAIN_AS_OF, bad, training=True)
    message = str(excinfo.value)
    assert "raw_bank_contacts" in message and "FAILED" in message
    assert "y: VARCHAR (expected BOOLEAN)" in message

    def wrong_month(rows: list[str]) -> list[str]:
        return [rows[0].replace(";may;", ";mai;"), *rows[1:]]

    _land_sample(bad.data_dir, wrong_month)
    with pytest.raises(validation.DataValidationError) as excinfo:
        pipeline.gate_raw(TRAIN_AS_OF, bad, training=True)
    failures = {(f.expectation, f.column) for f in excinfo.value.report.failures}
    assert ("expect_column_values_to_be_in_set", "month") in failures
