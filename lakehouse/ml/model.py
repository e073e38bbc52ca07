"""The fraud model as an MLflow pyfunc: raw columns in (lakehouse.ml.inputs.RAW_COLUMNS), score out.

The wrapper holds the fitted scikit-learn estimator and the cost-chosen threshold. `predict` derives
the inputs with `model_inputs` and returns the probability of fraud, so `mlflow.pyfunc.spark_udf` (batch,
streaming) and `score_raw` (online, without pyfunc's per-call schema checks) compute the same number.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from lakehouse.ml.inputs import RAW_COLUMNS, STRING_COLUMNS, model_inputs, records_inputs


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
        scores: np.ndarray = self.estimator.predict_proba(records_inputs(records))[:, 1]
        return scores

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

