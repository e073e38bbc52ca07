"""lakehouse.features.build on small inputs whose windows are worked out by hand (exact rows)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

from pyspark.sql import DataFrame, SparkSession

from lakehouse.common.tables import columns
from lakehouse.features import build
from lakehouse.features.jobs import CHARGES

T = dt.datetime


def charges(spark: SparkSession, rows: list[dict[str, object]]) -> DataFrame:
    schema = columns(CHARGES)
    return spark.createDataFrame([tuple(r.get(f.name) for f in schema.fields) for r in rows], schema)


def pay(charge_id: int, at: T, customer: int = 1, card: int = 10, merchant: int = 100, usd: str = "10.00",
        status: str = "captured", ip: str | None = "ipa", device: str = "mobile", country: str = "DE",
        terminal: int | None = None, lat: str = "50.00000", lon: str = "8.00000") -> dict[str, object]:
    return {"charge_id": charge_id, "created_at": at, "customer_id": customer, "payment_method_id": card,
            "merchant_id": merchant, "terminal_id": terminal, "status": status, "amount_usd": D(usd),
            "device_type": device, "ip_country": country, "ip_address_pseudo": ip, "ip_latitude": D(lat),
            "ip_longitude": D(lon)}


def by_charge(df: DataFrame) -> dict[int, dict[str, object]]:
    return {r["charge_id"]: r.asDict() for r in df.collect()}


def test_payment_windows_are_half_open_and_include_the_payment(spark: SparkSession) -> None:
    rows = [pay(1, T(2026, 3, 1, 10, 0)),
            pay(2, T(2026, 3, 1, 10, 30), usd="5.50", status="failed", merchant=101),
            pay(3, T(2026, 3, 1, 11, 0)),                       # exactly 1 h after 1: 1 is out of its 1 h window
            pay(4, T(2026, 3, 2, 10, 30), ip=None),             # 24 h after 2: 2 is out of the 24 h window
            pay(5, T(2026, 3, 1, 10, 45), customer=2, card=20, ip="ipa", device="desktop")]
    out = by_charge(charges(spark, rows).transform(build.payments_for_features).transform(build.build_payment_windows))
    assert (out[1]["cust_txn_1h"], out[2]["cust_txn_1h"], out[3]["cust_txn_1h"]) == (1, 2, 2)
    assert out[3]["cust_amount_usd_1h"] == 15.5 and out[3]["cust_amount_usd_24h"] == 25.5
    assert (out[4]["cust_txn_24h"], out[4]["cust_amount_usd_24h"]) == (2, 20.0)     # 3 and 4
    assert out[4]["cust_txn_7d"] == 4 and out[4]["cust_txn_30d"] == 4
    assert out[3]["card_declines_24h"] == 1 and out[4]["card_declines_24h"] == 0
    assert out[3]["card_merchants_24h"] == 2 and out[4]["card_merchants_24h"] == 1
    assert out[4]["card_merchants_7d"] == 2
    # the IP: customers 1 and 2 used ipa; payment 4 had no IP, so no IP features
    assert (out[5]["ip_txn_24h"], out[5]["ip_customers_24h"], out[5]["ip_cards_24h"]) == (3, 2, 2)
    assert (out[4]["ip_txn_24h"], out[4]["cust_ip_txn_30d"]) == (None, None)
    assert out[3]["cust_ip_txn_30d"] == 3 and out[5]["cust_ip_txn_30d"] == 1
    assert out[5]["cust_device_txn_30d"] == 1 and out[4]["cust_device_txn_30d"] == 4
    assert out[2]["event_ts"] == T(2026, 3, 1, 10, 30) == out[2]["created_ts"]


def test_customer_profile_is_known_from_the_next_midnight(spark: SparkSession) -> None:
    rows = [pay(1, T(2026, 3, 1, 9), country="DE", lat="50.00000", lon="8.00000"),
            pay(2, T(2026, 3, 1, 20), country="FR", lat="48.00000", lon="2.00000"),
            pay(3, T(2026, 3, 3, 9), country="FR", lat="48.00000", lon="2.00000")]
    out = charges(spark, rows).transform(build.payments_for_features).transform(build.build_customer_profile)
    got = sorted((r["event_ts"], r["usual_country"], r["usual_lat"], r["usual_lon"], r["profile_payments"])
                 for r in out.collect())
    # day 1: DE and FR once each -> the smaller code; day 3: FR twice
    assert got == [(T(2026, 3, 2), "DE", 49.0, 5.0, 2), (T(2026, 3, 4), "FR", 48.66667, 4.0, 3)]


def test_merchant_risk_counts_chargebacks_from_the_day_they_were_opened(spark: SparkSession) -> None:
    payments = charges(spark, [pay(1, T(2026, 3, 1, 9)), pay(2, T(2026, 3, 1, 10)), pay(3, T(2026, 3, 3, 9))]
                       ).transform(build.payments_for_features)
    refunds = spark.createDataFrame([(2, T(2026, 3, 2, 12))], "charge_id bigint, created_at timestamp")
    disputes = spark.createDataFrame([(1, T(2026, 3, 3, 8))], "charge_id bigint, opened_at timestamp")
    out = {r["event_ts"]: r.asDict() for r in build.build_merchant_daily(payments, refunds, disputes).collect()}
    assert sorted(out) == [T(2026, 3, d) for d in (1, 2, 3, 4)]
    assert (out[T(2026, 3, 1)]["merchant_txn_30d"], out[T(2026, 3, 1)]["merchant_dispute_rate_30d"]) == (0, 0.0)
    assert (out[T(2026, 3, 2)]["merchant_txn_30d"], out[T(2026, 3, 2)]["merchant_amount_usd_30d"]) == (2, 20.0)
    assert out[T(2026, 3, 3)]["merchant_refund_rate_30d"] == 0.5
    assert out[T(2026, 3, 3)]["merchant_disputes_30d"] == 0        # opened on the 3rd: known at the 4th
    assert (out[T(2026, 3, 4)]["merchant_disputes_30d"], out[T(2026, 3, 4)]["merchant_txn_30d"]) == (1, 3)
    assert abs(out[T(2026, 3, 4)]["merchant_dispute_rate_30d"] - 1 / 3) < 1e-12


def test_terminal_risk_counts_distinct_cards_of_in_person_payments(spark: SparkSession) -> None:
    payments = charges(spark, [pay(1, T(2026, 3, 1, 9), terminal=5, card=10),
                               pay(2, T(2026, 3, 1, 10), terminal=5, card=11),
                               pay(3, T(2026, 3, 2, 9), terminal=5, card=10),
                               pay(4, T(2026, 3, 2, 9), terminal=None, card=12)]).transform(build.payments_for_features)
    disputes = spark.createDataFrame([(2, T(2026, 3, 1, 23))], "charge_id bigint, opened_at timestamp")
    out = {r["event_ts"]: r.asDict() for r in build.build_terminal_daily(payments, disputes).collect()}
    assert sorted(out) == [T(2026, 3, 1), T(2026, 3, 2), T(2026, 3, 3)]
    assert (out[T(2026, 3, 2)]["terminal_txn_30d"], out[T(2026, 3, 2)]["terminal_cards_30d"]) == (2, 2)
    assert (out[T(2026, 3, 3)]["terminal_txn_30d"], out[T(2026, 3, 3)]["terminal_cards_30d"]) == (3, 2)
    assert out[T(2026, 3, 2)]["terminal_disputes_30d"] == 1
    assert out[T(2026, 3, 3)]["terminal_dispute_rate_30d"] == 1 / 3
