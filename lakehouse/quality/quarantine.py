"""The quarantine shape, and the writes of quarantined rows and of `silver.dq_results` (the I/O of quality).

Every producer of rejects (failed expectations here, type errors of CDC parsing, malformed events)
builds `tables.QUARANTINE_SCHEMA` rows with `to_quarantine` and writes them with `write_quarantine`.

Both writes are idempotent for a replayed micro-batch (a streaming batch re-run after a crash):
- quarantine: an insert-only MERGE keyed by (source_table, source_partition, source_offset, record,
  _batch_id), so a row already quarantined for that batch is not added again. Only batches with
  rejects write at all; in practice that is rare, so the MERGE's cost is paid rarely.
- dq_results: every batch writes, so it is a plain append of the (table, batch_id, expectation) rows
  the table does not hold yet (one small read filtered on batch_id, then a blind append, which never
  conflicts with other tables' appends). Union several tables' `Validation.results` to write one
  micro-batch with one commit.
"""

from __future__ import annotations

import threading

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, IntegerType, LongType, StringType

from lakehouse.common.config import Settings
from lakehouse.common.tables import TableSpec, ensure_table, table_path
from lakehouse.quality.tables import DQ_RESULTS, DQ_RESULTS_SCHEMA, QUARANTINE_SCHEMA, quarantine_table

# Where `to_quarantine` finds the Kafka coordinates when not told: a silver change, then a bronze row.
PARTITION_COLUMNS = ("_source_partition", "_partition")
OFFSET_COLUMNS = ("_seq_offset", "_offset")
# NULLs written out: the record says which fields were NULL rather than leaving them out.
_JSON_OPTIONS = {"ignoreNullFields": "false"}
_QUARANTINE_KEY = ("source_table", "source_partition", "source_offset", "record", "_batch_id")

_ensured: set[str] = set()
_ensure_lock = threading.Lock()


def to_quarantine(rows: DataFrame, reasons_col: str, source_table: str, *, batch_id: int | None = None,
                  partition_col: str | None = None, offset_col: str | None = None) -> DataFrame:
    """Rows kept out of silver -> QUARANTINE_SCHEMA.

    Needs `reasons_col` (array<string> of reasons, or one string reason such as bronze's
    `_parse_error`). `record` is every other column as JSON (`to_json(struct(*))`, NULL fields kept,
    binary as base64, VARIANT as JSON). `source_partition` / `source_offset` come from `partition_col` / `offset_col`,
    else from the first of `_source_partition`, `_partition` / `_seq_offset`, `_offset` present, else
    NULL. `_batch_id` is `batch_id` (NULL until `write_quarantine` sets it), `_quarantined_at` now.
    """
    if reasons_col not in rows.columns:
        raise ValueError(f"to_quarantine: no reasons column {reasons_col!r} in {rows.columns}")
    reasons_type = rows.schema[reasons_col].dataType
    if isinstance(reasons_type, StringType):
        reasons = F.array(F.col(reasons_col))
    elif isinstance(reasons_type, ArrayType) and isinstance(reasons_type.elementType, StringType):
        reasons = F.col(reasons_col)
    else:
        raise ValueError(f"to_quarantine: {reasons_col} must be a string or array<string>, "
                         f"got {reasons_type.simpleString()}")
    record_columns = [c for c in rows.columns if c != reasons_col]
    return rows.select(
        F.lit(source_table).alias("source_table"),
        _coordinate(rows, partition_col, PARTITION_COLUMNS, IntegerType()).alias("source_partition"),
        _coordinate(rows, offset_col, OFFSET_COLUMNS, LongType()).alias("source_offset"),
        F.to_json(F.struct(*[F.col(c) for c in record_columns]), _JSON_OPTIONS).alias("record"),
        F.filter(F.coalesce(reasons, F.array().cast("array<string>")), lambda r: r.isNotNull()).alias("reasons"),
        F.lit(batch_id).cast("bigint").alias("_batch_id"),
        F.current_timestamp().alias("_quarantined_at"),
    )


