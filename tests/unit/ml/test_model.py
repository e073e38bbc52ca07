"""The online walk of a gradient-boosted model's trees gives scikit-learn's own probabilities, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from lakehouse.ml.model import CompiledTrees

pytestmark = pytest.mark.unit


def _data(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    X[:, 3] = rng.integers(0, 4, size=n)                       # a few distinct values: ties at thresholds
    y = (X[:, 0] + 0.5 * X[:, 1] * X[:, 3] + rng.normal(scale=0.5, size=n) > 0.8).astype(int)
    X[rng.random(size=(n, 6)) < 0.1] = np.nan                  # missing values go where the split learnt
    return X, y


def test_compiled_trees_equal_predict_proba_exactly() -> None:
    X, y = _data(1, 3000)
    model = HistGradientBoostingClassifier(max_iter=120, max_leaf_nodes=31, class_weight="balanced",
                                           random_state=0).fit(X, y)
    fresh, _ = _data(2, 500)
    fresh[:20, :] = np.nan                                     # rows with nothing known
    fresh[20:40, 3] = 2.0                                      # exactly on a learnt value

    compiled = CompiledTrees.of(model)

    assert compiled is not None
    assert np.array_equal(compiled.predict_proba(fresh), model.predict_proba(fresh))
    assert np.array_equal(compiled.predict_proba(fresh[:1]), model.predict_proba(fresh[:1]))


def test_compiled_trees_only_for_what_they_reproduce() -> None:
    X, y = _data(3, 400)
    assert CompiledTrees.of(LogisticRegression().fit(np.nan_to_num(X), y)) is None
    categorical = HistGradientBoostingClassifier(max_iter=5, categorical_features=[3]).fit(np.nan_to_num(X), y)
    assert CompiledTrees.of(categorical) is None
    model = HistGradientBoostingClassifier(max_iter=5).fit(X, y)
    with pytest.raises(ValueError, match="expected 6 inputs per row"):
        CompiledTrees.of(model).predict_proba(X[:, :5])        # type: ignore[union-attr]
