"""gold.dims: calendar, time of day, SCD2 versions with surrogate keys and effective ranges, the unknown
members, and the lookup of the version in effect (exact rows)."""

from __future__ import annotations

import datetime as dt

from chispa import assert_df_equality
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.gold.dims import (
    BEGINNING,
    build_dim_date,
    build_dim_merchant,
    build_dim_time,
    with_member,
    with_scd2_key,
)
from lakehouse.gold.sources import SILVER_INPUTS
from lakehouse.gold.tables import UNKNOWN_COUNTRY, UNKNOWN_SK

T = dt.datetime


def test_dim_date_has_every_day_between_the_first_and_the_last(spark) -> None:
    dates = spark.createDataFrame([(dt.date(2026, 3, 2),), (dt.date(2026, 2, 27),), (dt.date(2026, 3, 1),)],
                                  "date date")
    got = build_dim_date(dates).select("date_key", "date", "week_start", "iso_week", "day_of_week", "day_name",
                                       "is_weekend", "month_start", "quarter")
    expected = spark.createDataFrame([
        (20260227, dt.date(2026, 2, 27), dt.date(2026, 2, 23), 9, 5, "Friday", False, dt.date(2026, 2, 1), 1),
        (20260228, dt.date(2026, 2, 28), dt.date(2026, 2, 23), 9, 6, "Saturday", True, dt.date(2026, 2, 1), 1),
        (20260301, dt.date(2026, 3, 1), dt.date(2026, 2, 23), 9, 7, "Sunday", True, dt.date(2026, 3, 1), 1),
        (20260302, dt.date(2026, 3, 2), dt.date(2026, 3, 2), 10, 1, "Monday", False, dt.date(2026, 3, 1), 1)],
        got.schema)
    assert_df_equality(got, expected, ignore_row_order=True)
    assert build_dim_date(dates.limit(0)).count() == 0


def test_dim_time_has_every_minute(spark) -> None:
    got = build_dim_time(spark)
    assert got.count() == 1440
    picked = got.where(F.col("time_key").isin(0, 559, 600, 1759, 2359)).orderBy("time_key").collect()
    assert [tuple(r) for r in picked] == [(0, 0, 0, "night"), (559, 5, 59, "night"), (600, 6, 0, "morning"),
                                          (1759, 17, 59, "afternoon"), (2359, 23, 59, "evening")]


def merchants(spark, rows: list[tuple[int, str, str, T, T | None, bool, bool, int, int]]) -> DataFrame:
    """(merchant_id, status, country, valid_from, valid_to, is_current, _is_deleted, lsn, offset) versions."""
    full = [(m, f"Shop {m}", status, country, None, "5411", "EUR", T(2026, 1, 1), vf, vt, cur, deleted, lsn, off)
            for m, status, country, vf, vt, cur, deleted, lsn, off in rows]
    return spark.createDataFrame(full, SILVER_INPUTS["merchants"])


def sk(spark, merchant_id: int, lsn: int, offset: int) -> int:
    [row] = spark.range(1).select(F.xxhash64(F.lit(merchant_id).cast("bigint"), F.lit(lsn).cast("bigint"),
                                             F.lit(offset).cast("bigint"))).collect()
    return int(row[0])


def test_dim_merchant_versions_surrogate_keys_and_the_unknown_member(spark) -> None:
    history = merchants(spark, [
        (1, "active", "DE", T(2026, 5, 1), T(2026, 6, 1), False, False, 100, 1),
        (1, "suspended", "AT", T(2026, 6, 1), None, True, False, 200, 2),
        (2, "active", "FR", T(2026, 5, 3), T(2026, 7, 1), False, False, 110, 3),
        (2, "active", "FR", T(2026, 7, 1), None, False, True, 300, 4)])          # deleted on 1 July
    categories = spark.createDataFrame([("5411", "Grocery", "low")], SILVER_INPUTS["ref_merchant_categories"])
    got = build_dim_merchant(history, categories).select(
        "merchant_sk", "merchant_id", "status", "country_code", "mcc_description", "effective_from", "effective_to",
        "is_current")
    expected = spark.createDataFrame([
        (sk(spark, 1, 100, 1), 1, "active", "DE", "Grocery", BEGINNING, T(2026, 6, 1), False),
        (sk(spark, 1, 200, 2), 1, "suspended", "AT", "Grocery", T(2026, 6, 1), None, True),
        (sk(spark, 2, 110, 3), 2, "active", "FR", "Grocery", BEGINNING, T(2026, 7, 1), False),
        (UNKNOWN_SK, None, "unknown", UNKNOWN_COUNTRY, "unknown", BEGINNING, None, True)], got.schema)
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_a_fact_gets_the_version_in_effect_and_the_unknown_member_until_its_member_arrives(spark) -> None:
    categories = spark.createDataFrame([], SILVER_INPUTS["ref_merchant_categories"])
    before = build_dim_merchant(merchants(spark, [
        (1, "active", "DE", T(2026, 5, 1), T(2026, 6, 1), False, False, 100, 1),
        (1, "suspended", "AT", T(2026, 6, 1), None, True, False, 200, 2)]), categories)
    facts = spark.createDataFrame([
        (10, 1, T(2026, 1, 15)),      # before the first capture: history loaded later -> the first version
        (11, 1, T(2026, 5, 31, 23, 59)),
        (12, 1, T(2026, 6, 1)),       # at the second version's start -> the second
        (13, 2, T(2026, 6, 2))],      # merchant 2 is not in the dimension yet
        "charge_id long, merchant_id long, created_at timestamp")
    first, second = sk(spark, 1, 100, 1), sk(spark, 1, 200, 2)
    keys = facts.transform(with_scd2_key(before, "merchant_id", "merchant_sk", "created_at")).select(
        "charge_id", "merchant_sk")
    assert sorted(tuple(r) for r in keys.collect()) == [(10, first), (11, first), (12, second), (13, UNKNOWN_SK)]

    # merchant 2 arrives: the next build points the fact at it
    after = build_dim_merchant(merchants(spark, [
        (1, "active", "DE", T(2026, 5, 1), T(2026, 6, 1), False, False, 100, 1),
        (1, "suspended", "AT", T(2026, 6, 1), None, True, False, 200, 2),
        (2, "active", "FR", T(2026, 6, 5), None, True, False, 400, 5)]), categories)
    fixed = facts.transform(with_scd2_key(after, "merchant_id", "merchant_sk", "created_at"))
    assert fixed.where(F.col("charge_id") == 13).first()["merchant_sk"] == sk(spark, 2, 400, 5)


def test_with_member_keeps_known_keys_and_maps_the_rest_to_the_unknown_member(spark) -> None:
    geo = spark.createDataFrame([("DE",), ("FR",), (UNKNOWN_COUNTRY,)], "country_code string")
    rows = spark.createDataFrame([(1, "DE"), (2, None), (3, "XX")], "id long, ip_country string")
    got = rows.transform(with_member(geo, "country_code", "country_code", UNKNOWN_COUNTRY, "ip_country"))
    assert sorted((r["id"], r["country_code"]) for r in got.collect()) == [(1, "DE"), (2, "ZZ"), (3, "ZZ")]
