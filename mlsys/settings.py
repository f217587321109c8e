"""One settings object for the whole package, read from ``MLSYS_*`` environment variables.

Defaults are the embedded (laptop) setup: everything under ``$MLSYS_HOME``
(default ``./var``): ``data/`` (raw landing, features, scored table), ``warehouse.duckdb``,
``mlflow.db`` + ``mlartifacts/``, dbt's ``target/``.
Paths are resolved against the current working directory at the time ``Settings.from_env``
runs, so the same code works from a clone, from a test's temporary folder and in Docker.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


@dataclass(frozen=True)
class Settings:
    """Where things live and the knobs of the pipeline."""

    home: Path
    data_dir: Path
    warehouse: Path
    mlflow_tracking_uri: str
    mlflow_artifact_root: Path
    dbt_project_dir: Path
    gx_context_dir: Path
    model_name: str = "lead_scoring"
    # The classifier a retrain uses unless told otherwise (DAG param, CLI --estimator).
    estimator: str = "logreg"
    # How training splits the snapshots (mlsys.train.load_splits): "time" (the latest snapshot
    # is the holdout, the one before calibrates) or "random" (stratified; one row per lead).
    training_split: str = "time"
    # How the model's output is calibrated into the published probability (ModelConfig
    # calibration): "isotonic", "sigmoid", or "auto" (whichever has the lower cross-validated
    # log-loss on the calibration data, per model).
    calibration: str = "isotonic"
    # 0: calibrate on the split's calibration rows. k >= 2: cross-fitted calibration, k models
    # each calibrated on the fold it did not fit, averaged (ModelConfig.calibration_folds).
    calibration_folds: int = 0
    experiment_name: str = "lead_scoring"
    # Parts the scoring build splits the leads into for de-duplicating activities (dbt var
    # activity_partitions); 0: from the landed row count (mlsys.features.activity_partitions).
    activity_partitions: int = 0
    horizon_days: int = 30
    snapshot_weeks: int = 12
    score_batch_size: int = 100_000
    score_shards: int = 1
    statsd_host: str = "127.0.0.1"
    statsd_port: int = 8125
    statsd_prefix: str = "mlsys"
    promotion_margin: float = 0.005
    max_calibration_error: float = 0.05
    row_drop_max_share: float = 0.5
    # Where the realized-performance check reads the outcomes (lead_id, converted_at): a glob
    # under data_dir. A source without a raw conversions table points it at a mart it exports.
    conversions_glob: str = "raw/conversions/*.parquet"
    # On-demand scoring (mlsys/on_demand.py): leads per request, and how often a running
    # scorer looks for a moved champion alias or changed feature SQL.
    on_demand_max_leads: int = 100
    on_demand_refresh_seconds: float = 5.0
    # Airflow's own notifications (mlsys/notify.py): the chat incoming-webhook URL they are
    # posted to (empty: off), and how long after it is queued a score_leads run should be done
    # (its Deadline Alert; the run's hard limit, dagrun_timeout, is 2 h).
    alert_webhook_url: str = ""
    nightly_deadline_minutes: float = 60.0
    extra: dict[str, str] = field(default_factory=dict)

    # Derived locations. Everything a reader needs is a Parquet path under data_dir.
    @property
    def dbt_target_dir(self) -> Path:
        """dbt's target/ (manifest, run_results.json) kept per home, not in the repo."""
        return self.home / "dbt" / "target"

    @property
    def dbt_log_dir(self) -> Path:
        return self.home / "dbt" / "logs"

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "raw"

    @property
    def features_dir(self) -> Path:
        return self.data_dir / "features"

    @property
    def scored_dir(self) -> Path:
        return self.data_dir / "scored_leads"

    @property
    def conversions_files(self) -> Path:
        """The Parquet file(s) of conversions, as a glob (DuckDB expands it)."""
        return self.data_dir / self.conversions_glob

    @property
    def staging_dir(self) -> Path:
        """Scratch space on the same file system as the scored table (renames stay atomic)."""
        return self.data_dir / ".staging"

    @property
    def gx_runtime_dir(self) -> Path:
        """What the gate writes while it runs: validation results, Data Docs, row-count state
        of previous runs, DuckDB spill files. Never in the repo's GX context folder."""
        return self.data_dir / "gx"

    @property
    def bi_database(self) -> Path:
        return self.data_dir / "scored_leads.duckdb"

    def lead_features_path(self, as_of: date) -> Path:
        return self.mart_path("lead_features", as_of)

    def training_snapshots_path(self, as_of: date) -> Path:
        return self.mart_path("training_snapshots", as_of)

    def mart_path(self, mart: str, as_of: date, *, staged: bool = False) -> Path:
        """A mart's file for ``as_of``; ``staged``: where a build puts it until its gate passes
        (dbt var ``stage_features``, macro ``feature_location``)."""
        folder = self.features_dir / ".staging" if staged else self.features_dir
        return folder / mart / f"{as_of.isoformat()}.parquet"

    def mart_path_to_gate(self, mart: str, as_of: date) -> Path:
        """What the gate validates: a staged build waiting for it, else the file in place."""
        staged = self.mart_path(mart, as_of, staged=True)
        return staged if staged.exists() else self.mart_path(mart, as_of)

    def partition_dir(self, score_date: date) -> Path:
        return self.scored_dir / f"score_date={score_date.isoformat()}"

    @classmethod
    def from_env(cls) -> Settings:
        var_dir = Path(_env("MLSYS_HOME", "var")).resolve()
        data_dir = Path(_env("MLSYS_DATA_DIR", str(var_dir / "data"))).resolve()
        warehouse = Path(_env("MLSYS_WAREHOUSE", str(var_dir / "warehouse.duckdb"))).resolve()
        artifact_root = Path(_env("MLSYS_MLFLOW_ARTIFACTS", str(var_dir / "mlartifacts"))).resolve()
        tracking_uri = _env("MLFLOW_TRACKING_URI", f"sqlite:///{var_dir / 'mlflow.db'}")
        return cls(
            home=var_dir,
            data_dir=data_dir,
            warehouse=warehouse,
            mlflow_tracking_uri=tracking_uri,
            mlflow_artifact_root=artifact_root,
            dbt_project_dir=Path(_env("MLSYS_DBT_PROJECT_DIR", str(REPO_ROOT / "sql"))).resolve(),
            gx_context_dir=Path(
                _env("MLSYS_GX_CONTEXT_DIR", str(REPO_ROOT / "great_expectations"))
            ).resolve(),
            model_name=_env("MLSYS_MODEL_NAME", "lead_scoring"),
            estimator=_env("MLSYS_ESTIMATOR", "logreg"),
            training_split=_env("MLSYS_SPLIT", "time"),
            calibration=_env("MLSYS_CALIBRATION", "isotonic"),
            calibration_folds=_env_int("MLSYS_CALIBRATION_FOLDS", 0),
            experiment_name=_env("MLSYS_EXPERIMENT", "lead_scoring"),
            activity_partitions=_env_int("MLSYS_ACTIVITY_PARTITIONS", 0),
            horizon_days=_env_int("MLSYS_HORIZON_DAYS", 30),
            snapshot_weeks=_env_int("MLSYS_SNAPSHOT_WEEKS", 12),
            score_batch_size=_env_int("MLSYS_SCORE_BATCH_SIZE", 100_000),
            score_shards=_env_int("MLSYS_SCORE_SHARDS", 1),
            statsd_host=_env("MLSYS_STATSD_HOST", "127.0.0.1"),
            statsd_port=_env_int("MLSYS_STATSD_PORT", 8125),
            statsd_prefix=_env("MLSYS_STATSD_PREFIX", "mlsys"),
            promotion_margin=_env_float("MLSYS_PROMOTION_MARGIN", 0.005),
            max_calibration_error=_env_float("MLSYS_MAX_ECE", 0.05),
            row_drop_max_share=_env_float("MLSYS_ROW_DROP_MAX_SHARE", 0.5),
            conversions_glob=_env("MLSYS_CONVERSIONS", "raw/conversions/*.parquet"),
            on_demand_max_leads=_env_int("MLSYS_ON_DEMAND_MAX_LEADS", 100),
            on_demand_refresh_seconds=_env_float("MLSYS_ON_DEMAND_REFRESH_SECONDS", 5.0),
            alert_webhook_url=_env("MLSYS_ALERT_WEBHOOK_URL", ""),
            nightly_deadline_minutes=_env_float("MLSYS_NIGHTLY_DEADLINE_MINUTES", 60.0),
        )
