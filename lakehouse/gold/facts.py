"""Gold facts from silver and the gold dimensions: pure transforms (no I/O).

    silver.charges + fraud_ground_truth + disputes ─┐
    dim_merchant / dim_customer (version at created_at), dim_payment_method, dim_geography ─┴─► fact_payments
    silver.refunds  + charges (merchant) ─► fact_refunds           (merchant version at the refund)
    silver.disputes + charges (merchant) ─► fact_disputes          (merchant version at opening)
    silver.balance_transactions          ─► fact_balance_movements (merchant version at the entry)
    silver.subscriptions + invoices + dim_plan ─► fact_subscription_events

A member a fact needs but that is not in its dimension yet gets the unknown member's key; the next
build (or refresh) finds the member and repoints the fact.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.gold.dims import date_key, time_key, with_member, with_scd2_key
from lakehouse.gold.tables import UNKNOWN_COUNTRY, UNKNOWN_SK


@dataclass(frozen=True)
class Dimensions:
    """The dimensions the facts look members up in."""

    merchant: DataFrame
    customer: DataFrame
    payment_method: DataFrame
    geography: DataFrame
    plan: DataFrame


def build_fact_payments(charges: DataFrame, labels: DataFrame, disputes: DataFrame, dims: Dimensions) -> DataFrame:
    """silver.charges -> gold.fact_payments: one row per charge with its dimension keys, the fraud label
    when silver.fraud_ground_truth has one, and whether a dispute was opened."""
    label = labels.select("charge_id", "is_fraud", F.col("scenario").alias("fraud_scenario"))
    disputed = disputes.select("charge_id").distinct().withColumn("disputed", F.lit(True))
    method = dims.payment_method.where(F.col("payment_method_id") != F.lit(UNKNOWN_SK)).select(
        "payment_method_id", F.col("kind").alias("payment_method_kind"), "card_brand", "bin_country")
    return (charges
            .join(label, on="charge_id", how="left")
            .join(disputed, on="charge_id", how="left")
            .join(method, on="payment_method_id", how="left")
            .transform(with_member(dims.payment_method, "payment_method_id", "payment_method_key", UNKNOWN_SK))
            .transform(with_scd2_key(dims.merchant, "merchant_id", "merchant_sk", "created_at"))
            .transform(with_scd2_key(dims.customer, "customer_id", "customer_sk", "created_at"))
            .transform(with_member(dims.geography, "country_code", "country_code", UNKNOWN_COUNTRY, "ip_country"))
            .select("charge_id", "created_at", date_key(F.col("created_at")).alias("date_key"),
                    time_key(F.col("created_at")).alias("time_key"), "merchant_id", "merchant_sk", "customer_id",
                    "customer_sk", "payment_method_id", "payment_method_key", "payment_method_kind", "card_brand",
                    "bin_country", "country_code", "device_type", "currency_code", "status", "failure_code",
                    "amount", "amount_usd", "captured_amount", "captured_amount_usd", "refunded_amount",
                    "refunded_amount_usd", "risk_score", "is_fraud", "fraud_scenario",
                    F.coalesce(F.col("disputed"), F.lit(False)).alias("disputed"), "updated_at"))


def _charge_merchant(charges: DataFrame) -> DataFrame:
    return charges.select("charge_id", "merchant_id")


def build_fact_refunds(refunds: DataFrame, charges: DataFrame, dims: Dimensions) -> DataFrame:
    return (refunds.join(_charge_merchant(charges), on="charge_id", how="left")
            .transform(with_scd2_key(dims.merchant, "merchant_id", "merchant_sk", "created_at"))
            .select("refund_id", "charge_id", "created_at", date_key(F.col("created_at")).alias("date_key"),
                    "merchant_id", "merchant_sk", "currency_code", "amount", "amount_usd", "reason", "status"))


def build_fact_disputes(disputes: DataFrame, charges: DataFrame, dims: Dimensions) -> DataFrame:
    return (disputes.join(_charge_merchant(charges), on="charge_id", how="left")
            .transform(with_scd2_key(dims.merchant, "merchant_id", "merchant_sk", "opened_at"))
            .select("dispute_id", "charge_id", "opened_at", date_key(F.col("opened_at")).alias("date_key"),
                    "closed_at", "merchant_id", "merchant_sk", "currency_code", "amount", "amount_usd", "reason",
                    "status"))


def build_fact_balance_movements(ledger: DataFrame, dims: Dimensions) -> DataFrame:
    return (ledger.transform(with_scd2_key(dims.merchant, "merchant_id", "merchant_sk", "created_at"))
            .select("txn_id", "created_at", date_key(F.col("created_at")).alias("date_key"), "merchant_id",
                    "merchant_sk", "kind", "charge_id", "refund_id", "dispute_id", "currency_code", "amount",
                    "amount_usd", "fee", "fee_usd", "net", "net_usd"))


def build_fact_subscription_events(subscriptions: DataFrame, invoices: DataFrame, dims: Dimensions) -> DataFrame:
    """`started` at creation, `invoice_paid` per paid invoice (its amount), `canceled` at cancellation."""
    subs = subscriptions.select("subscription_id", "customer_id", "plan_id", "created_at", "canceled_at")
    no_money = {"invoice_id": F.lit(None).cast("bigint"), "currency_code": F.lit(None).cast("string"),
                "amount": F.lit(None).cast("decimal(23,4)"), "amount_usd": F.lit(None).cast("decimal(25,2)")}
    started = subs.select("*", F.lit("started").alias("event_type"), F.col("created_at").alias("event_at"),
                          *[c.alias(n) for n, c in no_money.items()])
    canceled = subs.where(F.col("canceled_at").isNotNull()).select(
        "*", F.lit("canceled").alias("event_type"), F.col("canceled_at").alias("event_at"),
        *[c.alias(n) for n, c in no_money.items()])
    paid = (invoices.where(F.col("status") == F.lit("paid"))
            .select("subscription_id", "invoice_id", "currency_code", "amount", "amount_usd", "paid_at")
            .join(subs, on="subscription_id", how="inner")
            .select(*subs.columns, F.lit("invoice_paid").alias("event_type"), F.col("paid_at").alias("event_at"),
                    "invoice_id", "currency_code", "amount", "amount_usd"))
    plan_merchant = dims.plan.select("plan_id", "merchant_id")
    return (started.unionByName(canceled).unionByName(paid)
            .join(plan_merchant, on="plan_id", how="left")
            .transform(with_scd2_key(dims.customer, "customer_id", "customer_sk", "event_at"))
            .select("subscription_id", "event_type", "event_at", date_key(F.col("event_at")).alias("date_key"),
                    "customer_id", "customer_sk", "plan_id", "merchant_id", "invoice_id", "currency_code", "amount",
                    "amount_usd"))
