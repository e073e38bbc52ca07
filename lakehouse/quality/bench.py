"""Timing of `validate_batch` on a charges-like micro-batch: `python -m lakehouse.quality.bench`.

Builds a deterministic batch (charges columns, one row in a thousand breaking an `error` check, one in
five hundred pointing at a missing merchant), caches it as a micro-batch would be, then times
`validate_batch` (warm: after two untimed runs) and its parts. Prints one JSON document; with `--out`,
also writes it there (e.g. bench/results/quality_validate.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.quality.suites import suite
from lakehouse.quality.validate import QualityParams, validate_batch

CURRENCIES = frozenset({"USD", "EUR", "GBP", "JPY"})
_STATUSES = ("pending", "authorized", "captured", "failed", "canceled")


def _pick(values: tuple[str, ...], index: Column) -> Column:
    return F.element_at(F.array(*[F.lit(v) for v in values]), (index % len(values) + 1).cast("int"))


def charges_like(spark: SparkSession, rows: int, merchants: int = 1000, seed: int = 0) -> DataFrame:
    """`rows` charge changes (silver charges columns plus `_op`, `_seq_lsn`, `_seq_offset`, `_source_partition`).

    Row i: currency XXX when i % 1000 == 1 (an `error`), merchant `merchants + 1` (missing: a `warn`) when
    i % 500 == 7, a delete when i % 100 == 99. Deterministic for a seed."""
    i = F.col("id")
    amount = (F.abs(F.xxhash64(i, F.lit(seed))) % 100_000 + 1).cast("bigint")
    captured = F.when(i % 3 == 0, amount).otherwise(F.lit(0)).cast("bigint")
    return spark.range(rows).select(
        i.alias("charge_id"),
        F.timestamp_seconds(F.lit(1_767_225_600) + i).alias("created_at"),
        F.when(i % 500 == 7, F.lit(merchants + 1)).otherwise(i % merchants).cast("bigint").alias("merchant_id"),
        F.lit(None).cast("bigint").alias("terminal_id"),
        (i % 50_000).alias("customer_id"),
        (i % 60_000).alias("payment_method_id"),
        amount.alias("amount_minor"),
        F.when(i % 1000 == 1, F.lit("XXX")).otherwise(_pick(("USD", "EUR", "GBP", "JPY"), i)).alias("currency_code"),
        F.when(i % 3 == 0, F.lit("captured")).otherwise(_pick(_STATUSES, i)).alias("status"),
        captured.alias("captured_amount_minor"),
        F.lit(0).cast("bigint").alias("refunded_amount_minor"),
        F.lit(None).cast("string").alias("failure_code"),
        F.lit("mobile").alias("device_type"),
        (F.abs(F.xxhash64(i)) % 10_000 / 10_000).cast("decimal(5,4)").alias("risk_score"),
        F.lit(None).cast("decimal(7,3)").alias("anomaly_score"),
        F.when(i % 100 == 99, F.lit("d")).otherwise(F.lit("c")).alias("_op"),
        (i * 10).alias("_seq_lsn"),
        i.alias("_seq_offset"),
        (i % 3).cast("int").alias("_source_partition"),
    )


def parents_for(spark: SparkSession, merchants: int = 1000) -> dict[str, DataFrame]:
    return {"merchants": spark.range(merchants).withColumnRenamed("id", "merchant_id"),
            "customers": spark.range(50_000).withColumnRenamed("id", "customer_id"),
            "payment_methods": spark.range(60_000).withColumnRenamed("id", "payment_method_id")}


def _trivial_job_s(spark: SparkSession) -> float:
    """Wall time of one tiny Spark job right now: the machine's per-job overhead under its current load."""
    started = time.monotonic()
    spark.range(1).count()
    return time.monotonic() - started


def time_validation(spark: SparkSession, rows: int, repeats: int = 3, ge_result_format: str = "BASIC"
                    ) -> dict[str, Any]:
    """Wall times of validate_batch on a cached charges-like batch of `rows` (median of `repeats`, after two
    warm-up runs), split into the row pass (lookups, predicates, counts: one action) and GE, with the
    Spark jobs each run starts and the wall time of a trivial job just before (the machine's load)."""
    batch = charges_like(spark, rows).cache()
    batch.count()
    params = QualityParams(CURRENCIES, parents_for(spark), ge_result_format=ge_result_format)
    warm_up_s = []
    for warm in range(2):                                           # warm: GE context, suite, JIT
        started = time.monotonic()
        validate_batch(batch, "charges", -1 - warm, params).release()
        warm_up_s.append(round(time.monotonic() - started, 3))
    tracker = spark.sparkContext.statusTracker()
    runs, outcome = [], {}
    for b in range(repeats):
        group = f"quality-bench-{rows}-{ge_result_format}-{b}"
        spark.sparkContext.setJobGroup(group, group)
        baseline = _trivial_job_s(spark)
        started = time.monotonic()
        v = validate_batch(batch, "charges", b + 1, params)
        total = time.monotonic() - started
        runs.append({"total_s": round(total, 3), **v.timings, "spark_jobs": len(tracker.getJobIdsForGroup(group)) - 1,
                     "trivial_job_s": round(baseline, 3), "load_average_1m": round(os.getloadavg()[0], 1)})
        outcome = {"rows_in": v.rows_in, "checked": v.checked_count, "quarantined": v.quarantined_count,
                   "warn_failures": sum(o.unexpected_count for o in v.outcomes if o.check.severity == "warn")}
        v.release()
    spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
    batch.unpersist()
    median = sorted(runs, key=lambda r: r["total_s"])[len(runs) // 2]
    return {"rows": rows, "ge_result_format": ge_result_format, "expectations": len(suite("charges").checks),
            "median": median, "runs": runs, "warm_up_s": warm_up_s, **outcome}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env", default="local")
    parser.add_argument("--rows", type=int, nargs="+", default=[50, 100_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ge-result-format", nargs="+", default=["BASIC", "BOOLEAN_ONLY"])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    from lakehouse.common.config import load_settings
    from lakehouse.common.spark import get_spark

    settings = load_settings(args.env)
    spark = get_spark(settings, app_name="quality-bench")
    report = {"machine": {"cpus": spark.sparkContext.defaultParallelism, "python": platform.python_version(),
                          "master": spark.sparkContext.master},
              "batches": [time_validation(spark, n, args.repeats, fmt) for n in args.rows
                          for fmt in args.ge_result_format]}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
