"""silver.apply on local Delta tables (SCD1 apply_cdc, SCD2 apply_scd2): late, duplicated and replayed changes
across batches, and a column added upstream."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from chispa import assert_df_equality
from pyspark.sql import DataFrame

from lakehouse.silver.apply import apply_cdc, apply_scd2

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


def test_a_column_added_upstream_is_added_to_the_table(spark, tmp_path: Path) -> None:
    target, markers = tmp_path / "merchants", tmp_path / "merchants__deleted"
    apply_cdc(changes(spark, [(1, "created", "c", 100, 1)]), str(target), str(markers), ["id"])
    wider = spark.createDataFrame([(1, "renamed", "u", 200, 2, "https://m.example"), (2, "created", "c", 210, 3, None)],
                                  f"{SCHEMA}, website string")
    assert apply_cdc(wider, str(target), str(markers), ["id"]) == {"inserted": 1, "updated": 1, "deleted": 0}
    assert_df_equality(table(spark, target), spark.createDataFrame(
        [(1, "renamed", 200, 2, "https://m.example"), (2, "created", 210, 3, None)],
        "id long, state string, _seq_lsn long, _seq_offset long, website string"), ignore_row_order=True)


SCD2_IN = "id long, state string, _op string, _seq_lsn long, _seq_offset long, _committed_at timestamp"
SCD2_OUT = ("id long, state string, _seq_lsn long, _seq_offset long, _committed_at timestamp, _is_deleted boolean, "
            "valid_from timestamp, valid_to timestamp, is_current boolean")


def t(minute: int) -> dt.datetime:
    return dt.datetime(2026, 11, 1, 10, minute)


def test_scd2_keeps_one_version_per_change_chained_by_sequence_across_batches(spark, tmp_path: Path) -> None:
    target = str(tmp_path / "customers")
    batch_1 = spark.createDataFrame([
        (1, "v1", "r", 100, 1, t(0)), (1, "v2", "u", 120, 3, t(2)),      # two versions in one batch
        (2, "v1", "c", 110, 2, t(1)),
        (3, "v1", "c", 130, 4, t(3)), (3, "v1", "d", 140, 5, t(4)),      # created and deleted
    ], SCD2_IN)
    # re-chained: key 1 v1 (closed) and v2 (current), key 2 (current), key 3 v1 (closed by its delete)
    assert apply_scd2(batch_1, target, ["id"]) == {"inserted": 5, "updated": 4, "deleted": 0}
    batch_2 = spark.createDataFrame([
        (1, "v4", "u", 160, 8, t(6)),
        (1, "v3", "u", 150, 7, t(5)),       # late: lands between v2 and v4
        (1, "v2", "u", 120, 3, t(2)),       # replayed: nothing
        (2, "v1", "c", 110, 2, t(1)),       # replayed: nothing
    ], SCD2_IN)
    # re-chained: v2 (closed by v3), v3 (closed by v4), v4 (current)
    assert apply_scd2(batch_2, target, ["id"]) == {"inserted": 2, "updated": 3, "deleted": 0}
    expected = spark.createDataFrame([
        (1, "v1", 100, 1, t(0), False, t(0), t(2), False),
        (1, "v2", 120, 3, t(2), False, t(2), t(5), False),
        (1, "v3", 150, 7, t(5), False, t(5), t(6), False),
        (1, "v4", 160, 8, t(6), False, t(6), None, True),
        (2, "v1", 110, 2, t(1), False, t(1), None, True),
        (3, "v1", 130, 4, t(3), False, t(3), t(4), False),
        (3, "v1", 140, 5, t(4), True, t(4), None, False),                # deleted: no current version
    ], SCD2_OUT)
    assert_df_equality(table(spark, target), expected, ignore_row_order=True, ignore_nullable=True)
    # both batches again: nothing inserted, nothing re-chained
    assert apply_scd2(batch_1.unionByName(batch_2), target, ["id"]) == {"inserted": 0, "updated": 0, "deleted": 0}
    assert_df_equality(table(spark, target), expected, ignore_row_order=True, ignore_nullable=True)
