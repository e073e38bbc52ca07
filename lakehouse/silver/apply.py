"""Applying one micro-batch of changes to a current-state (SCD type 1) silver table.

    changes ─ latest_change_per_key ─ minus keys deleted later ─► MERGE into the table (guarded by sequence)
                                                               └► MERGE deletes into the table's delete markers

Every write is guarded by the change's sequence (`_seq_lsn`, `_seq_offset`, stored on each row), so a
change that is not newer than what the table holds does nothing: late events, a replayed range of
Kafka offsets and a whole replayed micro-batch all leave the table as it was. A delete removes the row
(hard delete) and records the key with the delete's sequence in a marker table next to it, so that an
older change of that key arriving later (a replay) cannot bring the row back; a newer one (the key
created again) still can.
"""

from __future__ import annotations

from collections.abc import Sequence

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from lakehouse.silver.cdc import OP, SEQ_LSN, SEQ_OFFSET, TYPE_ERRORS, latest_change_per_key


def newer(a: str, b: str) -> Column:
    """`a`'s sequence is after `b`'s (aliases of two sides that both have _seq_lsn and _seq_offset)."""
    lsn_a, lsn_b = F.col(f"{a}.{SEQ_LSN}"), F.col(f"{b}.{SEQ_LSN}")
    return (lsn_a > lsn_b) | ((lsn_a == lsn_b) & (F.col(f"{a}.{SEQ_OFFSET}") > F.col(f"{b}.{SEQ_OFFSET}")))


def _ensure(spark: SparkSession, path: str, schema: StructType) -> DeltaTable:
    DeltaTable.createIfNotExists(spark).location(path).addColumns(schema).execute()
    return DeltaTable.forPath(spark, path)


def apply_cdc(changes: DataFrame, target_path: str, markers_path: str, keys: Sequence[str]) -> dict[str, int]:
    """Applies `changes` (rows of `changes_from_bronze`, without type errors: those go to quarantine
    first) to the SCD1 table at `target_path`; returns the MERGE's inserted / updated / deleted rows.

    The table gets the change's columns without `_op` and `_type_errors` (the business columns, then the
    sequence); the markers table at `markers_path` gets `keys` and the sequence. Both are created when
    missing."""
    spark = changes.sparkSession
    if TYPE_ERRORS in changes.columns:
        changes = changes.drop(TYPE_ERRORS)
    latest = changes.transform(latest_change_per_key(keys))
    row_schema = latest.drop(OP).schema
    target = _ensure(spark, target_path, row_schema)
    markers = _ensure(spark, markers_path, latest.select(*keys, SEQ_LSN, SEQ_OFFSET).schema)

    # A change older than a delete already applied to its key would re-create a deleted row: dropped.
    on_key = [F.col(f"c.{k}").eqNullSafe(F.col(f"m.{k}")) for k in keys]
    deleted_later = markers.toDF().alias("m")
    applicable = (latest.alias("c").join(deleted_later, on=_all(on_key), how="left")
                  .where(F.col(f"m.{SEQ_LSN}").isNull() | newer("c", "m")).select("c.*"))

    is_delete = F.col(f"s.{OP}") == F.lit("d")
    columns: dict[str, str | Column] = {name: F.col(f"s.{name}") for name in row_schema.fieldNames()}
    match = _all([F.col(f"t.{k}").eqNullSafe(F.col(f"s.{k}")) for k in keys])
    before = _version(target)
    (target.alias("t").merge(applicable.alias("s"), match)
     .whenMatchedDelete(condition=is_delete & newer("s", "t"))
     .whenMatchedUpdate(condition=~is_delete & newer("s", "t"), set=columns)
     .whenNotMatchedInsert(condition=~is_delete, values=columns)
     .execute())
    metrics = _merge_metrics(target, before)

    deletes = applicable.where(F.col(OP) == F.lit("d")).select(*keys, SEQ_LSN, SEQ_OFFSET)
    marker_columns: dict[str, str | Column] = {name: F.col(f"s.{name}") for name in (*keys, SEQ_LSN, SEQ_OFFSET)}
    (markers.alias("t").merge(deletes.alias("s"), match)
     .whenMatchedUpdate(condition=newer("s", "t"), set=marker_columns)
     .whenNotMatchedInsert(values=marker_columns)
     .execute())
    return metrics


def _all(conditions: list[Column]) -> Column:
    out = conditions[0]
    for c in conditions[1:]:
        out = out & c
    return out


def _version(table: DeltaTable) -> int:
    [row] = table.history(1).select("version").collect()
    return int(row["version"])


def _merge_metrics(table: DeltaTable, version_before: int) -> dict[str, int]:
    """Rows the MERGE committed after `version_before` inserted / updated / deleted (0 when it committed
    nothing)."""
    [row] = table.history(1).select("version", "operationMetrics").collect()
    m = (row["operationMetrics"] or {}) if row["version"] > version_before else {}
    return {"inserted": int(m.get("numTargetRowsInserted", 0)), "updated": int(m.get("numTargetRowsUpdated", 0)),
            "deleted": int(m.get("numTargetRowsDeleted", 0))}
