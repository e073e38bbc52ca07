"""silver.cdc: typed changes from bronze rows, and the newest change per key (exact rows, chispa)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DateType,
    DecimalType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from lakehouse.silver.cdc import TOAST_PLACEHOLDER, changes_from_bronze, latest_change_per_key

COLUMNS = StructType([
    StructField("charge_id", LongType()),
    StructField("status", StringType()),
    StructField("amount", DecimalType(12, 4)),
    StructField("created_at", TimestampType()),
    StructField("settle_date", DateType()),
    StructField("is_recurring", BooleanType()),
    StructField("note", StringType()),
])
OUT = StructType([*COLUMNS.fields, StructField("_op", StringType()), StructField("_seq_lsn", LongType()),
                  StructField("_seq_offset", LongType()), StructField("_source_partition", IntegerType()),
                  StructField("_committed_at", TimestampType()), StructField("_type_errors", ArrayType(StringType()))])


def row(charge_id: int, status: str, amount: str = "12.5000", note: str | None = "n", **extra: Any) -> dict[str, Any]:
    return {"charge_id": charge_id, "status": status, "amount": amount, "created_at": "2026-11-01T10:00:00.250000Z",
            "settle_date": 20_394, "is_recurring": False, "note": note, **extra}


def bronze(spark, events: list[tuple[int, str | None, dict | None, dict | None, int | None, str | None, bool]]
           ) -> DataFrame:
    """(offset, op, before, after, lsn, parse_error, tombstone) -> bronze-shaped rows (VARIANT images) of
    partition offset % 2, committed at lsn seconds after T0."""
    rows = [(o % 2, o, op, None if b is None else json.dumps(b), None if a is None else json.dumps(a), lsn,
             None if lsn is None else T0_MS + lsn * 1000, err, tomb)
            for o, op, b, a, lsn, err, tomb in events]
    return (spark.createDataFrame(rows, "_partition int, _offset long, op string, b string, a string, source_lsn long, "
                                        "source_ts_ms long, _parse_error string, _is_tombstone boolean")
            .withColumn("before", F.parse_json("b")).withColumn("after", F.parse_json("a")).drop("b", "a"))


T = dt.datetime(2026, 11, 1, 10, 0, 0, 250_000)   # the session runs in UTC
D = dt.date(2025, 11, 2)                           # 20,394 days after 1970-01-01
T0_MS = 1_700_000_000_000                          # 2023-11-14 22:13:20 UTC


def at(lsn: int) -> dt.datetime:
    """The commit time `bronze` gives a change at `lsn`."""
    return dt.datetime(2023, 11, 14, 22, 13, 20) + dt.timedelta(seconds=lsn)


def test_changes_are_typed_from_the_row_image_with_deletes_from_before(spark) -> None:
    events = [
        (0, "r", None, row(1, "captured"), 100, None, False),
        (1, "c", None, row(2, "authorized", amount="0.0001"), 200, None, False),
        (2, "u", row(2, "authorized"), row(2, "captured", note=TOAST_PLACEHOLDER), 300, None, False),
        (3, "d", row(2, "captured", note="old note"), None, 400, None, False),
        (4, None, None, None, None, None, True),                                       # tombstone
        (5, "c", None, row(3, "captured"), 500, "missing source", False),            # malformed: left to bronze
        (6, "t", None, None, 600, None, False),                                        # truncate: no row
        (7, "c", None, row(4, "captured", amount="12,50", settle_date="x"), 700, None, False),   # bad values
        (8, "c", None, {"charge_id": 5, "status": "failed"}, 800, None, False),      # missing columns
        (9, "u", row(5, "failed"), row(5, "failed", risk_score="0.9"), 900, None, False),   # added upstream
    ]
    actual = bronze(spark, events).transform(changes_from_bronze(COLUMNS))
    expected = spark.createDataFrame([
        (1, "captured", Decimal("12.5000"), T, D, False, "n", "r", 100, 0, 0, at(100), []),
        (2, "authorized", Decimal("0.0001"), T, D, False, "n", "c", 200, 1, 1, at(200), []),
        (2, "captured", Decimal("12.5000"), T, D, False, "n", "u", 300, 2, 0, at(300), []),   # TOAST: from before
        (2, "captured", Decimal("12.5000"), T, D, False, "old note", "d", 400, 3, 1, at(400), []),   # from before
        (4, "captured", None, T, None, False, "n", "c", 700, 7, 1, at(700), ["amount", "settle_date"]),
        (5, "failed", None, None, None, None, None, "c", 800, 8, 0, at(800), []),
        (5, "failed", Decimal("12.5000"), T, D, False, "n", "u", 900, 9, 1, at(900), []),
    ], OUT)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_the_newest_change_per_key_wins_whatever_the_arrival_order(spark) -> None:
    changes = spark.createDataFrame([
        # key 1: created, then two updates that arrive out of order, one of them twice (a replayed offset range)
        (1, "created", "c", 100, 10),
        (1, "newest", "u", 300, 12),
        (1, "middle", "u", 200, 11),
        (1, "newest", "u", 300, 12),
        # key 2: created then deleted: the delete is the newest change
        (2, "created", "c", 150, 20),
        (2, "deleted", "d", 250, 21),
        # key 3: two changes at one LSN (one transaction, replayed at later offsets): the offset decides
        (3, "first", "u", 400, 30),
        (3, "second", "u", 400, 31),
        # key 4: only the snapshot row
        (4, "snapshot", "r", 50, 40),
    ], "id long, state string, _op string, _seq_lsn long, _seq_offset long")
    actual = changes.transform(latest_change_per_key(["id"]))
    expected = spark.createDataFrame([
        (1, "newest", "u", 300, 12), (2, "deleted", "d", 250, 21), (3, "second", "u", 400, 31),
        (4, "snapshot", "r", 50, 40),
    ], changes.schema)
    assert_df_equality(actual, expected, ignore_row_order=True)


def test_a_composite_key_is_compared_whole(spark) -> None:
    changes = spark.createDataFrame([
        (1, "2026-11-01", "a", "c", 10, 1), (1, "2026-11-02", "b", "c", 11, 2), (1, "2026-11-01", "c", "u", 12, 3),
    ], "id long, created string, v string, _op string, _seq_lsn long, _seq_offset long")
    actual = changes.transform(latest_change_per_key(["id", "created"]))
    expected = spark.createDataFrame([(1, "2026-11-02", "b", "c", 11, 2), (1, "2026-11-01", "c", "u", 12, 3)],
                                     changes.schema)
    assert_df_equality(actual, expected, ignore_row_order=True)
    with pytest.raises(ValueError, match="at least one key"):
        latest_change_per_key([])
