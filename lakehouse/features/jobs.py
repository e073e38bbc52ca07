"""The features job (`lakehouse run features`, `jobs/features.py`): silver -> feature tables -> Feast
registry -> Redis, then the online / offline skew check.

    build_feature_tables   recomputes gold.feat_* from silver (one Delta commit per table)
    apply_definitions      registers features/*.py (idempotent)
    materialize            Feast's incremental materialization, per view, up to now
    skew_check             a sample of entities: online values against the point-in-time offline ones
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.common.config import Settings
from lakehouse.common.jobs import JobOutcome
from lakehouse.common.tables import overwrite, table_path
from lakehouse.features import build
from lakehouse.features import tables as t

log = logging.getLogger(__name__)


def read_silver_table(spark: SparkSession, settings: Settings, name: str, columns: str) -> DataFrame:
    """`silver.<name>`'s `columns` (a DDL list), or no rows of that shape when silver has no such table yet."""
    from delta.tables import DeltaTable

    from lakehouse.common.tables import columns as schema_of

    schema = schema_of(columns)
    path = table_path(settings, f"silver.{name}")
    if not DeltaTable.isDeltaTable(spark, path):
        return spark.createDataFrame([], schema)
    return spark.read.format("delta").load(path).select(
        *[F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])


CHARGES = ("charge_id bigint, created_at timestamp, customer_id bigint, payment_method_id bigint, merchant_id bigint, "
           "terminal_id bigint, status string, amount_usd decimal(25,2), device_type string, ip_country string, "
           "ip_address_pseudo string, ip_latitude decimal(8,5), ip_longitude decimal(8,5)")


def feature_payments(spark: SparkSession, settings: Settings) -> DataFrame:
    return read_silver_table(spark, settings, "charges", CHARGES).transform(build.payments_for_features)


def build_feature_tables(spark: SparkSession, settings: Settings,
                         progress: Callable[[str], None] = log.info) -> dict[str, int]:
    """Recomputes the batch feature tables from silver's current state; rows per table."""
    payments = feature_payments(spark, settings).cache()
    refunds = read_silver_table(spark, settings, "refunds", "charge_id bigint, created_at timestamp")
    disputes = read_silver_table(spark, settings, "disputes", "charge_id bigint, opened_at timestamp")
    jobs = [(t.PAYMENT_WINDOWS, lambda: build.build_payment_windows(payments)),
            (t.CUSTOMER_PROFILE, lambda: build.build_customer_profile(payments)),
            (t.MERCHANT_DAILY, lambda: build.build_merchant_daily(payments, refunds, disputes)),
            (t.TERMINAL_DAILY, lambda: build.build_terminal_daily(payments, disputes))]
    rows: dict[str, int] = {}
    try:
        for spec, make in jobs:
            started = time.monotonic()
            overwrite(make(), settings, spec)
            rows[spec.full_name] = spark.read.format("delta").load(table_path(settings, spec.full_name)).count()
            progress(f"features: {spec.full_name}: {rows[spec.full_name]:,} rows in {time.monotonic() - started:.1f}s")
        for spec in t.STREAM_FEATURE_TABLES:     # Feast reads their schema at apply time
            from lakehouse.common.tables import ensure_table

            ensure_table(spark, settings, spec)
    finally:
        payments.unpersist()
    return rows


def historical_features(store: Any, entities: DataFrame, features: list[str] | str) -> DataFrame:
    """Feast's point-in-time join of `entities` (the join keys and `event_timestamp`) with `features` (a
    feature service name or `view:feature` references), as a Spark DataFrame."""
    # Feast runs its SQL on the thread's active session and registers the entity frame as a temp view in
    # the frame's own session: after a streaming query's foreachBatch the active one can be the batch's
    # clone, where that view does not exist. Make them the same.
    from lakehouse.common.spark import activate
    from lakehouse.features.store import feast_call

    activate(entities.sparkSession)
    with feast_call():
        refs = store.get_feature_service(features) if isinstance(features, str) else features
        return store.get_historical_features(entity_df=entities, features=refs).to_spark_df()


