"""The fraud model as an MLflow pyfunc: raw columns in (lakehouse.ml.inputs.RAW_COLUMNS), score out.

The wrapper holds the fitted scikit-learn estimator and the cost-chosen threshold. `predict` derives
the inputs with `model_inputs` and returns the probability of fraud, so `mlflow.pyfunc.spark_udf` (batch,
streaming) and `score_records` (online, without pyfunc's per-call schema checks) compute the same number.

Online, a gradient-boosted model's trees are walked in Python (`CompiledTrees`): scikit-learn calls into
compiled code once per tree, about 50 µs each, 10 ms a row for 200 trees; the walk takes well under one.
It takes the same branches and adds the leaves in the same order, so the float is the same, bit for bit.
Larger calls (a streaming micro-batch of many payments) keep scikit-learn's vectorized call.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from lakehouse.ml.inputs import RAW_COLUMNS, STRING_COLUMNS, model_inputs, records_inputs

# up to this many rows the Python walk is faster; beyond, scikit-learn's vectorized call (same floats either way)
COMPILED_MAX_ROWS = 32


class ScoreModel(PythonModel):
    """A classifier over INPUT_COLUMNS behind the raw-column interface."""

    def __init__(self, estimator: Any, threshold: float, kind: str) -> None:
        self.estimator = estimator
        self.threshold = float(threshold)
        self.kind = kind

    def score_raw(self, raw: pd.DataFrame) -> np.ndarray:
        """P(fraud) per row of raw columns."""
        scores: np.ndarray = self.estimator.predict_proba(model_inputs(raw).to_numpy())[:, 1]
        return scores

    def score_records(self, records: list[Any]) -> np.ndarray:
        """P(fraud) per dict of raw values: the same derivation without a DataFrame (the online path)."""
        inputs = records_inputs(records)
        if self.compiled is not None and len(records) <= COMPILED_MAX_ROWS:
            scores: np.ndarray = self.compiled.predict_proba(inputs)[:, 1]
        else:
            scores = self.estimator.predict_proba(inputs)[:, 1]
        return scores

    @functools.cached_property
    def compiled(self) -> CompiledTrees | None:
        """The estimator's trees for the Python walk (None: not a model it reproduces); built on first use."""
        return CompiledTrees.of(self.estimator)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "compiled"}    # derived: never pickled

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.Series:
        return pd.Series(self.score_raw(model_input), index=model_input.index, name="score")


def raw_schema() -> Any:
    """The pyfunc signature's input schema: every raw column, optional (a feature may be missing)."""
    from mlflow.types import ColSpec, DataType, Schema

    def kind(name: str) -> DataType:
        if name == "created_at":
            return DataType.datetime
        return DataType.string if name in STRING_COLUMNS else DataType.double

    return Schema([ColSpec(kind(c), c, required=False) for c in RAW_COLUMNS])


def as_raw_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` with exactly RAW_COLUMNS, typed as the signature says (missing columns become missing values)."""
    out = pd.DataFrame(index=rows.index)
    for c in RAW_COLUMNS:
        if c == "created_at":
            out[c] = pd.to_datetime(rows[c], utc=True).dt.tz_localize(None)
        elif c in STRING_COLUMNS:
            out[c] = rows[c].astype(object).where(rows[c].notna(), None) if c in rows else None
        else:
            out[c] = pd.to_numeric(rows[c], errors="coerce").astype("float64") if c in rows else np.nan
    return out


class CompiledTrees:
    """A fitted binary HistGradientBoostingClassifier without categorical features, as Python lists per tree:
    `predict_proba` of a few rows equals the estimator's exactly (same split rule: `x <= threshold` goes
    left, a missing value where the split learnt to send it; leaves added to the baseline tree by tree; the
    estimator's own link function), without a call into compiled code per tree."""

    def __init__(self, estimator: Any) -> None:
        self._estimator = estimator
        self._baseline = float(estimator._baseline_prediction[0, 0])
        self._trees = []
        for iteration in estimator._predictors:
            [predictor] = iteration
            nodes = predictor.nodes
            self._trees.append((nodes["is_leaf"].astype(bool).tolist(), nodes["feature_idx"].tolist(),
                                nodes["num_threshold"].tolist(), nodes["missing_go_to_left"].astype(bool).tolist(),
                                nodes["left"].tolist(), nodes["right"].tolist(), nodes["value"].tolist()))

    @classmethod
    def of(cls, estimator: Any) -> CompiledTrees | None:
        """The compiled form, or None when the estimator is not one this walk reproduces exactly."""
        from sklearn.ensemble import HistGradientBoostingClassifier

        if type(estimator) is not HistGradientBoostingClassifier or estimator.n_trees_per_iteration_ != 1:
            return None
        if estimator.is_categorical_ is not None and bool(np.any(estimator.is_categorical_)):
            return None
        return cls(estimator)

    def raw(self, row: Any) -> float:
        total = self._baseline
        for is_leaf, feature, threshold, missing_left, left, right, value in self._trees:
            node = 0
            while not is_leaf[node]:
                x = row[feature[node]]
                if x != x:                                        # NaN
                    node = left[node] if missing_left[node] else right[node]
                else:
                    node = left[node] if x <= threshold[node] else right[node]
            total += value[node]
        return total

    def predict_proba(self, inputs: np.ndarray) -> np.ndarray:
        X = np.asarray(inputs, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self._estimator.n_features_in_:
            raise ValueError(f"expected {self._estimator.n_features_in_} inputs per row, got shape {X.shape}")
        raw = np.array([self.raw(row) for row in X.tolist()], dtype=np.float64).reshape(-1, 1)
        proba: np.ndarray = self._estimator._loss.predict_proba(raw)
        return proba
