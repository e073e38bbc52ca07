"""Reconciliation of gold with the OLTP ledger (`lakehouse reconcile --layer gold`).

Net revenue per merchant per UTC day per currency in `gold.agg_revenue_daily` (summed over its other
dimensions) must equal the sum of `net_minor` of `payments.balance_transactions` for that merchant,
day and currency, and the count of charge entries must equal the payments counted. Both sides are
compared in minor units (gold's DECIMAL net times 10^the currency's exponent), so nothing is rounded.
"""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.common.config import Settings
from lakehouse.gold.build import read_gold
from lakehouse.gold.tables import AGG_REVENUE_DAILY, DIM_CURRENCY
from lakehouse.silver.reconcile import TableReport, compare, read_jdbc

KEYS = ("date", "merchant_id", "currency_code")
LEDGER = """(SELECT (created_at AT TIME ZONE 'UTC')::date AS date, merchant_id, currency_code::text AS currency_code,
                    count(*) FILTER (WHERE kind = 'charge') AS payments, sum(net_minor) AS net_minor
             FROM payments.balance_transactions GROUP BY 1, 2, 3) ledger"""


def reconcile_gold(spark: SparkSession, settings: Settings) -> list[TableReport]:
    """agg_revenue_daily's net revenue per merchant, day and currency against the OLTP ledger."""
    columns = [*KEYS, "payments", "net_minor"]
    oltp = read_jdbc(spark, settings, LEDGER).select(
        F.col("date").cast("date"), F.col("merchant_id").cast("bigint"), "currency_code",
        F.col("payments").cast("bigint"), F.col("net_minor").cast("decimal(38,0)"))
    exponent = read_gold(spark, settings, DIM_CURRENCY).select("currency_code", "minor_unit")
    gold = (read_gold(spark, settings, AGG_REVENUE_DAILY).groupBy(*KEYS)
            .agg(F.sum("payments").alias("payments"), F.sum("net").alias("net"))
            .join(exponent, on="currency_code", how="left")
            .select(*KEYS, F.col("payments").cast("bigint"),
                    (F.col("net") * F.pow(F.lit(10), F.col("minor_unit")).cast("decimal(38,0)"))
                    .cast("decimal(38,0)").alias("net_minor")))
    return [compare(oltp.select(*columns), gold.select(*columns), KEYS, AGG_REVENUE_DAILY.full_name,
                    "payments.balance_transactions (net_minor per merchant, UTC day, currency)")]
