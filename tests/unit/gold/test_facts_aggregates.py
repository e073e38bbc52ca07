"""gold.facts and gold.aggregates on small inputs whose answers are worked out by hand (exact rows)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.gold import aggregates as agg
from lakehouse.gold.dims import (
    build_dim_customer,
    build_dim_geography,
    build_dim_merchant,
    build_dim_payment_method,
    build_dim_plan,
)
from lakehouse.gold.facts import Dimensions, build_fact_payments, build_fact_subscription_events
from lakehouse.gold.sources import SILVER_INPUTS
from lakehouse.gold.tables import UNKNOWN_SK

T = dt.datetime


def silver(spark: SparkSession, name: str, rows: list[dict[str, object]]) -> DataFrame:
    """Rows of a silver input with only the given columns set (the others NULL)."""
    schema = SILVER_INPUTS[name]
    return spark.createDataFrame([tuple(r.get(f.name) for f in schema.fields) for r in rows], schema)


def dimensions(spark: SparkSession) -> Dimensions:
    scd2 = {"valid_from": T(2026, 1, 1), "valid_to": None, "is_current": True, "_is_deleted": False,
            "_seq_lsn": 1, "_seq_offset": 1}
    merchant = build_dim_merchant(silver(spark, "merchants", [{"merchant_id": 1, "country_code": "DE", "mcc": "5411",
                                                               **scd2}]),
                                  silver(spark, "ref_merchant_categories", [{"mcc": "5411"}]))
    customer = build_dim_customer(silver(spark, "customers", [{"customer_id": 7, **scd2}]))
    method = build_dim_payment_method(
        silver(spark, "payment_methods", [{"payment_method_id": 70, "customer_id": 7, "kind": "card", **scd2}]),
        silver(spark, "cards", [{"payment_method_id": 70, "brand": "visa", "issuing_country": "US"}]))
    geography = build_dim_geography(silver(spark, "ref_countries", [{"country_code": "DE"}]),
                                    silver(spark, "ref_regions", []))
    plan = build_dim_plan(silver(spark, "plans", [{"plan_id": 3, "product_id": 30, "amount": D("120.0000"),
                                                   "billing_interval": "year", "currency_code": "EUR"}]),
                          silver(spark, "products", [{"product_id": 30, "merchant_id": 1}]))
    return Dimensions(merchant, customer, method, geography, plan)


def test_fact_payments_labels_disputes_and_unknown_members(spark) -> None:
    d = dimensions(spark)
    charges = silver(spark, "charges", [
        {"charge_id": 1, "created_at": T(2026, 3, 4, 10, 5), "merchant_id": 1, "customer_id": 7,
         "payment_method_id": 70, "ip_country": "DE", "status": "captured", "amount_usd": D("10.00")},
        {"charge_id": 2, "created_at": T(2026, 3, 4, 23, 59), "merchant_id": 9, "customer_id": 8,
         "payment_method_id": 80, "ip_country": None, "status": "failed", "amount_usd": D("2.50")}])
    labels = silver(spark, "fraud_ground_truth", [{"charge_id": 1, "is_fraud": True, "scenario": "ato"}])
    disputes = silver(spark, "disputes", [{"dispute_id": 5, "charge_id": 1}, {"dispute_id": 6, "charge_id": 1}])
    got = build_fact_payments(charges, labels, disputes, d).select(
        "charge_id", "date_key", "time_key", "merchant_sk", "customer_sk", "payment_method_key", "payment_method_kind",
        "bin_country", "country_code", "is_fraud", "fraud_scenario", "disputed")
    m1 = d.merchant.where("merchant_id = 1").first()["merchant_sk"]
    c7 = d.customer.where("customer_id = 7").first()["customer_sk"]
    expected = spark.createDataFrame([
        (1, 20260304, 1005, m1, c7, 70, "card", "US", "DE", True, "ato", True),
        (2, 20260304, 2359, UNKNOWN_SK, UNKNOWN_SK, UNKNOWN_SK, None, None, "ZZ", None, None, False)], got.schema)
    assert_df_equality(got, expected, ignore_row_order=True)


def test_subscription_events_start_pay_and_cancel(spark) -> None:
    d = dimensions(spark)
    subs = silver(spark, "subscriptions", [
        {"subscription_id": 1, "customer_id": 7, "plan_id": 3, "created_at": T(2026, 1, 10),
         "canceled_at": T(2026, 3, 1)}])
    invoices = silver(spark, "invoices", [
        {"invoice_id": 11, "subscription_id": 1, "status": "paid", "paid_at": T(2026, 1, 10, 0, 1),
         "currency_code": "EUR", "amount": D("120.0000"), "amount_usd": D("130.00")},
        {"invoice_id": 12, "subscription_id": 1, "status": "open", "currency_code": "EUR"}])
    got = build_fact_subscription_events(subs, invoices, d).select(
        "subscription_id", "event_type", "event_at", "date_key", "merchant_id", "invoice_id", "amount_usd")
    expected = spark.createDataFrame([
        (1, "started", T(2026, 1, 10), 20260110, 1, None, None),
        (1, "invoice_paid", T(2026, 1, 10, 0, 1), 20260110, 1, 11, D("130.00")),
        (1, "canceled", T(2026, 3, 1), 20260301, 1, None, None)], got.schema)
    assert_df_equality(got, expected, ignore_row_order=True)


def test_revenue_daily_splits_the_ledger_and_rolls_up(spark) -> None:
    d = dimensions(spark)
    m1 = d.merchant.where("merchant_id = 1").first()["merchant_sk"]
    ledger = spark.createDataFrame([
        (m1, 1, "charge", T(2026, 3, 2, 9), D("100.00"), D("3.00"), D("97.00"), D("90.0000")),
        (m1, 2, "charge", T(2026, 3, 2, 18), D("50.00"), D("1.50"), D("48.50"), D("45.0000")),
        (m1, 1, "refund", T(2026, 3, 2, 20), D("-20.00"), D("0.00"), D("-20.00"), D("-18.0000")),
        (m1, 2, "dispute", T(2026, 3, 3, 8), D("-50.00"), D("15.00"), D("-65.00"), D("-58.5000")),
        (m1, 2, "dispute_won", T(2026, 3, 9, 8), D("50.00"), D("0.00"), D("50.00"), D("45.0000"))],
        "merchant_sk long, charge_id long, kind string, created_at timestamp, amount_usd decimal(25,2), "
        "fee_usd decimal(25,2), net_usd decimal(25,2), net decimal(23,4)").withColumns(
        {"merchant_id": F.lit(1).cast("long"), "currency_code": F.lit("EUR")})
    payments = spark.createDataFrame([(1, "card")], "charge_id long, payment_method_kind string")
    daily = agg.build_agg_revenue_daily(ledger, d.merchant, payments)
    rows = sorted(tuple(r) for r in daily.select("date", "payment_method_kind", "payments", "gross_usd", "refunds_usd",
                                                 "disputes_usd", "fees_usd", "net_usd", "net").collect())
    assert rows == [
        (dt.date(2026, 3, 2), "card", 1, D("100.00"), D("20.00"), D("0.00"), D("3.00"), D("77.00"), D("72.0000")),
        (dt.date(2026, 3, 2), "unknown", 1, D("50.00"), D("0.00"), D("0.00"), D("1.50"), D("48.50"), D("45.0000")),
        (dt.date(2026, 3, 3), "unknown", 0, D("0.00"), D("0.00"), D("50.00"), D("15.00"), D("-65.00"),
         D("-58.5000")),
        (dt.date(2026, 3, 9), "unknown", 0, D("0.00"), D("0.00"), D("-50.00"), D("0.00"), D("50.00"), D("45.0000"))]
    assert {r["country_code"] for r in daily.collect()} == {"DE"}
    weekly = sorted(tuple(r) for r in agg.roll_up_revenue(daily, "week").groupBy("week_start").agg(
        F.sum("payments"), F.sum("net_usd")).collect())
    assert weekly == [(dt.date(2026, 3, 2), 2, D("60.50")), (dt.date(2026, 3, 9), 0, D("50.00"))]
    monthly = agg.roll_up_revenue(daily, "month").agg(F.sum("net_usd"), F.sum("disputes_usd")).first()
    assert tuple(monthly) == (D("110.50"), D("0.00"))


def test_rfm_scores_break_ties_by_customer_and_name_segments(spark) -> None:
    rows = []
    # customer c: (days before the last day, payments, USD each)
    for c, (ago, n, usd) in {1: (0, 5, "10.00"), 2: (0, 4, "10.00"), 3: (10, 1, "5.00"), 4: (20, 6, "1.00"),
                             5: (30, 1, "1.00")}.items():
        rows += [(c, T(2026, 4, 30) - dt.timedelta(days=ago), "captured", D(usd)) for _ in range(n)]
    rows.append((5, T(2026, 4, 30), "failed", D("99.00")))        # not captured: does not count
    payments = spark.createDataFrame(rows, "customer_id long, created_at timestamp, status string, "
                                           "captured_amount_usd decimal(25,2)")
    monthly = agg.build_agg_customer_monthly(payments)
    got = agg.build_agg_customer_rfm(monthly).select("customer_id", "recency_days", "frequency", "monetary_usd",
                                                     "r_score", "f_score", "m_score", "segment")
    expected = spark.createDataFrame([
        (1, 0, 5, D("50.00"), 4, 4, 5, "champions"),
        (2, 0, 4, D("40.00"), 5, 3, 4, "loyal"),
        (3, 10, 1, D("5.00"), 3, 1, 2, "needs_attention"),
        (4, 20, 6, D("6.00"), 2, 5, 3, "at_risk"),
        (5, 30, 1, D("1.00"), 1, 2, 1, "hibernating")], got.schema)
    assert_df_equality(got, expected, ignore_row_order=True)


def test_customer_monthly_counts_captured_payments_per_month(spark) -> None:
    payments = spark.createDataFrame([
        (1, T(2026, 3, 31, 23, 59), "captured", D("10.00")), (1, T(2026, 4, 1, 0, 0), "captured", D("2.50")),
        (1, T(2026, 4, 20, 12, 0), "captured", D("1.25")), (1, T(2026, 4, 21), "failed", None),
        (2, T(2026, 4, 2), "failed", None), (None, T(2026, 4, 3), "captured", D("7.00"))],
        "customer_id long, created_at timestamp, status string, captured_amount_usd decimal(25,2)")
    got = agg.build_agg_customer_monthly(payments)
    expected = spark.createDataFrame([
        (dt.date(2026, 3, 1), 1, 1, D("10.00"), dt.date(2026, 3, 31), dt.date(2026, 3, 31)),
        (dt.date(2026, 4, 1), 1, 2, D("3.75"), dt.date(2026, 4, 1), dt.date(2026, 4, 20))], got.schema)
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_fraud_dimension_daily_rolls_up_one_dimension_at_a_time(spark) -> None:
    schema = ("date date, hour int, merchant_id long, mcc string, country_code string, device_type string, "
              "bin_country string, payments long, amount_usd decimal(38,2), fraud_payments long, "
              "fraud_amount_usd decimal(38,2), disputed_payments long, disputed_amount_usd decimal(38,2)")
    day = dt.date(2026, 4, 1)
    daily = spark.createDataFrame([
        (day, 3, 1, "5411", "DE", "mobile", "US", 4, D("40.00"), 1, D("10.00"), 0, D("0.00")),
        (day, 3, 2, "5411", "FR", "desktop", "US", 2, D("30.00"), 0, D("0.00"), 1, D("15.00")),
        (day, 14, 1, "5999", "DE", "mobile", "ZZ", 1, D("5.00"), 1, D("5.00"), 1, D("5.00"))], schema)
    got = {(r["dimension"], r["value"]): tuple(r)[3:] for r in agg.build_agg_fraud_dimension_daily(daily).collect()}
    assert got == {
        ("device", "mobile"): (5, D("45.00"), 2, D("15.00"), 1, D("5.00")),
        ("device", "desktop"): (2, D("30.00"), 0, D("0.00"), 1, D("15.00")),
        ("country", "DE"): (5, D("45.00"), 2, D("15.00"), 1, D("5.00")),
        ("country", "FR"): (2, D("30.00"), 0, D("0.00"), 1, D("15.00")),
        ("hour", "03"): (6, D("70.00"), 1, D("10.00"), 1, D("15.00")),
        ("hour", "14"): (1, D("5.00"), 1, D("5.00"), 1, D("5.00")),
        ("bin_country", "US"): (6, D("70.00"), 1, D("10.00"), 1, D("15.00")),
        ("bin_country", "ZZ"): (1, D("5.00"), 1, D("5.00"), 1, D("5.00")),
        ("merchant", "1"): (5, D("45.00"), 2, D("15.00"), 1, D("5.00")),
        ("merchant", "2"): (2, D("30.00"), 0, D("0.00"), 1, D("15.00")),
        ("mcc", "5411"): (6, D("70.00"), 1, D("10.00"), 1, D("15.00")),
        ("mcc", "5999"): (1, D("5.00"), 1, D("5.00"), 1, D("5.00"))}


def test_plan_monthly_counts_churn_and_mrr(spark) -> None:
    subs = silver(spark, "subscriptions", [
        {"subscription_id": 1, "plan_id": 3, "created_at": T(2026, 1, 10), "canceled_at": T(2026, 2, 15)},
        {"subscription_id": 2, "plan_id": 3, "created_at": T(2026, 1, 20), "canceled_at": None},
        {"subscription_id": 3, "plan_id": 3, "created_at": T(2026, 2, 3), "canceled_at": None}])
    invoices = silver(spark, "invoices", [
        {"invoice_id": 1, "subscription_id": 2, "status": "paid", "paid_at": T(2026, 2, 20), "amount_usd": D("9.99")}])
    plans = build_dim_plan(silver(spark, "plans", [{"plan_id": 3, "product_id": 30, "amount": D("120.0000"),
                                                    "billing_interval": "year", "currency_code": "EUR"}]),
                           silver(spark, "products", [{"product_id": 30, "merchant_id": 1}])).where("plan_id = 3")
    fx = silver(spark, "ref_fx_rates", [
        {"currency_code": "EUR", "rate_date": dt.date(2026, 1, 31), "usd_per_unit": D("1.1000000000")},
        {"currency_code": "EUR", "rate_date": dt.date(2026, 1, 30), "usd_per_unit": D("9.0000000000")},
        {"currency_code": "EUR", "rate_date": dt.date(2026, 2, 28), "usd_per_unit": D("1.2345000000")}])
    got = agg.build_agg_plan_monthly(subs, invoices, plans, fx).select(
        "month_start", "active_start", "new_subscriptions", "churned", "active_end", "mrr_usd", "invoices_paid",
        "invoiced_usd")
    # monthly price 10.0000 EUR; January: 2 active at 1.10 -> 2 x 11.00; February: 2 x round(12.345, 2) = 2 x 12.35
    expected = spark.createDataFrame([
        (dt.date(2026, 1, 1), 0, 2, 0, 2, D("22.00"), 0, D("0.00")),
        (dt.date(2026, 2, 1), 2, 1, 1, 2, D("24.70"), 1, D("9.99"))], got.schema)
    assert_df_equality(got, expected, ignore_row_order=True)


def test_small_payments_keep_payments_up_to_ten_usd(spark) -> None:
    payments = spark.createDataFrame([
        (1, T(2026, 4, 1, 23, 59), 7, 1, "failed", D("0.50")), (2, T(2026, 4, 2), 7, 1, "captured", D("10.00")),
        (3, T(2026, 4, 2), 7, 1, "captured", D("10.01")), (4, T(2026, 4, 2), None, 2, "failed", None),
        (5, T(2026, 4, 3), 8, 2, "captured", D("250.00"))],
        "charge_id long, created_at timestamp, customer_id long, merchant_id long, status string, "
        "amount_usd decimal(25,2)")
    got = [tuple(r) for r in agg.build_agg_small_payments(payments).orderBy("charge_id").collect()]
    assert got == [(dt.date(2026, 4, 1), 1, T(2026, 4, 1, 23, 59), 7, 1, "failed", D("0.50")),
                   (dt.date(2026, 4, 2), 2, T(2026, 4, 2), 7, 1, "captured", D("10.00"))]
