"""Applying one micro-batch of changes to a silver table: current state (SCD type 1, `apply_cdc`) or
history (SCD type 2, `apply_scd2`).

    changes ─ latest_change_per_key ─ minus keys deleted later ─► MERGE into the table (guarded by sequence)
                                                               └► MERGE deletes into the table's delete markers
    changes ─ one version row per change ─► MERGE insert-if-absent on (key, sequence) ─► re-chain the touched keys

Every write is guarded by the change's sequence (`_seq_lsn`, `_seq_offset`, stored on each row), so a
change that is not newer than what the table holds does nothing: late events, a replayed range of
Kafka offsets and a whole replayed micro-batch all leave the table as it was. A delete removes the row
(hard delete) and records the key with the delete's sequence in a marker table next to it, so that an
older change of that key arriving later (a replay) cannot bring the row back; a newer one (the key
created again) still can.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from lakehouse.common.spark import all_of
from lakehouse.silver.cdc import COMMITTED_AT, OP, SEQ_LSN, SEQ_OFFSET, SEQUENCE, TYPE_ERRORS, latest_change_per_key
from lakehouse.silver.tables import IS_CURRENT, IS_DELETED, VALID_FROM, VALID_TO


def newer(a: str, b: str) -> Column:
    """`a`'s sequence is after `b`'s (aliases of two sides that both have _seq_lsn and _seq_offset)."""
    lsn_a, lsn_b = F.col(f"{a}.{SEQ_LSN}"), F.col(f"{b}.{SEQ_LSN}")
    return (lsn_a > lsn_b) | ((lsn_a == lsn_b) & (F.col(f"{a}.{SEQ_OFFSET}") > F.col(f"{b}.{SEQ_OFFSET}")))


# Columns of the tables this process has ensured: the next batch skips the Delta log reads.
_KNOWN: dict[str, frozenset[str]] = {}
_KNOWN_LOCK = threading.Lock()


def _ensure(spark: SparkSession, path: str, schema: StructType) -> DeltaTable:
    """The Delta table at `path`, created with `schema` and the Change Data Feed on (gold refreshes from
    it) when missing; columns of `schema` it lacks (added upstream) are added first, as nullable columns."""
    wanted = frozenset(schema.fieldNames())
    with _KNOWN_LOCK:
        known = _KNOWN.get(path)
    if known is not None and wanted <= known:
        return DeltaTable.forPath(spark, path)
    (DeltaTable.createIfNotExists(spark).location(path).addColumns(schema)
     .property("delta.enableChangeDataFeed", "true").execute())
    table = DeltaTable.forPath(spark, path)
    have = set(table.toDF().columns)
    missing = [f for f in schema.fields if f.name not in have]
    if missing:
        added = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in missing)
        spark.sql(f"ALTER TABLE delta.`{path}` ADD COLUMNS ({added})")
        table = DeltaTable.forPath(spark, path)
    with _KNOWN_LOCK:
        _KNOWN[path] = frozenset(have | wanted)
    return table


def apply_cdc(changes: DataFrame, target_path: str, markers_path: str, keys: Sequence[str],
              has_deletes: bool = True) -> dict[str, int]:
    """Applies `changes` (rows of `changes_from_bronze`, without type errors: those go to quarantine
    first) to the SCD1 table at `target_path`; returns the MERGE's inserted / updated / deleted rows.

    The table gets the change's columns without `_op` and `_type_errors` (the business columns, then the
    sequence); the markers table at `markers_path` gets `keys` and the sequence. Both are created when
    missing. `has_deletes=False` (the caller knows the batch has no delete) skips the markers' MERGE."""
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
    applicable = (latest.alias("c").join(deleted_later, on=all_of(on_key), how="left")
                  .where(F.col(f"m.{SEQ_LSN}").isNull() | newer("c", "m")).select("c.*"))

    is_delete = F.col(f"s.{OP}") == F.lit("d")
    columns: dict[str, str | Column] = {name: F.col(f"s.{name}") for name in row_schema.fieldNames()}
    match = all_of([F.col(f"t.{k}").eqNullSafe(F.col(f"s.{k}")) for k in keys])
    metrics = _metrics(target.alias("t").merge(applicable.alias("s"), match)
                       .whenMatchedDelete(condition=is_delete & newer("s", "t"))
                       .whenMatchedUpdate(condition=~is_delete & newer("s", "t"), set=columns)
                       .whenNotMatchedInsert(condition=~is_delete, values=columns)
                       .execute())

    deletes = applicable.where(F.col(OP) == F.lit("d")).select(*keys, SEQ_LSN, SEQ_OFFSET)
    if not has_deletes:
        return metrics
    marker_columns: dict[str, str | Column] = {name: F.col(f"s.{name}") for name in (*keys, SEQ_LSN, SEQ_OFFSET)}
    (markers.alias("t").merge(deletes.alias("s"), match)
     .whenMatchedUpdate(condition=newer("s", "t"), set=marker_columns)
     .whenNotMatchedInsert(values=marker_columns)
     .execute())
    return metrics



