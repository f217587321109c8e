"""Data drift of the current features against the champion's training reference.

PSI per feature (bins from the reference's deciles, categories for categoricals), with a KS
test for numeric and a chi-square test for categorical features as a second opinion.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from mlsys import metrics, registry
from mlsys.model import prepare_frame
from mlsys.scored_table import current_files, published_dates
from mlsys.settings import Settings

log = logging.getLogger(__name__)

PSI_THRESHOLD = 0.2
CURRENT_SAMPLE_ROWS = 100_000
_EPS = 1e-6


def psi_numeric(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index with bin edges from the reference's quantiles; missing
    values are a bin of their own (a feature that starts arriving empty is drift too)."""
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    ref_ok, cur_ok = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    if len(ref_ok) == 0:
        edges = np.array([-np.inf, np.inf])
    else:
        inner = np.unique(np.quantile(ref_ok, np.linspace(0, 1, bins + 1)[1:-1]))
        edges = np.concatenate([[-np.inf], inner, [np.inf]])
    ref_counts = np.append(np.histogram(ref_ok, edges)[0], np.isnan(ref).sum())
    cur_counts = np.append(np.histogram(cur_ok, edges)[0], np.isnan(cur).sum())
    return _psi(ref_counts, cur_counts)


def psi_categorical(reference: pd.Series, current: pd.Series) -> float:
    ref = reference.astype(object).fillna("__missing__")
    cur = current.astype(object).fillna("__missing__")
    levels = sorted(set(ref.unique()) | set(cur.unique()), key=str)
    ref_counts = ref.value_counts().reindex(levels, fill_value=0).to_numpy()
    cur_counts = cur.value_counts().reindex(levels, fill_value=0).to_numpy()
    return _psi(ref_counts, cur_counts)


def _psi(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    ref_share = np.maximum(ref_counts / max(1, ref_counts.sum()), _EPS)
    cur_share = np.maximum(cur_counts / max(1, cur_counts.sum()), _EPS)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


@dataclass
class DriftReport:
    as_of: date
    champion_version: str | None
    psi: dict[str, float] = field(default_factory=dict)
    p_values: dict[str, float] = field(default_factory=dict)
    threshold: float = PSI_THRESHOLD
    reason: str = ""

    @property
    def drifted(self) -> list[str]:
        return sorted(f for f, v in self.psi.items() if v > self.threshold)

    @property
    def detected(self) -> bool:
        return bool(self.drifted)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "feature": list(self.psi),
                "psi": list(self.psi.values()),
                "p_value": [self.p_values.get(f, np.nan) for f in self.psi],
                "drifted": [v > self.threshold for v in self.psi.values()],
            }
        ).sort_values("psi", ascending=False)

    def summary(self) -> str:
        if self.reason:
            return f"drift as of {self.as_of}: {self.reason}"
        top = ", ".join(f"{f}={self.psi[f]:.3f}" for f in self.drifted[:5])
        verdict = f"DRIFT in {len(self.drifted)} feature(s): {top}" if self.detected else "no drift"
        return (
            f"drift as of {self.as_of} vs champion v{self.champion_version}: {verdict} "
            f"(PSI threshold {self.threshold}, max PSI {max(self.psi.values(), default=0):.3f})"
        )


def current_features(as_of: date, settings: Settings, columns: list[str]) -> pd.DataFrame:
    """The population to compare with the champion's training data, defined the same way:
    the latest snapshot of the training snapshots built as of `as_of` (leads not converted
    before it). Falls back to lead_features, which also holds already-converted leads and
    so differs structurally (older, less active) from any training population."""
    import duckdb

    path = settings.training_snapshots_path(as_of)
    if path.exists():
        where = "where as_of = (select max(as_of) from read_parquet($path))"
    else:
        path = settings.lead_features_path(as_of)
        where = ""
        if not path.exists():
            raise FileNotFoundError(
                f"neither training_snapshots nor lead_features exist for {as_of}: build features first"
            )
    cols = ", ".join(columns)
    con = duckdb.connect()
    # The path is a bound parameter; columns come from the dbt catalogue, the limit is an int.
    return con.execute(
        f"select {cols} from read_parquet($path) {where} "  # noqa: S608 - catalogue columns, an int
        f"order by hash(lead_id) limit {CURRENT_SAMPLE_ROWS}",
        {"path": str(path)},
    ).df()


