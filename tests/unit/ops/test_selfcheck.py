from __future__ import annotations

from decimal import Decimal

from chispa import assert_df_equality

from lakehouse.ops.selfcheck import amount_minor, build_selfcheck_rows
from lakehouse.ops.tables import SELFCHECK


def test_build_selfcheck_rows_gives_exact_rows(spark) -> None:
    actual = spark.range(3).transform(build_selfcheck_rows(seed=5, run_id="r1"))
    # id*7919 + 5 mod 100000: 5, 7924, 15843 minor units
    expected = spark.createDataFrame(
        [("r1", 0, 0, 5, Decimal("0.05")),
         ("r1", 1, 1, 7924, Decimal("79.24")),
         ("r1", 2, 2, 15843, Decimal("158.43"))],
        SELFCHECK.schema,
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_amount_wraps_at_modulus_and_buckets_cycle(spark) -> None:
    rows = spark.range(12, 14).transform(build_selfcheck_rows(seed=0, run_id="r")).collect()
    assert [(r["id"], r["bucket"], r["amount_minor"]) for r in rows] == [(12, 4, 95028), (13, 5, 2947)]
    assert amount_minor(13, 0) == 2947  # 13*7919 = 102947 -> wraps past 100000
