"""Fraud (and churn) models: training sets from Feast, MLflow tracking and registry, scoring, monitoring."""

from __future__ import annotations

from typing import Any


def score_online(payment: dict[str, Any]) -> dict[str, Any]:
    """The champion's decision for one payment, with its features from the online store (Redis): see
    lakehouse.ml.serve.Scorer, which this uses with the settings of `LAKEHOUSE_ENV`."""
    from lakehouse.ml.serve import default_scorer

    return default_scorer().score(payment).as_dict()