def _differs(online: Any, offline: Any, tolerance: float) -> bool:
    if online is None or offline is None:
        return (online is None) != (offline is None or (isinstance(offline, float) and math.isnan(offline)))
    if isinstance(online, float | int) and isinstance(offline, float | int):
        return abs(float(online) - float(offline)) > tolerance * max(1.0, abs(float(offline)))
    return bool(online != offline)


def compare_stores(spark: SparkSession, store: Any, keys: list[dict[str, Any]], at: dt.datetime,
                   tolerance: float) -> list[tuple[dict[str, Any], dict[str, Any], list[str]]]:
    """Per entity key set (`lakehouse.features.online.entity_keys`): its online values (Redis), its
    point-in-time offline values as of `at`, and the features whose two values differ beyond `tolerance`
    (relative)."""
    from lakehouse.features.online import KEY_COLUMNS, online_features
    from lakehouse.features.store import FEATURE_SERVICE

    naive_at = at.astimezone(dt.UTC).replace(tzinfo=None)
    entity_df = spark.createDataFrame([(*[k[c] for c in KEY_COLUMNS], naive_at) for k in keys],
                                      [*KEY_COLUMNS, "event_timestamp"])
    offline = [r.asDict() for r in historical_features(store, entity_df, FEATURE_SERVICE).collect()]
    by_key = {tuple(r[c] for c in KEY_COLUMNS): r for r in offline}
    out = []
    for k, on in zip(keys, online_features(store, keys, [at] * len(keys)), strict=True):
        off = by_key[tuple(k[c] for c in KEY_COLUMNS)]
        out.append((on, off, [name for name, value in on.items() if _differs(value, off.get(name), tolerance)]))
    return out


def skew_check(spark: SparkSession, settings: Settings, store: Any, at: dt.datetime,
               sample: int | None = None) -> dict[str, Any]:
    """Online against offline for the entity keys of the `sample` latest payments, as of `at`: per
    feature, the values that differ beyond `features.skew_tolerance` (relative)."""
    from lakehouse.features.online import entity_keys

    n = sample or settings.features.skew_sample
    latest = [r.asDict() for r in (feature_payments(spark, settings).orderBy(F.col("created_at").desc())
                                   .limit(n).collect())]
    if not latest:
        return {"entities": 0, "values": 0, "differing": 0, "by_feature": {}}
    keys = [entity_keys(p) for p in latest]
    differing: dict[str, int] = {}
    examples: list[str] = []
    values = 0
    for k, (on, off, names) in zip(keys, compare_stores(spark, store, keys, at, settings.features.skew_tolerance),
                                   strict=True):
        values += len(on)
        for name in names:
            differing[name] = differing.get(name, 0) + 1
            if len(examples) < 5:
                examples.append(f"{name} for {k}: online {on[name]!r}, offline {off.get(name)!r}")
    return {"entities": len(keys), "values": values, "differing": sum(differing.values()),
            "by_feature": differing, "examples": examples}


def refresh_features(spark: SparkSession, settings: Settings, end: dt.datetime | None = None,
                     progress: Callable[[str], None] = log.info, skew: bool = True) -> dict[str, Any]:
    """Feature tables, registry, materialization up to `end` (default now) and the skew check."""
    from lakehouse.features.store import apply_definitions, feature_store, materialize

    end = end or dt.datetime.now(dt.UTC)
    out: dict[str, Any] = {"rows": build_feature_tables(spark, settings, progress)}
    store = feature_store(settings)
    out["registered"] = len(apply_definitions(store))
    out["materialize_s"] = materialize(store, end, progress)
    if skew:
        out["skew"] = skew_check(spark, settings, store, end)
        progress(f"features: skew check: {out['skew']['differing']} of {out['skew']['values']} values differ "
                 f"online vs offline ({out['skew']['entities']} payments' entities)")
    return out


def features_job(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> JobOutcome:
    """silver -> feature tables -> Feast (registry, Redis). The job runs once whatever `--once` says: the
    streaming features are `lakehouse run stream_scoring`'s."""
    result = refresh_features(spark, settings, progress=lambda m: print(m, flush=True))
    ok = result.get("skew", {}).get("differing", 0) == 0
    return JobOutcome(rows_written=sum(result["rows"].values()), summary={"features": result}, ok=ok)
