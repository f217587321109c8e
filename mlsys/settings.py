"""One settings object for the whole package, read from ``MLSYS_*`` environment variables.

Defaults are the embedded (laptop) setup: everything under ``$MLSYS_HOME``
(default ``./var``): ``data/`` (raw landing, features, scored table), ``warehouse.duckdb``,
``mlflow.db`` + ``mlartifacts/``, dbt's ``target/``.
Paths are resolved against the current working directory at the time ``Settings.from_env``
runs, so the same code works from a clone, from a test's temporary folder and in Docker.

A process without ``MLSYS_HOME`` that runs under an Airflow home written by mlsys (an
``airflow`` CLI command after ``export AIRFLOW_HOME=$PWD/var/airflow``) takes the settings
recorded in that home's ``airflow.cfg`` (section ``[mlsys]``, written by
``mlsys_local.airflow_env`` from the environment of ``make demo`` / ``make airflow``); a variable
set in its own environment still wins. The environment stays the one place each setting is
given: the section is a copy of it for the processes that did not inherit it.
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The largest POST /mlsys/score body read by default (MLSYS_ON_DEMAND_MAX_BODY_BYTES): 100
# leads with their activities fit in well under 1 MiB.
DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024
# The section of airflow.cfg that records the settings of the home (see the module doc).
AIRFLOW_CFG_SECTION = "mlsys"
# The engines that build the features and score (MLSYS_ENGINE, docs/spark.md).
ENGINES = ("duckdb", "spark")
# How a night is published into the scored table (MLSYS_PUBLISH_MODE, mlsys.scored_table):
# an atomic folder swap, or versions behind commit markers on storage without atomic rename.
PUBLISH_MODES = ("swap", "pointer")
# The Data Docs site of every GX context mlsys writes (great_expectations.yml).
GX_DATA_DOCS_SITE = "local_site"


def airflow_cfg_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """The airflow.cfg Airflow reads in this environment, or None without an Airflow home."""
    environ = os.environ if environ is None else environ
    explicit = environ.get("AIRFLOW_CONFIG", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    home = environ.get("AIRFLOW_HOME", "").strip()
    return Path(home).expanduser() / "airflow.cfg" if home else None


def recorded_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``[mlsys]`` settings recorded in the Airflow home's airflow.cfg, as environment
    variables; empty when ``MLSYS_HOME`` is set (the environment is then the whole truth) or
    there is no such section."""
    environ = os.environ if environ is None else environ
    if environ.get("MLSYS_HOME", "").strip():
        return {}
    path = airflow_cfg_path(environ)
    if path is None or not path.is_file():
        return {}
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path)
    except configparser.Error:
        return {}
    if not parser.has_section(AIRFLOW_CFG_SECTION):
        return {}
    return {key.upper(): value for key, value in parser.items(AIRFLOW_CFG_SECTION) if value.strip()}


