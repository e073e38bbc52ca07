"""Batch scoring (`jobs/score_batch.py`, `lakehouse run score`): payments -> point-in-time features ->
the champion through `mlflow.pyfunc.spark_udf` -> gold.fact_payment_scores (path `batch`).

The features are Feast's offline join at 1 µs before each payment, the state the online store held when
the payment was made, so a batch score equals the online score of the same payment.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.common.config import Settings
from lakehouse.common.tables import ensure_table, table_path
from lakehouse.ml.inputs import RAW_COLUMNS, STRING_COLUMNS
from lakehouse.ml.tables import PAYMENT_SCORES

log = logging.getLogger(__name__)

BATCH, STREAM = "batch", "stream"


def champion_version(settings: Settings, alias: str = "champion") -> tuple[str, float]:
    """(version, threshold) of the model the alias points at."""
    import mlflow

    from lakehouse.ml.registry import alias_version
    from lakehouse.ml.tracking import client as mlflow_client

    client = mlflow_client(settings)
    version = alias_version(client, settings.ml.model_name, alias)
    if version is None:
        raise LookupError(f"{settings.ml.model_name} has no {alias}: run lakehouse ml train and lakehouse ml promote")
    model = mlflow.pyfunc.load_model(f"models:/{settings.ml.model_name}/{version.version}").unwrap_python_model()
    return str(version.version), float(model.threshold)


def raw_columns(frame: DataFrame) -> list[Any]:
    """The model's raw input columns of a feature frame, cast to the signature's types."""
    def cast(name: str) -> Any:
        if name not in frame.columns:
            return F.lit(None).cast("string" if name in STRING_COLUMNS else "double").alias(name)
        if name == "created_at":
            return F.col(name)
        return F.col(name).cast("string" if name in STRING_COLUMNS else "double").alias(name)
    return [cast(c) for c in RAW_COLUMNS]


def decisions(scored: DataFrame, threshold: float, version: str, settings: Settings, path: str) -> DataFrame:
    """`charge_id`, `created_at`, `score` -> gold.fact_payment_scores rows."""
    return scored.select(
        "charge_id", "created_at", F.lit(path).alias("path"), F.col("score").cast("double").alias("score"),
        F.when(F.col("score") >= F.lit(threshold), F.lit("decline")).otherwise(F.lit("approve")).alias("decision"),
        F.lit(threshold).alias("threshold"), F.lit(settings.ml.model_name).alias("model_name"),
        F.lit(version).alias("model_version"), F.current_timestamp().alias("scored_at"))


def upsert_scores(spark: SparkSession, settings: Settings, rows: DataFrame) -> None:
    """MERGE by (charge_id, path): a payment scored again on a path keeps its latest score."""
    ensure_table(spark, settings, PAYMENT_SCORES)
    target = DeltaTable.forPath(spark, table_path(settings, PAYMENT_SCORES.full_name))
    (target.alias("t").merge(rows.alias("s"), "t.charge_id = s.charge_id AND t.path = s.path")
     .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())


def score_payments(spark: SparkSession, settings: Settings, payments: DataFrame, version: str) -> DataFrame:
    """payments_for_features rows -> the same with their point-in-time features and `score` (model `version`
    through spark_udf)."""
    import mlflow

    from lakehouse.features.store import feature_store
    from lakehouse.ml.dataset import with_features

    features = with_features(feature_store(settings), payments)
    udf = mlflow.pyfunc.spark_udf(spark, f"models:/{settings.ml.model_name}/{version}", env_manager="local",
                                  result_type="double")
    return features.withColumn("score", udf(F.struct(*raw_columns(features))))


def score_batch(spark: SparkSession, settings: Settings, since: dt.datetime | None = None,
                alias: str = "champion", progress: Callable[[str], None] = log.info) -> dict[str, Any]:
    """Scores the payments created at or after `since` (default: those with no batch score yet)."""
    from lakehouse.features.jobs import feature_payments

    version, threshold = champion_version(settings, alias)
    payments = feature_payments(spark, settings)
    if since is not None:
        payments = payments.where(F.col("created_at") >= F.lit(since))
    else:
        path = table_path(settings, PAYMENT_SCORES.full_name)
        if DeltaTable.isDeltaTable(spark, path):
            done = spark.read.format("delta").load(path).where(F.col("path") == F.lit(BATCH)).select("charge_id")
            payments = payments.join(done, on="charge_id", how="left_anti")
    rows = decisions(score_payments(spark, settings, payments, version), threshold, version, settings,
                     BATCH).cache()
    try:
        counts = rows.agg(F.count(F.lit(1)).alias("n"),
                          F.count_if(F.col("decision") == F.lit("decline")).alias("declined")).first()
        assert counts is not None
        n, declined = int(counts["n"]), int(counts["declined"])
        upsert_scores(spark, settings, rows)
    finally:
        rows.unpersist()
    progress(f"ml: scored {n:,} payments with {settings.ml.model_name} v{version} ({declined:,} declined)")
    return {"scored": n, "declined": declined, "model_version": version, "threshold": threshold}
