"""silver.conform: exact money, USD at the rate in effect, regions, IP geolocation, device types (chispa)."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal, localcontext

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.oltp import reference
from lakehouse.silver.conform import (
    MONEY_TYPE,
    USD_TYPE,
    normalize_device_type,
    with_amount_usd,
    with_ip_geo,
    with_money,
    with_region,
)

BIGINT_MAX, BIGINT_MIN = 2**63 - 1, -(2**63)


def currencies(spark) -> DataFrame:
    rows = [(code, name, minor) for code, (name, minor, _) in reference.CURRENCIES.items()]
    rows.append(("CLF", "Unidad de Fomento", 4))                 # ISO 4217's exponent 4
    return spark.createDataFrame(rows, "currency_code string, name string, minor_unit smallint")


def countries(spark) -> DataFrame:
    return spark.createDataFrame(
        [(code, a3, name, region, cur) for code, (a3, name, region, cur, _) in reference.COUNTRIES.items()],
        "country_code string, alpha3 string, name string, region_code string, currency_code string")


def test_money_is_exact_for_exponents_0_to_4_and_null_for_an_unknown_currency(spark) -> None:
    rows = spark.createDataFrame([
        (1, "USD", 1234, 1234), (2, "JPY", 1234, 0), (3, "BHD", 1234, 5), (4, "CLF", 1234, 1),
        (5, "JPY", BIGINT_MAX, BIGINT_MIN), (6, "CLF", BIGINT_MIN, BIGINT_MAX), (7, "XXX", 1234, 1),
        (8, "USD", None, -1), (9, None, 1, 1),
    ], "id int, currency_code string, amount_minor bigint, fee_minor bigint")
    actual = rows.transform(with_money(["amount_minor", "fee_minor"], currencies(spark)))
    D = Decimal
    expected = spark.createDataFrame([
        (1, "USD", 1234, 1234, D("12.3400"), D("12.3400")),
        (2, "JPY", 1234, 0, D("1234.0000"), D("0.0000")),
        (3, "BHD", 1234, 5, D("1.2340"), D("0.0050")),
        (4, "CLF", 1234, 1, D("0.1234"), D("0.0001")),
        (5, "JPY", BIGINT_MAX, BIGINT_MIN, D("9223372036854775807.0000"), D("-9223372036854775808.0000")),
        (6, "CLF", BIGINT_MIN, BIGINT_MAX, D("-922337203685477.5808"), D("922337203685477.5807")),
        (7, "XXX", 1234, 1, None, None),
        (8, "USD", None, -1, None, D("-0.0100")),
        (9, None, 1, 1, None, None),
    ], "id int, currency_code string, amount_minor bigint, fee_minor bigint, amount decimal(23,4), fee decimal(23,4)")
    assert actual.schema["amount"].dataType == MONEY_TYPE
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_money_columns_must_be_named_minor(spark) -> None:
    with pytest.raises(ValueError, match="amount"):
        with_money(["amount"], currencies(spark))


FX = [("EUR", dt.date(2026, 2, 26), "1.0800000000"), ("EUR", dt.date(2026, 2, 27), "1.0850000000"),
      ("JPY", dt.date(2026, 2, 20), "0.0067000000"), ("BHD", dt.date(2026, 2, 1), "5.0000000000"),
      ("GBP", dt.date(2026, 2, 1), "1.2345678901"), ("GBP", dt.date(2026, 3, 1), "1.3000000000")]


def fx(spark) -> DataFrame:
    return spark.createDataFrame([(c, d, Decimal(r)) for c, d, r in FX],
                                 "currency_code string, rate_date date, usd_per_unit decimal(20,10)")


def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)     # naive: the session time zone is UTC


def test_usd_uses_the_rate_in_effect_on_the_utc_day_rounded_half_up(spark) -> None:
    rows = spark.createDataFrame([
        (1, "EUR", 1000, 10, ts("2026-02-27 10:00:00")),          # the day's own rate
        (2, "EUR", 1000, 10, ts("2026-02-26 23:59:59.999999")),   # the last instant of the day before
        (3, "EUR", 1000, 10, ts("2026-03-05 08:00:00")),          # no rate that day: the latest earlier one
        (4, "EUR", 1000, 10, ts("2026-02-25 12:00:00")),          # before the first rate: NULL
        (5, "USD", 1000, 10, ts("2026-02-27 12:00:00")),          # no USD rate at all: NULL
        (6, "JPY", 150, 1, ts("2026-02-21 00:00:00")),            # 1.005 exactly -> 1.01 (half up, not even)
        (7, "BHD", -1, 1, ts("2026-02-02 00:00:00")),             # -0.005 -> -0.01 (ties away from zero)
        (8, "BHD", 1, 0, ts("2026-02-02 00:00:00")),              # 0.005 -> 0.01
        (9, "GBP", BIGINT_MAX, 1, ts("2026-02-28 23:00:00")),     # the largest amount, a 10-decimal rate
        (10, "GBP", 1, 1, ts("2026-03-01 00:00:00")),             # the new rate from its first instant
        (11, "EUR", 1000, 10, None),
    ], "id int, currency_code string, amount_minor bigint, fee_minor bigint, created_at timestamp")
    money = ["amount_minor", "fee_minor"]
    actual = (rows.transform(with_money(money, currencies(spark)))
              .transform(with_amount_usd(fx(spark), "created_at", money))
              .select("id", "amount_usd", "fee_usd"))
    with localcontext() as exact:
        exact.prec = 60
        big = (Decimal(BIGINT_MAX) / 100 * Decimal("1.2345678901")).quantize(Decimal("0.01"), ROUND_HALF_UP)
    assert big == Decimal("113868789551471400.08")    # exact, in Python
    D = Decimal
    expected = spark.createDataFrame([
        (1, D("10.85"), D("0.11")), (2, D("10.80"), D("0.11")), (3, D("10.85"), D("0.11")), (4, None, None),
        (5, None, None), (6, D("1.01"), D("0.01")), (7, D("-0.01"), D("0.01")), (8, D("0.01"), D("0.00")),
        (9, big, D("0.01")), (10, D("0.01"), D("0.01")), (11, None, None),
    ], "id int, amount_usd decimal(25,2), fee_usd decimal(25,2)")
    assert actual.schema["amount_usd"].dataType == USD_TYPE
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_usd_takes_a_date_column_as_the_day(spark) -> None:
    rows = spark.createDataFrame([(1, "EUR", 1000, dt.date(2026, 2, 26)), (2, "EUR", 1000, dt.date(2026, 2, 28))],
                                 "id int, currency_code string, amount_minor bigint, settled_on date")
    actual = (rows.transform(with_money(["amount_minor"], currencies(spark)))
              .transform(with_amount_usd(fx(spark), "settled_on", ["amount_minor"])))
    expected = spark.createDataFrame(
        [(1, "EUR", 1000, dt.date(2026, 2, 26), Decimal("10.0000"), Decimal("10.80")),
         (2, "EUR", 1000, dt.date(2026, 2, 28), Decimal("10.0000"), Decimal("10.85"))],
        "id int, currency_code string, amount_minor bigint, settled_on date, amount decimal(23,4), "
        "amount_usd decimal(25,2)")
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_region_from_the_country_code(spark) -> None:
    rows = spark.createDataFrame([(1, "DE"), (2, "de "), (3, "BH"), (4, "US"), (5, "ZZ"), (6, None)],
                                 "id int, ip_country string")
    actual = rows.transform(with_region(countries(spark), "ip_country", "ip_region"))
    expected = spark.createDataFrame([(1, "DE", "EU"), (2, "de ", "EU"), (3, "BH", "MEA"), (4, "US", "NA"),
                                      (5, "ZZ", None), (6, None, None)], "id int, ip_country string, ip_region string")
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_ip_geo_takes_the_longest_matching_prefix(spark) -> None:
    networks = spark.createDataFrame([
        ("31.10.0.0/16", "DE", "Berlin", "52.52000", "13.40500"),
        ("31.10.5.0/24", "NL", "Amsterdam", "52.36760", "4.90410"),       # inside the /16
        ("31.10.5.200/32", "GB", "London", "51.50740", "-0.12780"),        # one host inside the /24
        ("35.0.0.0/8", "US", "New York", "40.71280", "-74.00600"),
        ("64.0.0.0/6", "US", "San Francisco", "37.77490", "-122.41940"),   # 64.0.0.0 - 67.255.255.255
        ("50.1.2.3/16", "JP", "Tokyo", "35.67620", "139.65030"),           # host bits set: 50.1.0.0/16
        ("2001:db8::/32", "FR", "Paris", "48.85660", "2.35220"),           # IPv6: ignored
    ], "network string, country_code string, city string, latitude string, longitude string")
    rows = spark.createDataFrame([
        (1, "31.10.3.156"), (2, "31.10.3.156"), (3, "31.10.5.7"), (4, "31.10.5.200"), (5, "31.10.5.201"),
        (6, "35.255.0.1"), (7, "66.1.2.3"), (8, "68.0.0.1"), (9, "50.1.200.9"), (10, "8.8.8.8"),
        (11, "2001:db8::1"), (12, "999.1.1.1"), (13, "31.10.3"), (14, None), (15, "31.11.0.1"),
    ], "id int, ip string")
    actual = rows.transform(with_ip_geo(networks, "ip", countries(spark)))
    expected = spark.createDataFrame([
        (1, "31.10.3.156", "DE", "Berlin", "EU"), (2, "31.10.3.156", "DE", "Berlin", "EU"),
        (3, "31.10.5.7", "NL", "Amsterdam", "EU"), (4, "31.10.5.200", "GB", "London", "EU"),
        (5, "31.10.5.201", "NL", "Amsterdam", "EU"), (6, "35.255.0.1", "US", "New York", "NA"),
        (7, "66.1.2.3", "US", "San Francisco", "NA"), (8, "68.0.0.1", None, None, None),
        (9, "50.1.200.9", "JP", "Tokyo", "APAC"), (10, "8.8.8.8", None, None, None),
        (11, "2001:db8::1", None, None, None), (12, "999.1.1.1", None, None, None),
        (13, "31.10.3", None, None, None), (14, None, None, None, None), (15, "31.11.0.1", None, None, None),
    ], "id int, ip string, ip_country string, ip_city string, ip_region string")
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_ip_geo_agrees_with_the_simulators_networks(spark) -> None:
    networks = spark.createDataFrame(reference.ip_networks(),
                                     "network string, country_code string, city string, latitude string, "
                                     "longitude string")
    rows = spark.createDataFrame([("35.10.3.156",), ("40.10.236.94",), ("44.11.0.1",)], "ip string")
    actual = rows.transform(with_ip_geo(networks, "ip", countries(spark), prefix="geo_"))
    expected = spark.createDataFrame([("35.10.3.156", "DE", "Berlin", "EU"), ("40.10.236.94", "MX", "Mexico City",
                                                                               "LATAM"),
                                      ("44.11.0.1", "US", "San Francisco", "NA")],
                                     "ip string, geo_country string, geo_city string, geo_region string")
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


DEVICES = [
    ("mobile", "mobile"), ("Desktop", "desktop"), (" TABLET ", "tablet"), ("pos", "pos"), ("unknown", "unknown"),
    ("phone", "mobile"), ("Smartphone", "mobile"), ("iOS", "mobile"), ("Android", "mobile"), ("mobile_app", "mobile"),
    ("iPadOS", "tablet"), ("laptop", "desktop"), ("PC", "desktop"), ("Windows", "desktop"), ("macOS", "desktop"),
    ("Linux", "desktop"), ("ChromeOS", "desktop"), ("terminal", "pos"), ("card_present", "pos"),
    ("point-of-sale", "pos"), ("in-store", "pos"), ("kiosk", "pos"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.4 Mobile/15E148 Safari/604.1", "mobile"),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile "
     "Safari/537.36", "mobile"),
    ("Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
     "Mobile/15E148 Safari/604.1", "tablet"),
    ("Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 "
     "Safari/537.36", "tablet"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 "
     "Safari/537.36", "desktop"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
     "Safari/605.1.15", "desktop"),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0", "desktop"),
    ("Mozilla/5.0 (Windows Phone 10.0; Android 6.0.1; Microsoft; Lumia 950) Mobile Edge/15.14977", "mobile"),
    ("web", "unknown"), ("smart-tv", "unknown"), ("", "unknown"), ("   ", "unknown"), (None, "unknown"),
]


def test_device_types_are_normalized(spark) -> None:
    rows = spark.createDataFrame([(i, raw) for i, (raw, _) in enumerate(DEVICES)], "id int, raw string")
    actual = rows.select("id", "raw", normalize_device_type(F.col("raw")).alias("device_type"))
    expected = spark.createDataFrame([(i, raw, want) for i, (raw, want) in enumerate(DEVICES)],
                                     "id int, raw string, device_type string")
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)