def drift_report(as_of: date, settings: Settings, threshold: float | None = None) -> DriftReport:
    from scipy import stats

    threshold = PSI_THRESHOLD if threshold is None else threshold
    champion = registry.alias_version(settings, registry.CHAMPION)
    if champion is None:
        return DriftReport(as_of, None, threshold=threshold, reason="no champion yet, nothing to compare")
    loaded = registry.load_version(settings, str(champion.version))
    reference = _reference(settings, loaded.run_id)
    current = prepare_frame(
        current_features(as_of, settings, loaded.features), loaded.numeric, loaded.categorical
    )
    report = DriftReport(as_of, str(champion.version), threshold=threshold)
    for feature in loaded.numeric:
        report.psi[feature] = psi_numeric(reference[feature].to_numpy(), current[feature].to_numpy())
        ref, cur = reference[feature].dropna(), current[feature].dropna()
        if len(ref) and len(cur):
            report.p_values[feature] = float(stats.ks_2samp(ref, cur).pvalue)
    for feature in loaded.categorical:
        report.psi[feature] = psi_categorical(reference[feature], current[feature])
        table = pd.crosstab(
            np.r_[np.zeros(len(reference)), np.ones(len(current))],
            pd.concat([reference[feature], current[feature]]).astype(object).fillna("__missing__").to_numpy(),
        )
        if table.shape[1] > 1:
            report.p_values[feature] = float(stats.chi2_contingency(table.to_numpy())[1])
    for feature, value in report.psi.items():
        metrics.gauge(f"drift.psi.{metrics.metric_safe(feature)}", value, settings)
    metrics.gauge("drift.detected", int(report.detected), settings)
    log.info(report.summary())
    return report


def _reference(settings: Settings, run_id: str | None) -> pd.DataFrame:
    import mlflow

    registry.configure(settings)
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="reference/training_reference.parquet", dst_path=tmp
        )
        return pd.read_parquet(local)


