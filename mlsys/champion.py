"""The champion as it scores: the model input from Arrow, probability, band, reasons.

Shared by nightly scoring (``mlsys.score``) and on-demand scoring (``mlsys.on_demand``), so
both paths compute the same numbers the same way.
"""

from __future__ import annotations

import copy
import logging
from datetime import UTC, datetime
from typing import Any

import numpy as np

from mlsys import registry

log = logging.getLogger(__name__)


def model_arrays(table: Any, numeric: list[str], categorical: list[str]) -> dict[str, np.ndarray]:
    """Each feature column of an Arrow table as the model sees it: float64 with NaN for
    numerics, objects with NaN for missing categories (the representation of
    ``model.prepare_frame``, at training and nightly scoring alike)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    present = set(table.column_names)  # a new list per access: look it up once
    missing = [c for c in [*numeric, *categorical] if c not in present]
    if missing:
        raise KeyError(f"feature columns missing from the data: {', '.join(missing)}")
    arrays: dict[str, np.ndarray] = {}
    for name in numeric:
        arrays[name] = pc.cast(table.column(name), pa.float64()).to_numpy(zero_copy_only=False)
    for name in categorical:
        column = table.column(name)
        # Strings cannot be zero-copy: to_numpy gives a new object array, ours to write.
        values = np.asarray(column.to_numpy(zero_copy_only=False), dtype=object)
        if column.null_count:
            values[column.is_null().to_numpy(zero_copy_only=False)] = np.nan
        arrays[name] = values
    return arrays


def model_frame(table: Any, numeric: list[str], categorical: list[str]) -> Any:
    """The champion's input frame from an Arrow table, equal to
    ``model.prepare_frame(table.to_pandas(), ...)``."""
    import pandas as pd

    arrays = model_arrays(table, numeric, categorical)
    columns: dict[str, Any] = {name: arrays[name] for name in numeric}
    for name in categorical:
        # A Series pins the object dtype: pandas 3 would infer its string dtype from a bare array.
        columns[name] = pd.Series(arrays[name], dtype=object, copy=False)
    return pd.DataFrame(columns, index=pd.RangeIndex(table.num_rows), copy=False)


def _column_blocks(preprocess: Any) -> list[tuple[Any, list[str]]] | None:
    """The fitted column transformer as (transformer, columns) blocks that take numpy arrays:
    its output is their outputs side by side. Each transformer is a copy without the column
    names it was fitted with, so an array is accepted without a warning. None when the
    transformer has a shape this does not handle (the caller scores the regular way)."""
    from sklearn.compose import ColumnTransformer

    if not isinstance(preprocess, ColumnTransformer) or getattr(preprocess, "sparse_output_", False):
        return None
    blocks = []
    for _name, transformer, columns in preprocess.transformers_:
        if isinstance(transformer, str):
            if transformer == "drop":
                continue
            return None  # passthrough
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            return None
        stripped = copy.deepcopy(transformer)
        for _, step in getattr(stripped, "steps", [(None, stripped)]):
            vars(step).pop("feature_names_in_", None)
        vars(stripped).pop("feature_names_in_", None)
        blocks.append((stripped, list(columns)))
    return blocks or None


def _transform_blocks(blocks: list[tuple[Any, list[str]]], arrays: dict[str, np.ndarray]) -> np.ndarray:
    return np.hstack([t.transform(np.column_stack([arrays[c] for c in cols])) for t, cols in blocks])


def band_of(scores: np.ndarray, cutoffs: dict[str, float]) -> np.ndarray:
    """Score bands A..D from the cut-offs stored with the model version."""
    return np.where(
        scores >= cutoffs["A"],
        "A",
        np.where(scores >= cutoffs["B"], "B", np.where(scores >= cutoffs["C"], "C", "D")),
    )


class Champion:
    """A loaded model version and how it scores: probability, band, reasons.

    Scoring a few rows is dominated by scikit-learn's per-call overhead, most of it the column
    transformer handling a pandas frame (about 5 ms for one row here), and the nightly path
    transforms every row twice (once inside ``predict_proba``, once for the reasons). Here
    the fitted transformers get numpy blocks straight from Arrow, once, and the calibrated
    classifier and the explainer read that output: about ten times faster per request.
    At load time this is compared with the nightly computation (``predict_proba`` and the
    explainer on a pandas frame) on probe rows, bit for bit; if anything differs, the nightly
    computation is what scores.
    """

    def __init__(self, loaded: registry.LoadedModel) -> None:
        from mlsys.model import Explainer, ReasonSpec

        self.loaded = loaded
        self.name = loaded.name
        self.version = loaded.version
        self.numeric = loaded.numeric
        self.categorical = loaded.categorical
        self.cutoffs = dict(loaded.metadata["score_bands"])
        reasons = loaded.metadata.get("reasons")
        self.spec = ReasonSpec(**reasons) if reasons else None
        self.explainer = Explainer(loaded.model, self.spec) if self.spec else None
        self.loaded_at = datetime.now(UTC)
        self._fast: tuple[Any, Any, Any] | None = None
        try:
            self._fast = self._split()
        except Exception as exc:  # noqa: BLE001 - an unusual model shape scores the regular way
            log.info("model %s v%s: no split scoring (%s)", self.name, self.version, exc)
        self.split_scoring = self._fast is not None

    def _split(self) -> tuple[Any, Any, Any] | None:
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.preprocessing import FunctionTransformer

        from mlsys.model import Explainer, member_pipelines

        model = self.loaded.model
        if not isinstance(model, CalibratedClassifierCV):
            return None
        members = member_pipelines(model)
        if any(m is model or m.steps[0][0] != "preprocess" for m in members):
            return None
        preprocess = members[0].steps[0][1]
        if any(m.steps[0][1] is not preprocess for m in members):
            return None  # members with preprocessing of their own: transform per member
        blocks = _column_blocks(preprocess)
        if blocks is None:
            return None
        calibrated = copy.copy(model)
        calibrated.calibrated_classifiers_ = []
        for part, member in zip(model.calibrated_classifiers_, members, strict=True):
            part = copy.copy(part)
            part.estimator = member[1:]  # SMOTE (fit-only, skipped at predict) and the classifier
            calibrated.calibrated_classifiers_.append(part)
        probe = self._probe_table(preprocess)
        z_probe = _transform_blocks(blocks, model_arrays(probe, self.numeric, self.categorical))
        explainer = None
        if self.spec is not None:
            identity = FunctionTransformer().fit(z_probe)
            explainer = Explainer(
                [type(m)([("preprocess", identity), *m.steps[1:]]) for m in members], self.spec
            )
        fast = (blocks, calibrated, explainer)
        p_ref, reasons_ref = self._predict_reference(probe)
        p_fast, reasons_fast = self._predict_split(probe, fast)
        if not np.array_equal(p_ref, p_fast) or reasons_ref != reasons_fast:
            log.warning("%s v%s: split scoring differs on probe rows; not used", self.name, self.version)
            return None
        return fast

    def _probe_table(self, preprocess: Any) -> Any:
        """Rows that exercise imputation, scaling and every categorical path."""
        import pyarrow as pa

        numeric_stats: dict[str, float] = {}
        categories: dict[str, list[str]] = {}
        for name, step, columns in preprocess.transformers_:
            steps = getattr(step, "named_steps", {})
            imputer = steps.get("simpleimputer")
            encoder = steps.get("onehotencoder")
            for i, column in enumerate(columns if isinstance(columns, list) else []):
                if encoder is not None:
                    categories[column] = [c for c in encoder.categories_[i] if isinstance(c, str)]
                elif imputer is not None and name == "num":
                    numeric_stats[column] = float(imputer.statistics_[i])
        rows = range(6)
        data: dict[str, Any] = {}
        for column in self.numeric:
            base = numeric_stats.get(column, 1.0)
            data[column] = pa.array(
                [None if k == 0 else base * k + (k - 1) * 3.0 for k in rows], pa.float64()
            )
        for column in self.categorical:
            levels = [*(categories.get(column) or []), "__unseen__"]
            data[column] = pa.array(
                [None if k == 0 else levels[(k - 1) % len(levels)] for k in rows], pa.string()
            )
        return pa.table(data)

    def _predict_reference(self, table: Any) -> tuple[np.ndarray, list[Any]]:
        # Exactly what mlsys.score does for the nightly partition.
        x = model_frame(table, self.numeric, self.categorical)
        p = self.loaded.model.predict_proba(x)[:, 1]
        reasons = self.explainer.top_reasons(x) if self.explainer else [[] for _ in range(len(p))]
        return np.asarray(p), reasons

    def _predict_split(self, table: Any, fast: tuple[Any, Any, Any]) -> tuple[np.ndarray, list[Any]]:
        blocks, calibrated, explainer = fast
        z = _transform_blocks(blocks, model_arrays(table, self.numeric, self.categorical))
        p = calibrated.predict_proba(z)[:, 1]
        reasons = explainer.top_reasons(z) if explainer else [[] for _ in range(len(p))]
        return np.asarray(p), reasons

    def score_arrow(self, table: Any, *, reasons: bool = True) -> tuple[np.ndarray, Any]:
        """Scores and top reasons (an Arrow ``list<struct<feature, contribution>>`` array) of
        an Arrow table or record batch of features: the nightly path, one batch at a time.
        ``reasons=False`` leaves every list empty (what the reasons cost is measured against)."""
        from mlsys.model import top_reasons_arrow

        if self._fast is not None:
            blocks, calibrated, explainer = self._fast
            x: Any = _transform_blocks(blocks, model_arrays(table, self.numeric, self.categorical))
            p = calibrated.predict_proba(x)[:, 1]
        else:
            explainer = self.explainer
            x = model_frame(table, self.numeric, self.categorical)
            p = self.loaded.model.predict_proba(x)[:, 1]
        if explainer is None or not reasons:
            return np.asarray(p), top_reasons_arrow(np.empty((len(p), 0)), [])
        return np.asarray(p), explainer.top_reasons_arrow(x)

    def predict(self, table: Any) -> tuple[np.ndarray, list[Any], np.ndarray]:
        """Scores, top reasons and bands of the rows of an Arrow table of features."""
        if self._fast is not None:
            p, reasons = self._predict_split(table, self._fast)
        else:
            p, reasons = self._predict_reference(table)
        return p, reasons, band_of(p, self.cutoffs)

    def describe(self) -> dict[str, Any]:
        meta = self.loaded.metadata
        return {
            "model_name": self.name,
            "model_version": self.version,
            "alias": registry.CHAMPION,
            "run_id": self.loaded.run_id,
            "features": {"numeric": self.numeric, "categorical": self.categorical},
            "score_bands": self.cutoffs,
            "holdout_date": meta.get("holdout_date"),
            "horizon_days": meta.get("horizon_days"),
            "loaded_at": self.loaded_at.isoformat(),
            "split_scoring": self.split_scoring,
        }