def _coordinate(rows: DataFrame, explicit: str | None, candidates: tuple[str, ...],
                data_type: IntegerType | LongType) -> Column:
    if explicit is not None:
        if explicit not in rows.columns:
            raise ValueError(f"to_quarantine: no column {explicit!r} in {rows.columns}")
        return F.col(explicit).cast(data_type)
    for name in candidates:
        if name in rows.columns:
            return F.col(name).cast(data_type)
    return F.lit(None).cast(data_type)


def _ensure(spark: SparkSession, settings: Settings, table: TableSpec) -> str:
    """Creates the table once per process (concurrent first writes of two threads must not race)."""
    path = table_path(settings, table.full_name)
    with _ensure_lock:
        if path not in _ensured:
            ensure_table(spark, settings, table)
            _ensured.add(path)
    return path


def _conform(df: DataFrame, what: str, expected_fields: list[str]) -> None:
    if df.columns != expected_fields:
        raise ValueError(f"{what}: columns {df.columns} differ from the table's {expected_fields}")


def write_quarantine(df: DataFrame, settings: Settings, table: str, batch_id: int) -> int:
    """Appends quarantine rows (QUARANTINE_SCHEMA, e.g. `Validation.quarantined` or `to_quarantine`'s)
    to `silver.quarantine_<table>`, with `_batch_id` = `batch_id`; returns the rows added.

    Idempotent: rows already there for this batch (same source, coordinates and record) are not added
    again. No rows, no commit."""
    _conform(df, f"write_quarantine({table})", QUARANTINE_SCHEMA.fieldNames())
    rows = df.withColumn("_batch_id", F.lit(batch_id).cast("bigint"))
    if rows.isEmpty():
        return 0
    spark = rows.sparkSession
    path = _ensure(spark, settings, quarantine_table(table))
    target = DeltaTable.forPath(spark, path)
    same = [F.col(f"t.{k}").eqNullSafe(F.col(f"s.{k}")) for k in _QUARANTINE_KEY]
    condition = F.col("t._batch_id") == F.lit(batch_id)   # a literal: Delta skips other batches' files
    for c in same:
        condition = condition & c
    before = _version(target)
    (target.alias("t").merge(rows.alias("s"), condition)
     .whenNotMatchedInsertAll()
     .execute())
    return _inserted(target, before, "numTargetRowsInserted")


def write_dq_results(results: DataFrame, settings: Settings) -> int:
    """Appends `Validation.results` rows (DQ_RESULTS_SCHEMA; one or several tables and batches) to
    `silver.dq_results`; returns the rows added.

    Idempotent: a (table, batch_id, expectation) already in the table is not added again."""
    _conform(results, "write_dq_results", DQ_RESULTS_SCHEMA.fieldNames())
    spark = results.sparkSession
    path = _ensure(spark, settings, DQ_RESULTS)
    keys = ["table", "batch_id", "expectation"]
    batch_ids = sorted({int(r["batch_id"]) for r in results.select("batch_id").distinct().collect()})
    if not batch_ids:
        return 0
    stored = (spark.read.format("delta").load(path)
              .where(F.col("batch_id").isin(*batch_ids)).select(*keys))
    new = results.join(stored, on=keys, how="left_anti").cache()
    try:
        n = new.count()
        if n:
            new.select(*DQ_RESULTS_SCHEMA.fieldNames()).write.format("delta").mode("append").save(path)
        return n
    finally:
        new.unpersist()


def _version(table: DeltaTable) -> int:
    [row] = table.history(1).select("version").collect()
    return int(row["version"])


def _inserted(table: DeltaTable, version_before: int, metric: str) -> int:
    [row] = table.history(1).select("version", "operationMetrics").collect()
    metrics = (row["operationMetrics"] or {}) if row["version"] > version_before else {}
    return int(metrics.get(metric, 0))