def log_report(report: DriftReport, out_dir: Path) -> list[Path]:
    """The drift table as CSV and a bar plot of PSI per feature."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    table = report.table()
    csv = out_dir / "drift_report.csv"
    table.to_csv(csv, index=False)
    fig, ax = plt.subplots(figsize=(7, max(3, 0.22 * len(table))))
    ax.barh(
        table["feature"],
        table["psi"],
        color=["tab:red" if d else "tab:blue" for d in table["drifted"]],
    )
    ax.axvline(report.threshold, ls="--", color="grey")
    ax.invert_yaxis()
    ax.set(xlabel="PSI", title=f"Drift as of {report.as_of}")
    png = out_dir / "drift_report.png"
    fig.savefig(png, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return [csv, png]


@dataclass
class RealizedPerformance:
    """How the scores of a past night fared once their labels were known.

    Degraded when the ranking got worse (ROC AUC more than ``max_drop`` below the version's
    holdout AUC) or when the published score stopped being a probability: its realized ECE
    above ``max_ece`` (MLSYS_MAX_ECE, the bound a model had to meet to be promoted). A shift
    of the conversion rate can leave the ranking almost intact while every score is off.
    """

    score_date: date
    model_version: str
    rows: int
    positive_rate: float
    roc_auc: float
    holdout_roc_auc: float | None
    max_drop: float
    mean_score: float | None = None
    ece: float | None = None
    max_ece: float | None = None

    @property
    def ranking_degraded(self) -> bool:
        return self.holdout_roc_auc is not None and self.roc_auc < self.holdout_roc_auc - self.max_drop

    @property
    def miscalibrated(self) -> bool:
        return self.ece is not None and self.max_ece is not None and self.ece > self.max_ece

    @property
    def degraded(self) -> bool:
        return self.ranking_degraded or self.miscalibrated

    def summary(self) -> str:
        ref = f" vs holdout {self.holdout_roc_auc:.3f}" if self.holdout_roc_auc is not None else ""
        calibration = ""
        if self.ece is not None and self.mean_score is not None:
            bound = f" (bound {self.max_ece:.3f})" if self.max_ece is not None else ""
            calibration = f"; mean score {self.mean_score:.1%}, ECE {self.ece:.3f}{bound}"
        reasons = [
            r for r, bad in (("ranking", self.ranking_degraded), ("calibration", self.miscalibrated)) if bad
        ]
        verdict = f"DEGRADED ({', '.join(reasons)})" if reasons else "ok"
        return (
            f"realized ROC AUC of v{self.model_version} on {self.score_date} "
            f"({self.rows:,} leads, {self.positive_rate:.1%} converted): {self.roc_auc:.3f}{ref}"
            f"{calibration} -> {verdict}"
        )


def realized_performance(
    as_of: date, settings: Settings, max_drop: float = 0.05, max_ece: float | None = None
) -> RealizedPerformance | None:
    """The latest published partition old enough for its labels to be complete (scored at
    least a horizon before `as_of`), joined to the conversions: its realized ROC AUC. None
    when it cannot be measured; the reason is logged (`realized_performance_or_reason`)."""
    result, reason = realized_performance_or_reason(as_of, settings, max_drop, max_ece)
    if result is None:
        log.warning("realized performance not measured as of %s: %s", as_of, reason)
    return result


def realized_performance_or_reason(
    as_of: date, settings: Settings, max_drop: float = 0.05, max_ece: float | None = None
) -> tuple[RealizedPerformance | None, str]:
    """The realized performance, or None and why it cannot be measured: no partition old
    enough yet, no conversions file, conversions without dates (an export that only says
    whether a lead converted, never when), or a night whose leads all had one outcome."""
    import glob as globlib

    import duckdb
    from sklearn.metrics import roc_auc_score

    from mlsys.evaluate import expected_calibration_error

    max_ece = settings.max_calibration_error if max_ece is None else max_ece
    cutoff = as_of.toordinal() - settings.horizon_days
    candidates = [d for d in published_dates(settings) if d.toordinal() <= cutoff]
    if not candidates:
        latest = date.fromordinal(cutoff)
        return None, (
            f"no published partition scored on or before {latest} (its leads' {settings.horizon_days}-day "
            "horizon must be over before their outcomes are known)"
        )
    score_date = candidates[-1]
    conversions = str(settings.conversions_files)
    if not globlib.glob(conversions):
        return None, f"no conversions file matches {conversions} (MLSYS_CONVERSIONS)"
    con = duckdb.connect()
    try:
        dated_row = con.execute(
            "select count(converted_at) from read_parquet(?, union_by_name = true)", [conversions]
        ).fetchone()
        dated = int(dated_row[0]) if dated_row else 0
    except duckdb.Error:
        dated = 0  # no converted_at column at all
    if dated == 0:
        return None, (
            f"no dated conversions in {conversions}: without converted_at a score cannot be matched "
            "to what happened in its horizon (an export that only says whether a lead converted)"
        )
    frame = con.execute(
        """
        select s.score, s.model_version,
               coalesce(c.converted_at >= s.as_of
                        and c.converted_at < s.as_of + to_days(cast(? as integer)), false)::int as label
        from read_parquet(?) s
        left join (
            select lead_id, min(converted_at) as converted_at
            from read_parquet(?, union_by_name = true) group by lead_id
        ) c using (lead_id)
        where c.converted_at is null or c.converted_at >= s.as_of
        """,
        [
            settings.horizon_days,
            [str(f) for f in current_files(settings, score_date)],
            conversions,
        ],
    ).df()
    if frame.empty or frame["label"].nunique() < 2:
        converted = int(frame["label"].sum()) if not frame.empty else 0
        return None, (
            f"the {len(frame):,} leads scored on {score_date} all had one outcome in their horizon "
            f"({converted:,} converted): ROC AUC needs both"
        )
    version = str(frame["model_version"].mode().iloc[0])
    holdout = _holdout_auc(settings, version)
    result = RealizedPerformance(
        score_date,
        version,
        len(frame),
        float(frame["label"].mean()),
        float(roc_auc_score(frame["label"], frame["score"])),
        holdout,
        max_drop,
        mean_score=float(frame["score"].mean()),
        ece=expected_calibration_error(frame["label"].to_numpy(), frame["score"].to_numpy()),
        max_ece=max_ece,
    )
    metrics.gauge("realized.roc_auc", result.roc_auc, settings)
    metrics.gauge("realized.degraded", int(result.degraded), settings)
    log.info(result.summary())
    return result, result.summary()


def _holdout_auc(settings: Settings, version: str) -> float | None:
    try:
        mv = registry.client(settings).get_model_version(settings.model_name, version)
        run = registry.client(settings).get_run(mv.run_id)
        return float(run.data.metrics["roc_auc"])
    except Exception as exc:  # noqa: BLE001 - a missing reference only disables the comparison
        log.warning("no holdout AUC for %s v%s: %s", settings.model_name, version, exc)
        return None
