"""Streaming features and scoring (`lakehouse run stream_scoring [--once]`, `jobs/stream_scoring.py`).

    silver.charges Change Data Feed (new rows only, after the version current at the first run)
      ─ foreachBatch ─► 1. score each new payment: online features (Redis) as of its time -> the champion
                           -> gold.fact_payment_scores (path `stream`, MERGE: a replayed batch rewrites the same)
                        2. streaming features: per card and customer of the batch, payments and USD in the 5
                           minutes up to its latest payment -> pushed to Redis (card_5m_stream_fv,
                           customer_5m_stream_fv) and appended to gold.feat_card_stream / feat_customer_stream
                           (idempotent per batch: txnAppId / txnVersion)

Scoring comes before the push, so a payment is scored with the state before its batch, as Feast's
offline join at `created_at - 1 µs` sees it (the batch path gives the same score). Payments made before
the checkpoint existed are the batch job's (`lakehouse run score`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.common.config import Settings
from lakehouse.common.jobs import JobOutcome, run_streaming
from lakehouse.common.spark import await_query
from lakehouse.common.tables import ensure_table, table_path
from lakehouse.features import build
from lakehouse.features import tables as ft
from lakehouse.features.jobs import CHARGES
from lakehouse.ml.scoring import STREAM, upsert_scores
from lakehouse.ml.tables import PAYMENT_SCORES

log = logging.getLogger(__name__)

QUERY_NAME = "stream_scoring"
STREAM_WINDOW_S = 5 * 60


@dataclass
class StreamStats:
    batches: int = 0
    scored: int = 0
    declined: int = 0
    pushed: dict[str, int] = field(default_factory=dict)
    latency_s: list[float] = field(default_factory=list)     # commit in silver -> batch done (scores written, pushed)

    def as_dict(self) -> dict[str, Any]:
        lat = sorted(self.latency_s)
        return {"batches": self.batches, "scored": self.scored, "declined": self.declined, "pushed": self.pushed,
                "max_batch_latency_s": round(lat[-1], 2) if lat else None}


def stream_windows(recent: DataFrame, batch: DataFrame, key: str, prefix: str) -> DataFrame:
    """Per `key` of the batch: payments and USD amount of `recent` (payments_for_features rows) in the
    5 minutes up to the key's latest payment of the batch. -> key, event_ts, created_ts,
    <prefix>_txn_5m, <prefix>_amount_usd_5m."""
    latest = batch.groupBy(key).agg(F.max("created_at").alias("event_ts"))
    window_start = F.col("event_ts") - F.expr(f"INTERVAL {STREAM_WINDOW_S} SECONDS")
    inside = (F.col("created_at") > window_start) & (F.col("created_at") <= F.col("event_ts"))
    return (latest.join(recent, on=key, how="inner").where(inside)
            .groupBy(key, "event_ts")
            .agg(F.count(F.lit(1)).alias(f"{prefix}_txn_5m"),
                 F.round(F.sum("amount_usd"), 2).alias(f"{prefix}_amount_usd_5m"))
            .select(key, "event_ts", F.current_timestamp().alias("created_ts"), f"{prefix}_txn_5m",
                    f"{prefix}_amount_usd_5m"))


class StreamBatch:
    """The foreachBatch function (holds the scorer and the feature store across batches)."""

    def __init__(self, settings: Settings, stats: StreamStats) -> None:
        from lakehouse.ml.serve import Scorer

        self.settings = settings
        self.stats = stats
        self.scorer = Scorer(settings)
        self.app_id = f"{QUERY_NAME}-{settings.features.project}"

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        spark = batch.sparkSession
        payments = batch.transform(build.payments_for_features).cache()
        try:
            rows = [r.asDict() for r in payments.collect()]
            if not rows:
                return
            self._score(spark, rows)
            self._push(spark, payments, batch_id)
            self.stats.batches += 1
            committed = batch.agg(F.min("_commit_timestamp")).first()
            if committed and committed[0] is not None:
                self.stats.latency_s.append((dt.datetime.now(dt.UTC).replace(tzinfo=None) - committed[0])
                                            .total_seconds())
        finally:
            payments.unpersist()

    def _score(self, spark: SparkSession, rows: list[dict[str, Any]]) -> None:
        decisions = self.scorer.score_many([{**r, "ip_latitude": r["ip_lat"], "ip_longitude": r["ip_lon"]}
                                            for r in rows])
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        out = [(r["charge_id"], r["created_at"], STREAM, d.score, d.decision, d.threshold, d.model_name,
                d.model_version, now) for r, d in zip(rows, decisions, strict=True)]
        upsert_scores(spark, self.settings, spark.createDataFrame(out, PAYMENT_SCORES.schema))
        self.stats.scored += len(out)
        self.stats.declined += sum(1 for d in decisions if d.decision == "decline")

    def _push(self, spark: SparkSession, batch: DataFrame, batch_id: int) -> None:
        from feast.data_source import PushMode

        from lakehouse.features.jobs import feature_payments
        from lakehouse.features.store import feast_call

        first = batch.agg(F.min("created_at")).first()
        assert first is not None
        since = first[0] - dt.timedelta(seconds=STREAM_WINDOW_S)
        recent = feature_payments(spark, self.settings).where(F.col("created_at") > F.lit(since))
        for spec, key, prefix, push in ((ft.CARD_STREAM, "payment_method_id", "card", "card_stream_push"),
                                        (ft.CUSTOMER_STREAM, "customer_id", "cust", "customer_stream_push")):
            values = stream_windows(recent, batch, key, prefix).cache()
            try:
                ensure_table(spark, self.settings, spec)
                (values.write.format("delta").mode("append").option("txnAppId", f"{self.app_id}-{spec.name}")
                 .option("txnVersion", batch_id).save(table_path(self.settings, spec.full_name)))
                frame: Any = values.toPandas()
                if not frame.empty:
                    with feast_call():
                        self.scorer.store.push(push, frame, to=PushMode.ONLINE)
                self.stats.pushed[spec.name] = self.stats.pushed.get(spec.name, 0) + len(frame)
            finally:
                values.unpersist()


def checkpoint_location(settings: Settings) -> str:
    return f"{settings.checkpoint_dir.rstrip('/')}/{QUERY_NAME}/{settings.features.project}"


def starting_version(spark: SparkSession, settings: Settings) -> int:
    """The silver.charges version the query starts after: the current one at the first run, kept next to
    the checkpoint, so that runs which found nothing to do (no offsets committed yet) do not move it
    forward and skip payments. (Delta cannot start a stream at a version that does not exist yet: the
    query reads from this version and drops its rows.)"""
    from pyspark.errors import AnalysisException

    from lakehouse.common.tables import delta_version

    marker = f"{checkpoint_location(settings)}_starting_version"
    try:
        row = spark.read.text(marker).first()
        if row is not None:
            return int(row[0])
    except AnalysisException:
        pass
    current = delta_version(spark, table_path(settings, "silver.charges"))
    if current is None:
        raise LookupError("silver.charges does not exist yet: run the pipeline (lakehouse run silver) first")
    spark.createDataFrame([(str(current),)], "value string").coalesce(1).write.mode("error").text(marker)
    return current


def start_stream_scoring(spark: SparkSession, settings: Settings, once: bool, stats: StreamStats) -> Any:
    """Starts the query over silver.charges' Change Data Feed (inserts only)."""
    from lakehouse.common.tables import columns

    wanted = [f.name for f in columns(CHARGES).fields]
    after = starting_version(spark, settings)
    source = (spark.readStream.format("delta").option("readChangeFeed", "true").option("startingVersion", after)
              .load(table_path(settings, "silver.charges"))
              .where((F.col("_change_type") == F.lit("insert")) & (F.col("_commit_version") > F.lit(after)))
              .select(*wanted, "_commit_timestamp"))
    stream = (source.writeStream.queryName(QUERY_NAME).foreachBatch(StreamBatch(settings, stats))
              .option("checkpointLocation", checkpoint_location(settings)))
    stream = (stream.trigger(availableNow=True) if once
              else stream.trigger(processingTime=settings.features.stream_trigger_interval))
    return stream.start()


def stream_scoring_job(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> JobOutcome:
    """New payments scored (and the streaming features pushed) as they land in silver."""
    stats = StreamStats()

    def run(should_stop: Any) -> StreamStats:
        query = start_stream_scoring(spark, settings, args.once, stats)
        await_query(query, should_stop, QUERY_NAME)
        failure = query.exception()
        if failure is not None:
            raise RuntimeError(f"{QUERY_NAME} query failed: {failure}")
        return stats

    run_streaming(QUERY_NAME, args.once, run)
    return JobOutcome(rows_written=stats.scored, summary={"stream_scoring": stats.as_dict()})
