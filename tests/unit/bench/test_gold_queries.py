"""bench/gold_queries.py and bench/_silver_snapshot.py: the pure parts (world sizes, query parameters, answer
comparison, silver twins of gold tables, snapshot rows shaped as changes)."""

from __future__ import annotations

import datetime as dt
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql.types import (
    ArrayType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
import gold_queries as gq
from _silver_snapshot import SnapshotPosition, snapshot_changes


def test_sizes_for_scales_customers_to_the_payments_and_merchants_to_the_customers() -> None:
    assert gq.sizes_for(1_040_000, 100) == gq.Sizes(days=100, customers=10_000, merchants=100)
    assert gq.sizes_for(1_040, 10) == gq.Sizes(days=10, customers=100, merchants=60)     # at least 60 merchants
    assert gq.sizes_for(1_040_000, 100).expected_charges == 1_040_000
    with pytest.raises(ValueError, match="positive"):
        gq.sizes_for(0, 365)


def test_query_params_take_the_last_complete_month_and_the_last_90_days() -> None:
    params = gq.query_params(dt.date(2026, 11, 25))
    assert params["revenue_daily"] == {"start_date": "2026-10-01", "end_date": "2026-10-31"}
    assert params["top_merchants"] == {"start_date": "2026-08-27", "end_date": "2026-11-24", "top": "20"}
    assert params["product_performance"] == {"month": "2026-10-01"}
    assert gq.query_params(dt.date(2026, 3, 1))["net_revenue_usd"] == {"start_date": "2026-02-01",
                                                                      "end_date": "2026-02-28"}


def test_a_ratio_is_below_the_floor_when_silver_over_the_ratio_is_faster_than_the_floor() -> None:
    # silver 0.745 s, floor 0.082 s: 10x needs gold <= 0.0745 s, under the floor
    assert gq.below_floor(0.745, 0.082) is True
    # silver 2.643 s: 10x needs 0.2643 s, above the floor
    assert gq.below_floor(2.643, 0.082) is False
    assert gq.below_floor(0.82, 0.082) is False          # exactly 10x the floor is still reachable
    assert gq.below_floor(0.30, 0.082, ratio=3.0) is False


def test_answers_compare_by_value_whatever_the_row_order_and_decimal_scale() -> None:
    gold = gq.answer(["k", "v"], [(2, Decimal("1.50")), (1, None), (3, [1, 2])])
    silver = gq.answer(["k", "v"], [(3, (1, 2)), (1, None), (2, Decimal("1.5"))])
    assert gq.differences(gold, silver) == []
    other = gq.answer(["k", "v"], [(2, Decimal("1.51")), (1, None), (3, [1, 2])])
    assert gq.differences(gold, other) == ["1 rows only in gold, e.g. [(2, Decimal('1.5'))]",
                                           "1 rows only in silver, e.g. [(2, Decimal('1.51'))]"]
    assert gq.differences(gold, gq.answer(["k", "w"], [])) == ["columns: gold ['k', 'v'], silver ['k', 'w']"]


def test_silver_sql_replaces_gold_tables_in_statements_recursively_not_in_comments() -> None:
    views = {"daily": "SELECT a FROM silver.x", "monthly": "SELECT a FROM gold.daily"}
    sql = "-- name: q reads gold.monthly\nSELECT a FROM gold.monthly m JOIN gold.daily d ON d.a = m.a"
    assert gq.silver_sql(sql, views) == ("-- name: q reads gold.monthly\nSELECT a FROM (SELECT a FROM (SELECT a FROM "
                                         "silver.x)) m JOIN (SELECT a FROM silver.x) d ON d.a = m.a")
    with pytest.raises(KeyError, match=r"gold.other has no silver twin"):
        gq.silver_sql("SELECT * FROM gold.other", views)
    with pytest.raises(ValueError, match="cycle: a -> b -> a"):
        gq.silver_sql("SELECT * FROM gold.a", {"a": "SELECT * FROM gold.b", "b": "SELECT * FROM gold.a"})


def test_silver_views_leave_their_comment_lines_out(tmp_path: Path) -> None:
    (tmp_path / "dim_x.sql").write_text("-- gold.dim_x from silver\nSELECT *\n  -- why\nFROM silver.x\n")
    assert gq.silver_views(tmp_path) == {"dim_x": "SELECT *\nFROM silver.x"}


def test_snapshot_changes_gives_the_columns_changes_from_bronze_gives(spark) -> None:
    at = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
    rows = spark.createDataFrame([(1, "a"), (2, None)], "charge_id bigint, status string")
    schema = StructType([
        StructField("charge_id", LongType()), StructField("status", StringType()),
        StructField("_op", StringType(), False), StructField("_seq_lsn", LongType()),
        StructField("_seq_offset", LongType()), StructField("_source_partition", IntegerType()),
        StructField("_committed_at", TimestampType()),
        StructField("_type_errors", ArrayType(StringType(), False), False)])
    expected = spark.createDataFrame([(1, "a", "r", 7_000, 0, -1, at, []), (2, None, "r", 7_000, 0, -1, at, [])],
                                     schema)
    actual = rows.transform(snapshot_changes(SnapshotPosition(lsn=7_000, at=at)))
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_every_query_with_a_twin_reads_only_gold_tables_that_have_one() -> None:
    """A new gold table read by the pack needs its silver twin, or the benchmark stops at phase 4."""
    from lakehouse.gold.querypack import load_query

    views = gq.silver_views()
    for name in gq.QUERIES:
        if name not in gq.NO_TWIN:
            assert "gold." not in "\n".join(line for line in gq.silver_sql(load_query(name).sql, views).splitlines()
                                            if not line.lstrip().startswith("--")), name
