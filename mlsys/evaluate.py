"""Model quality on a held-out snapshot: ranking, calibration and business metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """ECE over equal-count bins: with 5-15% positives most equal-width bins would be empty."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    if len(y) == 0:
        return float("nan")
    order = np.argsort(p, kind="stable")
    total = 0.0
    for chunk in np.array_split(order, min(bins, len(order))):
        if len(chunk):
            total += len(chunk) * abs(y[chunk].mean() - p[chunk].mean())
    return total / len(y)


def top_fraction_metrics(y: np.ndarray, p: np.ndarray, fraction: float = 0.1) -> dict[str, float]:
    y = np.asarray(y, dtype=float)
    n_top = max(1, round(len(y) * fraction))
    top = np.argsort(-np.asarray(p), kind="stable")[:n_top]
    precision = float(y[top].mean())
    positives = y.sum()
    recall = float(y[top].sum() / positives) if positives else float("nan")
    base = float(y.mean()) if len(y) else float("nan")
    lift = precision / base if base else float("nan")
    return {"precision_at_10pct": precision, "recall_at_10pct": recall, "lift_at_10pct": lift}


def classification_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    y = np.asarray(y)
    p = np.clip(np.asarray(p, dtype=float), 1e-7, 1 - 1e-7)
    out = {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "ece": expected_calibration_error(y, p),
        "positive_rate": float(y.mean()),
        "mean_score": float(p.mean()),
    }
    out.update(top_fraction_metrics(y, p))
    return out


def score_band_cutoffs(p: np.ndarray) -> dict[str, float]:
    """Probability cut-offs for bands A..D from the holdout's scores: A = top 10%, B = next
    20%, C = next 30%, D = the rest. Fixed per model version so a band means the same
    probability every night, whatever the mix of leads."""
    q = np.quantile(np.asarray(p, dtype=float), [0.9, 0.7, 0.4])
    return {"A": float(q[0]), "B": float(q[1]), "C": float(q[2])}


def save_plots(y: np.ndarray, p: np.ndarray, p_uncalibrated: np.ndarray, out_dir: Path) -> list[Path]:
    """ROC, PR, calibration and cumulative-gains plots as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import precision_recall_curve, roc_curve

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []

    fig, ax = plt.subplots(figsize=(5, 5))
    fpr, tpr, _ = roc_curve(y, p)
    ax.plot(fpr, tpr, label="model")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax.legend()
    paths.append(_save(fig, out_dir / "roc.png"))

    fig, ax = plt.subplots(figsize=(5, 5))
    precision, recall, _ = precision_recall_curve(y, p)
    ax.plot(recall, precision)
    ax.axhline(float(np.mean(y)), ls="--", color="grey", label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall")
    ax.legend()
    paths.append(_save(fig, out_dir / "pr.png"))

    fig, ax = plt.subplots(figsize=(5, 5))
    for label, scores in (("calibrated", p), ("before calibration", p_uncalibrated)):
        frac, mean_pred = calibration_curve(y, scores, n_bins=10, strategy="quantile")
        ax.plot(mean_pred, frac, marker="o", label=label)
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set(xlabel="mean predicted probability", ylabel="observed rate", title="Calibration")
    ax.legend()
    paths.append(_save(fig, out_dir / "calibration.png"))

    fig, ax = plt.subplots(figsize=(5, 5))
    order = np.argsort(-np.asarray(p))
    gains = np.cumsum(np.asarray(y)[order]) / max(1, int(np.sum(y)))
    share = np.arange(1, len(y) + 1) / len(y)
    ax.plot(share, gains, label="model")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="random")
    ax.set(xlabel="share of leads contacted", ylabel="share of conversions", title="Cumulative gains")
    ax.legend()
    paths.append(_save(fig, out_dir / "cumulative_gains.png"))
    return paths


def _save(fig: object, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=80, bbox_inches="tight")  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    return path
