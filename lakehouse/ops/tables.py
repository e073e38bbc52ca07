"""Tables of the `ops` layer: what the platform records about itself."""

from __future__ import annotations

from pyspark.sql.types import (
    DecimalType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from lakehouse.common.tables import TableSpec, register

JOB_RUNS = TableSpec(
    layer="ops",
    name="job_runs",
    comment="One row per job run: which job, where, when, outcome and rows written.",
    schema=StructType([
        StructField("run_id", StringType(), False),
        StructField("job", StringType(), False),
        StructField("env", StringType(), False),
        StructField("master", StringType(), False),
        StructField("started_at", TimestampType(), False),
        StructField("finished_at", TimestampType(), False),
        StructField("status", StringType(), False),
        StructField("rows_written", LongType(), False),
        StructField("detail", StringType(), True),
    ]),
    properties={"delta.appendOnly": "true"},
)

SELFCHECK = TableSpec(
    layer="ops",
    name="selfcheck",
    comment="Deterministic rows written and read back by the runtime self-check (one batch per run).",
    schema=StructType([
        StructField("run_id", StringType(), False),
        StructField("id", LongType(), False),
        StructField("bucket", IntegerType(), False),
        StructField("amount_minor", LongType(), False),
        StructField("amount", DecimalType(18, 2), False),
    ]),
    partition_by=("bucket",),
)

GOLD_REFRESH = TableSpec(
    layer="ops",
    name="gold_refresh",
    comment="Gold's watermarks: per silver table, the version gold has been refreshed up to (replaced at "
            "every refresh; lakehouse.gold.refresh).",
    schema=StructType([
        StructField("source", StringType(), False),
        StructField("version", LongType(), False),
        StructField("refreshed_at", TimestampType(), False),
    ]),
)

register(JOB_RUNS, SELFCHECK, GOLD_REFRESH)