def _env(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip()
    return value or default


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
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
    # Parts a full refresh of stg_activities splits the leads into for de-duplicating (dbt var
    # activity_partitions); 0: from the landed row count (mlsys.features.activity_partitions).
    activity_partitions: int = 0
    # Snapshot dates one dbt run adds to the kept training snapshots (dbt var
    # new_snapshots_per_build); 0: from the landed lead count (mlsys.features.snapshots_per_build).
    snapshots_per_build: int = 0
    # Rows of the training split the fit reads at most (mlsys.train.load_splits); beyond it the
    # negatives are sampled first, weighted back in the fit.
    max_train_rows: int = 400_000
    # The engine that builds the features and scores (docs/spark.md): "duckdb" (one machine)
    # or "spark" (dbt-spark and a Spark job; the dbt target defaults to the profile's spark).
    engine: str = "duckdb"
    # The Spark master the spark engine runs on: local[N] in one process, spark://host:7077.
    spark_master: str = "local[2]"
    # A Spark Connect server (sc://host:15002): the engine's work is sent there, and the
    # process running mlsys is a thin client (no JVM); empty: Spark runs on spark_master.
    spark_remote: str = ""
    # How publish makes a night visible (mlsys.scored_table): "swap" (a local or POSIX
    # volume) or "pointer" (object storage mounts, NFS: no rename, commit markers).
    publish_mode: str = "swap"
    # The dbt profile's target (profiles.yml: dev on a laptop, prod in the compose stack).
    dbt_target: str = "dev"
    horizon_days: int = 30
    snapshot_weeks: int = 12
    score_batch_size: int = 100_000
    score_shards: int = 1
    # Threads one score shard scores its batches on (`scoring_threads`); 0: one per CPU the
    # process may run on, counted where it scores (a worker's CPUs, not the launcher's).
    score_threads: int = 0
    statsd_host: str = "127.0.0.1"
    statsd_port: int = 8125
    statsd_prefix: str = "mlsys"
    promotion_margin: float = 0.005
    max_calibration_error: float = 0.05
    row_drop_max_share: float = 0.5
    # Where the realized-performance check reads the outcomes (lead_id, converted_at): a glob
    # under data_dir. A source without a raw conversions table points it at a mart it exports.
    conversions_glob: str = "raw/conversions/*.parquet"
    # On-demand scoring (mlsys/on_demand/): leads per request, and how often a running
    # scorer looks for a moved champion alias or changed feature SQL.
    on_demand_max_leads: int = 100
    on_demand_refresh_seconds: float = 5.0
    # The largest POST /mlsys/score body read (413 beyond).
    on_demand_max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
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
    def spark_warehouse_dir(self) -> Path:
        """The spark engine's catalog and tables (dbt-spark's intermediate models, its Derby
        metastore), per home like the DuckDB warehouse file."""
        return self.home / "spark-warehouse"

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
    def gx_data_docs_dir(self) -> Path:
        """The Data Docs site the gate's checkpoints update."""
        return self.gx_runtime_dir / "data_docs" / GX_DATA_DOCS_SITE

    @property
    def dbt_docs_dir(self) -> Path:
        """Where `dbt docs generate` goes: beside dbt's target/, not in it, so the pipeline's
        manifest (the feature catalogue's source) is never rewritten by the docs."""
        return self.home / "dbt" / "docs"

    @property
    def landing_manifest(self) -> Path:
        """Optional, written by whoever lands the export: ``{"complete_as_of": "YYYY-MM-DD"}``,
        the latest cut-off the landed data is complete for (the generator writes its end date)."""
        return self.raw_dir / "landing.json"

    def landing_complete_as_of(self) -> date | None:
        """The landing manifest's ``complete_as_of``; None without a manifest."""
        import json

        try:
            manifest = json.loads(self.landing_manifest.read_text())
            return date.fromisoformat(str(manifest["complete_as_of"]))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"{self.landing_manifest} must be a JSON object with complete_as_of = YYYY-MM-DD: {exc}"
            ) from exc

    def default_as_of(self, today: date | None = None) -> date:
        """The cut-off of a run given no date (a manual trigger without a logical date or
        ``as_of``, the CLI without ``--as-of``): today (UTC), or the landing's
        ``complete_as_of`` when that is earlier - a frozen export such as the demo's, where
        "as of today" would ask for weeks of data that never landed."""
        from datetime import UTC, datetime

        today = today or datetime.now(UTC).date()
        complete = self.landing_complete_as_of()
        return today if complete is None else min(today, complete)

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

    def scoring_threads(self) -> int:
        """Threads a score shard uses: MLSYS_SCORE_THREADS, or with 0 the CPUs this process
        may run on (its affinity: a container's or taskset's CPUs, not the host's)."""
        if self.score_threads > 0:
            return self.score_threads
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

    def environ(self) -> dict[str, str]:
        """These settings as the environment variables `from_env` reads, paths absolute: what
        the launchers pass to Airflow and record in airflow.cfg (``from_env`` of the result
        gives these settings back)."""
        values: dict[str, object] = {
            "MLSYS_HOME": self.home,
            "MLSYS_DATA_DIR": self.data_dir,
            "MLSYS_WAREHOUSE": self.warehouse,
            "MLSYS_MLFLOW_ARTIFACTS": self.mlflow_artifact_root,
            "MLFLOW_TRACKING_URI": self.mlflow_tracking_uri,
            "MLSYS_DBT_PROJECT_DIR": self.dbt_project_dir,
            "MLSYS_GX_CONTEXT_DIR": self.gx_context_dir,
            "MLSYS_MODEL_NAME": self.model_name,
            "MLSYS_ESTIMATOR": self.estimator,
            "MLSYS_SPLIT": self.training_split,
            "MLSYS_CALIBRATION": self.calibration,
            "MLSYS_CALIBRATION_FOLDS": self.calibration_folds,
            "MLSYS_EXPERIMENT": self.experiment_name,
            "MLSYS_ACTIVITY_PARTITIONS": self.activity_partitions,
            "MLSYS_SNAPSHOTS_PER_BUILD": self.snapshots_per_build,
            "MLSYS_MAX_TRAIN_ROWS": self.max_train_rows,
            "MLSYS_ENGINE": self.engine,
            "MLSYS_SPARK_MASTER": self.spark_master,
            "MLSYS_SPARK_REMOTE": self.spark_remote,
            "MLSYS_PUBLISH_MODE": self.publish_mode,
            "MLSYS_DBT_TARGET": self.dbt_target,
            "MLSYS_HORIZON_DAYS": self.horizon_days,
            "MLSYS_SNAPSHOT_WEEKS": self.snapshot_weeks,
            "MLSYS_SCORE_BATCH_SIZE": self.score_batch_size,
            "MLSYS_SCORE_SHARDS": self.score_shards,
            "MLSYS_SCORE_THREADS": self.score_threads,
            "MLSYS_STATSD_HOST": self.statsd_host,
            "MLSYS_STATSD_PORT": self.statsd_port,
            "MLSYS_STATSD_PREFIX": self.statsd_prefix,
            "MLSYS_PROMOTION_MARGIN": self.promotion_margin,
            "MLSYS_MAX_ECE": self.max_calibration_error,
            "MLSYS_ROW_DROP_MAX_SHARE": self.row_drop_max_share,
            "MLSYS_CONVERSIONS": self.conversions_glob,
            "MLSYS_ON_DEMAND_MAX_LEADS": self.on_demand_max_leads,
            "MLSYS_ON_DEMAND_REFRESH_SECONDS": self.on_demand_refresh_seconds,
            "MLSYS_ON_DEMAND_MAX_BODY_BYTES": self.on_demand_max_body_bytes,
            # A webhook URL can carry a token: airflow.cfg, where it is recorded, is mode 0600.
            "MLSYS_ALERT_WEBHOOK_URL": self.alert_webhook_url,
            "MLSYS_NIGHTLY_DEADLINE_MINUTES": self.nightly_deadline_minutes,
        }
        return {name: str(value) for name, value in values.items()}

    @classmethod
    def from_env(cls) -> Settings:
        env = {**recorded_environ(), **os.environ}
        var_dir = Path(_env(env, "MLSYS_HOME", "var")).resolve()
        data_dir = Path(_env(env, "MLSYS_DATA_DIR", str(var_dir / "data"))).resolve()
        warehouse = Path(_env(env, "MLSYS_WAREHOUSE", str(var_dir / "warehouse.duckdb"))).resolve()
        artifact_root = Path(_env(env, "MLSYS_MLFLOW_ARTIFACTS", str(var_dir / "mlartifacts"))).resolve()
        tracking_uri = _env(env, "MLFLOW_TRACKING_URI", f"sqlite:///{var_dir / 'mlflow.db'}")
        engine = _env(env, "MLSYS_ENGINE", "duckdb").lower()
        if engine not in ENGINES:
            raise ValueError(f"MLSYS_ENGINE must be one of {', '.join(ENGINES)}, got {engine!r}")
        spark_remote = _env(env, "MLSYS_SPARK_REMOTE", "")
        if spark_remote and not re.fullmatch(r"sc://[^/:\s]+(:\d+)?(/.*)?", spark_remote):
            raise ValueError(
                f"MLSYS_SPARK_REMOTE must be a Spark Connect URL, sc://host:port, got {spark_remote!r}"
            )
        if spark_remote and engine != "spark":
            raise ValueError(
                f"MLSYS_SPARK_REMOTE is set ({spark_remote}) but MLSYS_ENGINE is {engine}: "
                "set MLSYS_ENGINE=spark to use the Spark Connect server, or unset MLSYS_SPARK_REMOTE"
            )
        publish_mode = _env(env, "MLSYS_PUBLISH_MODE", "swap").lower()
        if publish_mode not in PUBLISH_MODES:
            raise ValueError(
                f"MLSYS_PUBLISH_MODE must be one of {', '.join(PUBLISH_MODES)}, got {publish_mode!r}"
            )
        # Spark Connect cannot take a master; its profile target sends only runtime settings.
        spark_target = "spark_connect" if spark_remote else "spark"
        dbt_target = _env(env, "MLSYS_DBT_TARGET", spark_target if engine == "spark" else "dev")
        if spark_remote and dbt_target == "spark":
            raise ValueError(
                "MLSYS_DBT_TARGET=spark starts Spark inside this process; with MLSYS_SPARK_REMOTE "
                "the dbt target is spark_connect (unset MLSYS_DBT_TARGET, or set it to spark_connect)"
            )
        score_threads = _env_int(env, "MLSYS_SCORE_THREADS", 0)
        if score_threads < 0:
            raise ValueError(
                f"MLSYS_SCORE_THREADS must be 0 (one per CPU) or a number of threads, got {score_threads}"
            )
        return cls(
            home=var_dir,
            data_dir=data_dir,
            warehouse=warehouse,
            mlflow_tracking_uri=tracking_uri,
            mlflow_artifact_root=artifact_root,
            dbt_project_dir=Path(_env(env, "MLSYS_DBT_PROJECT_DIR", str(REPO_ROOT / "sql"))).resolve(),
            gx_context_dir=Path(
                _env(env, "MLSYS_GX_CONTEXT_DIR", str(REPO_ROOT / "great_expectations"))
            ).resolve(),
            model_name=_env(env, "MLSYS_MODEL_NAME", "lead_scoring"),
            estimator=_env(env, "MLSYS_ESTIMATOR", "logreg"),
            training_split=_env(env, "MLSYS_SPLIT", "time"),
            calibration=_env(env, "MLSYS_CALIBRATION", "isotonic"),
            calibration_folds=_env_int(env, "MLSYS_CALIBRATION_FOLDS", 0),
            experiment_name=_env(env, "MLSYS_EXPERIMENT", "lead_scoring"),
            activity_partitions=_env_int(env, "MLSYS_ACTIVITY_PARTITIONS", 0),
            snapshots_per_build=_env_int(env, "MLSYS_SNAPSHOTS_PER_BUILD", 0),
            max_train_rows=_env_int(env, "MLSYS_MAX_TRAIN_ROWS", 400_000),
            engine=engine,
            spark_master=_env(env, "MLSYS_SPARK_MASTER", "local[2]"),
            spark_remote=spark_remote,
            publish_mode=publish_mode,
            dbt_target=dbt_target,
            horizon_days=_env_int(env, "MLSYS_HORIZON_DAYS", 30),
            snapshot_weeks=_env_int(env, "MLSYS_SNAPSHOT_WEEKS", 12),
            score_batch_size=_env_int(env, "MLSYS_SCORE_BATCH_SIZE", 100_000),
            score_shards=_env_int(env, "MLSYS_SCORE_SHARDS", 1),
            score_threads=score_threads,
            statsd_host=_env(env, "MLSYS_STATSD_HOST", "127.0.0.1"),
            statsd_port=_env_int(env, "MLSYS_STATSD_PORT", 8125),
            statsd_prefix=_env(env, "MLSYS_STATSD_PREFIX", "mlsys"),
            promotion_margin=_env_float(env, "MLSYS_PROMOTION_MARGIN", 0.005),
            max_calibration_error=_env_float(env, "MLSYS_MAX_ECE", 0.05),
            row_drop_max_share=_env_float(env, "MLSYS_ROW_DROP_MAX_SHARE", 0.5),
            conversions_glob=_env(env, "MLSYS_CONVERSIONS", "raw/conversions/*.parquet"),
            on_demand_max_leads=_env_int(env, "MLSYS_ON_DEMAND_MAX_LEADS", 100),
            on_demand_refresh_seconds=_env_float(env, "MLSYS_ON_DEMAND_REFRESH_SECONDS", 5.0),
            on_demand_max_body_bytes=_env_int(env, "MLSYS_ON_DEMAND_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            alert_webhook_url=_env(env, "MLSYS_ALERT_WEBHOOK_URL", ""),
            nightly_deadline_minutes=_env_float(env, "MLSYS_NIGHTLY_DEADLINE_MINUTES", 60.0),
        )