def _metrics(result: DataFrame) -> dict[str, int]:
    """Rows a MERGE inserted / updated / deleted (the DataFrame `execute()` returns)."""
    [row] = result.collect()
    return {"inserted": int(row["num_inserted_rows"]), "updated": int(row["num_updated_rows"]),
            "deleted": int(row["num_deleted_rows"])}


def apply_scd2(changes: DataFrame, target_path: str, keys: Sequence[str]) -> dict[str, int]:
    """Applies `changes` (rows of `changes_from_bronze`, without type errors) to the SCD2 table at
    `target_path`; returns the versions inserted and the earlier versions closed or re-opened.

    Every change is a version: the row's columns, the sequence, `valid_from` (the commit time),
    `valid_to` (the next version's `valid_from`; NULL for the newest), `is_current` (newest and not
    deleted) and `_is_deleted` (a delete's version carries the deleted row's values). Versions are
    inserted when their (key, sequence) is absent, so replays and duplicates add nothing, and a late
    change lands in its place in the chain; then the chain of every key the batch touched is computed
    again from the stored versions and the rows whose `valid_to` / `is_current` differ are updated."""
    spark = changes.sparkSession
    versions = (changes.drop(TYPE_ERRORS)
                .withColumn(IS_DELETED, F.col(OP) == F.lit("d"))
                .withColumn(VALID_FROM, F.col(COMMITTED_AT))
                .withColumn(VALID_TO, F.lit(None).cast("timestamp"))
                .withColumn(IS_CURRENT, F.lit(False))
                .drop(OP)
                .dropDuplicates([*keys, *SEQUENCE]))
    target = _ensure(spark, target_path, versions.schema)
    version_key = all_of([F.col(f"t.{c}").eqNullSafe(F.col(f"s.{c}")) for c in (*keys, *SEQUENCE)])
    values: dict[str, str | Column] = {name: F.col(f"s.{name}") for name in versions.schema.fieldNames()}
    inserted = _metrics(target.alias("t").merge(versions.alias("s"), version_key)
                        .whenNotMatchedInsert(values=values).execute())["inserted"]

    touched = versions.select(*keys).distinct()
    history = spark.read.format("delta").load(target_path).join(touched, on=list(keys), how="left_semi")
    chain = Window.partitionBy(*keys).orderBy(*[F.col(c) for c in SEQUENCE])
    next_from = F.lead(F.col(VALID_FROM)).over(chain)
    is_newest = F.lead(F.col(SEQ_LSN)).over(chain).isNull()
    rechained = (history.select(*keys, *SEQUENCE, F.col(VALID_TO).alias("__old_to"),
                                F.col(IS_CURRENT).alias("__old_cur"), next_from.alias(VALID_TO),
                                (is_newest & ~F.col(IS_DELETED)).alias(IS_CURRENT))
                 .where(~F.col(VALID_TO).eqNullSafe(F.col("__old_to")) | (F.col(IS_CURRENT) != F.col("__old_cur")))
                 .drop("__old_to", "__old_cur"))
    updated = _metrics(target.alias("t").merge(rechained.alias("s"), version_key)
                       .whenMatchedUpdate(set={VALID_TO: F.col(f"s.{VALID_TO}"), IS_CURRENT: F.col(f"s.{IS_CURRENT}")})
                       .execute())["updated"]
    return {"inserted": inserted, "updated": updated, "deleted": 0}
