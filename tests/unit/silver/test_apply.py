"""silver.apply.apply_cdc on local Delta tables: late, duplicated and replayed changes across batches."""

from __future__ import annotations

from pathlib import Path

from chispa import assert_df_equality
from pyspark.sql import DataFrame

from lakehouse.silver.apply import apply_cdc

SCHEMA = "id long, state string, _op string, _seq_lsn long, _seq_offset long"


def changes(spark, rows: list[tuple[int, str, str, int, int]]) -> DataFrame:
    return spark.createDataFrame(rows, SCHEMA)


def table(spark, path: Path) -> DataFrame:
    return spark.read.format("delta").load(str(path))


def test_changes_apply_in_sequence_order_across_batches_and_replays_change_nothing(spark, tmp_path: Path) -> None:
    target, markers = tmp_path / "charges", tmp_path / "charges__deleted"
    batch_1 = changes(spark, [
        (1, "created", "c", 100, 1), (2, "created", "c", 110, 2), (1, "captured", "u", 120, 3),
        (3, "created", "c", 130, 4), (5, "created", "c", 135, 6), (5, "gone", "d", 136, 7)])
    assert apply_cdc(batch_1, str(target), str(markers), ["id"]) == {"inserted": 3, "updated": 0, "deleted": 0}
    assert_df_equality(table(spark, target), spark.createDataFrame(
        [(1, "captured", 120, 3), (2, "created", 110, 2), (3, "created", 130, 4)],
        "id long, state string, _seq_lsn long, _seq_offset long"), ignore_row_order=True)

    batch_2 = changes(spark, [
        (1, "authorized", "u", 115, 5),     # older than what the table holds: no effect
        (2, "deleted", "d", 140, 8),        # delete
        (2, "created", "c", 110, 2),        # the create replayed after its delete: must not come back
        (3, "refunded", "u", 150, 9),
        (3, "refunded", "u", 150, 9),       # duplicate
        (4, "created", "c", 160, 10),
        (5, "created", "c", 135, 6)])       # replay of a key deleted in batch 1: stays deleted
    assert apply_cdc(batch_2, str(target), str(markers), ["id"]) == {"inserted": 1, "updated": 1, "deleted": 1}
    after_2 = spark.createDataFrame(
        [(1, "captured", 120, 3), (3, "refunded", 150, 9), (4, "created", 160, 10)],
        "id long, state string, _seq_lsn long, _seq_offset long")
    assert_df_equality(table(spark, target), after_2, ignore_row_order=True)

    # the whole of both batches again (a replayed offset range): nothing changes
    assert apply_cdc(batch_1.unionByName(batch_2), str(target), str(markers), ["id"]) == \
        {"inserted": 0, "updated": 0, "deleted": 0}
    assert_df_equality(table(spark, target), after_2, ignore_row_order=True)
    assert_df_equality(table(spark, markers), spark.createDataFrame(
        [(2, 140, 8), (5, 136, 7)], "id long, _seq_lsn long, _seq_offset long"), ignore_row_order=True)

    # the key created again, later than its delete: it is back
    apply_cdc(changes(spark, [(2, "created again", "c", 200, 11)]), str(target), str(markers), ["id"])
    assert sorted(tuple(r) for r in table(spark, target).select("id", "state").collect()) == [
        (1, "captured"), (2, "created again"), (3, "refunded"), (4, "created")]
