"""Gold's pre-aggregated tables from the facts and dimensions: pure transforms (no I/O).

    fact_balance_movements + dim_merchant + fact_payments ─ build_agg_revenue_daily ─ roll_up_revenue ─► weekly, monthly
    fact_payments + dim_merchant                          ─ build_agg_fraud_daily
    fact_payments                                         ─ build_agg_customer_monthly ─ build_agg_customer_rfm
    fact_payments                                         ─ build_agg_small_payments
    silver.subscriptions + invoices + dim_plan + FX       ─ build_agg_plan_monthly
    silver.dq_results + quarantine counts                 ─ build_agg_compliance_daily

All sums are additive over their grain, so the weekly and monthly revenue are sums of the daily rows
and a query can roll any of them up further.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lakehouse.gold.dims import UNKNOWN, monthly_amount
from lakehouse.gold.tables import FRAUD_DIMENSIONS, SMALL_PAYMENT_MAX_USD, UNKNOWN_COUNTRY

REVENUE_KEYS = ("merchant_id", "country_code", "currency_code", "payment_method_kind")
_USD_SUM = "decimal(38,2)"


def _sum_if(condition: Column, value: Column) -> Column:
    return F.coalesce(F.sum(F.when(condition, value)), F.lit(0)).cast(_USD_SUM)


def build_agg_revenue_daily(ledger: DataFrame, merchants: DataFrame, payments: DataFrame) -> DataFrame:
    """fact_balance_movements -> revenue per day x merchant x merchant's country (the version in effect)
    x currency x payment method kind (of the entry's payment; `unknown` when not in fact_payments)."""
    country = merchants.select("merchant_sk", F.col("country_code"))
    kind = payments.select("charge_id", "payment_method_kind")
    kind_col = F.col("payment_method_kind")
    rows = (ledger.join(country, on="merchant_sk", how="left").join(kind, on="charge_id", how="left")
            .withColumns({"date": F.to_date("created_at"),
                          "country_code": F.coalesce(F.col("country_code"), F.lit(UNKNOWN_COUNTRY)),
                          "payment_method_kind": F.coalesce(kind_col, F.lit(UNKNOWN))}))
    is_kind = {k: F.col("kind") == F.lit(k) for k in ("charge", "refund")}
    is_dispute = F.col("kind").isin("dispute", "dispute_won")
    return (rows.groupBy("date", *REVENUE_KEYS)
            .agg(F.count_if(is_kind["charge"]).alias("payments"),
                 _sum_if(is_kind["charge"], F.col("amount_usd")).alias("gross_usd"),
                 _sum_if(is_kind["refund"], -F.col("amount_usd")).alias("refunds_usd"),
                 _sum_if(is_dispute, -F.col("amount_usd")).alias("disputes_usd"),
                 F.sum("fee_usd").cast(_USD_SUM).alias("fees_usd"),
                 F.sum("net_usd").cast(_USD_SUM).alias("net_usd"),
                 F.sum("net").cast("decimal(38,4)").alias("net")))


def roll_up_revenue(daily: DataFrame, period: str) -> DataFrame:
    """agg_revenue_daily summed to `week` (-> week_start, ISO weeks) or `month` (-> month_start)."""
    start = {"week": F.date_trunc("week", F.col("date")).cast("date").alias("week_start"),
             "month": F.trunc(F.col("date"), "month").alias("month_start")}[period]
    measures = ("payments", "gross_usd", "refunds_usd", "disputes_usd", "fees_usd", "net_usd", "net")
    return (daily.groupBy(start, *REVENUE_KEYS)
            .agg(*[F.sum(m).cast(daily.schema[m].dataType).alias(m) for m in measures]))


def build_agg_fraud_daily(payments: DataFrame, merchants: DataFrame) -> DataFrame:
    """fact_payments -> payments, fraud and disputes per day x hour x merchant x MCC x country x device x
    BIN country (unknowns as `unknown` / ZZ)."""
    mcc = merchants.select("merchant_sk", "mcc")
    amount = F.col("amount_usd")
    return (payments.join(mcc, on="merchant_sk", how="left")
            .select(F.to_date("created_at").alias("date"), F.hour("created_at").alias("hour"), "merchant_id",
                    F.coalesce(F.col("mcc"), F.lit(UNKNOWN)).alias("mcc"), "country_code",
                    F.coalesce(F.col("device_type"), F.lit(UNKNOWN)).alias("device_type"),
                    F.coalesce(F.col("bin_country"), F.lit(UNKNOWN_COUNTRY)).alias("bin_country"),
                    "amount_usd", "is_fraud", "disputed")
            .groupBy("date", "hour", "merchant_id", "mcc", "country_code", "device_type", "bin_country")
            .agg(F.count(F.lit(1)).alias("payments"), F.sum(amount).cast(_USD_SUM).alias("amount_usd"),
                 F.count_if(F.col("is_fraud")).alias("fraud_payments"),
                 _sum_if(F.col("is_fraud"), amount).alias("fraud_amount_usd"),
                 F.count_if(F.col("disputed")).alias("disputed_payments"),
                 _sum_if(F.col("disputed"), amount).alias("disputed_amount_usd")))


def rfm_segment(r: Column, f: Column) -> Column:
    """The segment of recency and frequency scores (1-5, 5 best)."""
    return (F.when((r >= 4) & (f >= 4), "champions")
            .when((r >= 3) & (f >= 3), "loyal")
            .when((r >= 4) & (f <= 2), "new")
            .when((r <= 2) & (f >= 3), "at_risk")
            .when((r <= 2) & (f <= 2), "hibernating")
            .otherwise("needs_attention"))


def build_agg_fraud_dimension_daily(fraud_daily: DataFrame) -> DataFrame:
    """agg_fraud_daily -> the same measures per day x one dimension (FRAUD_DIMENSIONS) x its value."""
    value_of = {"device": F.col("device_type"), "country": F.col("country_code"),
                "hour": F.lpad(F.col("hour").cast("string"), 2, "0"), "bin_country": F.col("bin_country"),
                "merchant": F.col("merchant_id").cast("string"), "mcc": F.col("mcc")}
    assert tuple(value_of) == FRAUD_DIMENSIONS
    counts = ("payments", "fraud_payments", "disputed_payments")
    amounts = ("amount_usd", "fraud_amount_usd", "disputed_amount_usd")
    pairs = [F.struct(F.lit(name).alias("dimension"), value.alias("value")) for name, value in value_of.items()]
    stacked = fraud_daily.select("date", F.explode(F.array(*pairs)).alias("d"), *counts, *amounts)
    return (stacked.groupBy("date", F.col("d.dimension").alias("dimension"), F.col("d.value").alias("value"))
            .agg(*[F.sum(c).cast("bigint").alias(c) for c in counts],
                 *[F.sum(c).cast(_USD_SUM).alias(c) for c in amounts])
            .select("date", "dimension", "value", "payments", "amount_usd", "fraud_payments", "fraud_amount_usd",
                    "disputed_payments", "disputed_amount_usd"))


def build_agg_customer_monthly(payments: DataFrame) -> DataFrame:
    """fact_payments (captured ones, with a customer) -> count, USD amount, first and last day per month x
    customer."""
    captured = payments.where((F.col("status") == F.lit("captured")) & F.col("customer_id").isNotNull())
    day = F.to_date("created_at")
    return (captured.groupBy(F.trunc(day, "MM").alias("month_start"), "customer_id")
            .agg(F.count(F.lit(1)).alias("payments"), F.sum("captured_amount_usd").cast(_USD_SUM).alias("amount_usd"),
                 F.min(day).alias("first_payment_date"), F.max(day).alias("last_payment_date")))


def build_agg_small_payments(payments: DataFrame) -> DataFrame:
    """fact_payments -> the payments of at most SMALL_PAYMENT_MAX_USD (in USD), with their day."""
    return (payments.where(F.col("amount_usd") <= F.lit(SMALL_PAYMENT_MAX_USD))
            .select(F.to_date("created_at").alias("date"), "charge_id", "created_at", "customer_id", "merchant_id",
                    "status", "amount_usd"))


def build_agg_customer_rfm(monthly: DataFrame) -> DataFrame:
    """agg_customer_monthly -> RFM per customer as of the last day with a captured payment.
    Scores are quintiles (ntile 5); ties are broken by customer_id, so the same data gives the same scores."""
    per_customer = monthly.groupBy("customer_id").agg(
        F.max("last_payment_date").alias("last_payment_date"), F.sum("payments").cast("bigint").alias("frequency"),
        F.sum("amount_usd").cast(_USD_SUM).alias("monetary_usd"))
    everyone = Window.partitionBy(F.lit(1))    # quintiles rank all customers together (one row each)
    scored = (per_customer.withColumn("as_of", F.max("last_payment_date").over(everyone))
              .withColumn("recency_days", F.datediff(F.col("as_of"), F.col("last_payment_date")))
              .withColumn("r_score", F.ntile(5).over(everyone.orderBy(F.col("recency_days").desc(), "customer_id")))
              .withColumn("f_score", F.ntile(5).over(everyone.orderBy("frequency", "customer_id")))
              .withColumn("m_score", F.ntile(5).over(everyone.orderBy("monetary_usd", "customer_id"))))
    return scored.select("customer_id", "as_of", "last_payment_date", "recency_days", "frequency", "monetary_usd",
                         "r_score", "f_score", "m_score",
                         rfm_segment(F.col("r_score"), F.col("f_score")).alias("segment"))


def usd_rate_at_month_end(fx: DataFrame) -> DataFrame:
    """Per currency and month: the last USD rate on or before the month's last day (`month_start`,
    `currency_code`, `usd_per_unit`)."""
    last = Window.partitionBy("currency_code", "month_start").orderBy(F.col("rate_date").desc())
    return (fx.withColumn("month_start", F.trunc("rate_date", "month"))
            .withColumn("__n", F.row_number().over(last)).where(F.col("__n") == 1)
            .select("month_start", "currency_code", "usd_per_unit"))


def build_agg_plan_monthly(subscriptions: DataFrame, invoices: DataFrame, plans: DataFrame,
                           fx: DataFrame) -> DataFrame:
    """Per month (from the first subscription's month to the last event's) and plan: active at the start,
    new, churned, active at the end, MRR of those active at the end in USD (each plan's monthly price at
    the month's last FX rate, rounded to cents, times its subscriptions), invoices paid (count, USD)."""
    events = subscriptions.select(F.col("created_at").alias("t")).unionByName(
        subscriptions.select(F.col("canceled_at").alias("t"))).unionByName(invoices.select(F.col("paid_at").alias("t")))
    months = (events.agg(F.trunc(F.min("t"), "month").alias("lo"), F.trunc(F.max("t"), "month").alias("hi"))
              .where(F.col("lo").isNotNull())
              .select(F.explode(F.sequence("lo", "hi", F.expr("INTERVAL 1 MONTH"))).alias("month_start"))
              .withColumn("__next", F.add_months("month_start", 1)))
    start, nxt = F.col("month_start").cast("timestamp"), F.col("__next").cast("timestamp")
    created, canceled = F.col("created_at"), F.col("canceled_at")
    alive_at = {"start": (created < start) & (canceled.isNull() | (canceled >= start)),
                "end": (created < nxt) & (canceled.isNull() | (canceled >= nxt))}
    in_month = {"new": (created >= start) & (created < nxt), "churned": (canceled >= start) & (canceled < nxt)}
    plan = plans.select("plan_id", "merchant_id", "currency_code",
                        monthly_amount(F.col("amount"), F.col("billing_interval")).alias("__monthly"))
    rate = usd_rate_at_month_end(fx)
    counts = (subscriptions.select("subscription_id", "plan_id", "created_at", "canceled_at")
              .crossJoin(months)
              .groupBy("month_start", "plan_id")
              .agg(F.count_if(alive_at["start"]).alias("active_start"),
                   F.count_if(in_month["new"]).alias("new_subscriptions"),
                   F.count_if(in_month["churned"]).alias("churned"),
                   F.count_if(alive_at["end"]).alias("active_end")))
    paid = (invoices.where(F.col("status") == F.lit("paid"))
            .join(subscriptions.select("subscription_id", "plan_id"), on="subscription_id", how="inner")
            .groupBy(F.trunc("paid_at", "month").alias("month_start"), "plan_id")
            .agg(F.count(F.lit(1)).alias("invoices_paid"), F.sum("amount_usd").cast(_USD_SUM).alias("invoiced_usd")))
    # Each subscription's monthly price in USD rounded to cents (exact: DECIMAL(23,4) x DECIMAL(14,10)
    # fits DECIMAL(38,14)), times the subscriptions active at the month's end.
    monthly_usd = F.round(F.col("__monthly").cast("decimal(23,4)") * F.col("usd_per_unit").cast("decimal(14,10)"), 2)
    mrr = (F.col("active_end").cast("decimal(20,0)") * monthly_usd).cast(_USD_SUM)
    return (counts.join(paid, on=["month_start", "plan_id"], how="left")
            .join(plan, on="plan_id", how="left")
            .join(rate, on=["month_start", "currency_code"], how="left")
            .select("month_start", "plan_id", "merchant_id", "active_start", "new_subscriptions", "churned",
                    "active_end", mrr.alias("mrr_usd"),
                    F.coalesce(F.col("invoices_paid"), F.lit(0)).alias("invoices_paid"),
                    F.coalesce(F.col("invoiced_usd"), F.lit(0).cast(_USD_SUM)).alias("invoiced_usd")))


def build_agg_compliance_daily(dq_results: DataFrame, quarantined: DataFrame) -> DataFrame:
    """silver.dq_results (one row per batch x expectation) and quarantined rows (`table`,
    `quarantined_at`, one row per quarantined row) -> per day x table."""
    checks = (dq_results.groupBy(F.to_date("run_at").alias("date"), "table")
              .agg(F.count(F.lit(1)).alias("checks"), F.count_if(~F.col("success")).alias("failed_checks"),
                   F.sum("element_count").alias("rows_checked"), F.sum("unexpected_count").alias("unexpected_rows")))
    held = quarantined.groupBy(F.to_date("quarantined_at").alias("date"), "table").agg(
        F.count(F.lit(1)).alias("quarantined_rows"))
    zero = F.lit(0).cast("bigint")
    return (checks.join(held, on=["date", "table"], how="full")
            .select("date", "table", *[F.coalesce(F.col(c), zero).alias(c) for c in
                                       ("checks", "failed_checks", "rows_checked", "unexpected_rows",
                                        "quarantined_rows")]))
