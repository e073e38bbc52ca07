"""Tables of silver's data quality: one quarantine table per silver table and `silver.dq_results`.

- `silver.quarantine_<table>`: the rows kept out of `silver.<table>` (failed an `error` expectation, or
  could not be read at all: type errors of CDC parsing, malformed events), each as its JSON record with
  the reasons and its Kafka coordinates. Every producer of rejects writes this one shape
  (`quarantine.to_quarantine`).
- `silver.dq_results`: one row per micro-batch per expectation, `error` and `warn` alike.

Both are append-only: a replayed micro-batch adds nothing (see quarantine.py).
"""

from __future__ import annotations

from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from lakehouse.common.tables import TableSpec, register
from lakehouse.quality.suites import SUITES

LAYER = "silver"
QUARANTINE_PREFIX = "quarantine_"
DQ_RESULTS_NAME = "dq_results"

QUARANTINE_SCHEMA = StructType([
    StructField("source_table", StringType(), False),      # e.g. bronze.cdc_payments_charges
    StructField("source_partition", IntegerType(), True),  # Kafka partition (NULL when the source has none)
    StructField("source_offset", LongType(), True),        # Kafka offset
    StructField("record", StringType(), False),            # the row as JSON (binary columns base64)
    StructField("reasons", ArrayType(StringType(), True), False),
    StructField("_batch_id", LongType(), False),
    StructField("_quarantined_at", TimestampType(), False),
])

DQ_RESULTS_SCHEMA = StructType([
    StructField("table", StringType(), False),             # silver table name, e.g. charges
    StructField("batch_id", LongType(), False),
    StructField("expectation", StringType(), False),       # the check's name, as in quarantine reasons
    StructField("expectation_type", StringType(), False),  # the Great Expectations type
    StructField("columns", ArrayType(StringType(), True), False),
    StructField("severity", StringType(), False),          # error (quarantines) | warn (recorded only)
    StructField("success", BooleanType(), False),
    StructField("element_count", LongType(), False),       # rows checked: the batch's c/u/r changes
    StructField("unexpected_count", LongType(), False),
    StructField("unexpected_percent", DoubleType(), True), # of the non-NULL values (GE's definition)
    StructField("run_at", TimestampType(), False),
])

_PROPERTIES = {"delta.appendOnly": "true"}


def quarantine_table(table: str) -> TableSpec:
    """The quarantine table of silver table `table`: `silver.quarantine_<table>`."""
    return TableSpec(
        layer=LAYER, name=f"{QUARANTINE_PREFIX}{table}", schema=QUARANTINE_SCHEMA,
        comment=f"Rows kept out of silver.{table}: the record as JSON, the failed expectations or read errors, "
                "the Kafka coordinates and the micro-batch. Append-only; a replayed batch adds nothing.",
        properties=_PROPERTIES)


DQ_RESULTS = TableSpec(
    layer=LAYER, name=DQ_RESULTS_NAME, schema=DQ_RESULTS_SCHEMA,
    comment="Great Expectations results of silver: one row per micro-batch per table per expectation, with its "
            "severity and counts. Append-only; a replayed batch adds nothing.",
    properties=_PROPERTIES)

QUARANTINE_TABLES = tuple(quarantine_table(name) for name in sorted(SUITES))

register(DQ_RESULTS, *QUARANTINE_TABLES)
