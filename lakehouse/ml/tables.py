"""Tables the models write: scores (gold), monitoring (gold) and the registry's alias history (ops)."""

from __future__ import annotations

from lakehouse.common.tables import TableSpec, columns, register

PAYMENT_SCORES = TableSpec("gold", "fact_payment_scores", columns(
    "charge_id bigint not null, created_at timestamp not null, path string not null, score double, "
    "decision string, threshold double, model_name string, model_version string, scored_at timestamp"),
    "Fraud scores. Grain: one row per payment and scoring path (`batch`: jobs/score_batch.py with the "
    "champion through spark_udf; `stream`: the streaming pipeline, online features); decision is "
    "`decline` when score >= the model's cost-chosen threshold, else `approve`.",
    cluster_by=("created_at",))

ML_MONITORING = TableSpec("gold", "ml_monitoring", columns(
    "checked_at timestamp not null, model_name string not null, model_version string, kind string not null, "
    "name string not null, value double, threshold double, breached boolean, window_start timestamp, "
    "window_end timestamp, detail string"),
    "Model monitoring. Grain: one row per check run x measure: `feature_psi` (a model input's PSI, training "
    "vs recent scoring data), `score_psi`, `performance` (metrics on recent payments whose labels have "
    "arrived) and `retrain` (whether a retrain is recommended, and why).")

MODEL_ALIAS_HISTORY = TableSpec("ops", "model_alias_history", columns(
    "changed_at timestamp not null, model_name string not null, alias string not null, action string not null, "
    "from_version string, to_version string, reason string, evidence string, run_id string"),
    "Every change of a registered model's aliases, and every refused promotion: the MLflow registry keeps "
    "only the current aliases. Grain: one row per alias change or gate decision.",
    properties={"delta.appendOnly": "true"})

CHURN_SCORES = TableSpec("gold", "fact_churn_scores", columns(
    "subscription_id bigint not null, customer_id bigint, as_of timestamp not null, score double, "
    "model_name string, model_version string, scored_at timestamp"),
    "Subscription churn risk (probability of cancellation within the horizon). Grain: one row per active "
    "subscription and as_of day (a re-run on the same day replaces that day's rows).")

ML_TABLES = (PAYMENT_SCORES, ML_MONITORING, MODEL_ALIAS_HISTORY, CHURN_SCORES)

register(*ML_TABLES)
