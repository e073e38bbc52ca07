"""Feature transforms (pure): silver's payments, refunds and disputes -> the feature tables.

    silver.charges ─ payments_for_features ─┬─ build_payment_windows ─► gold.feat_payment_windows
                                            ├─ build_customer_profile ─► gold.feat_customer_profile
    silver.refunds, silver.disputes ────────┴─ build_merchant_daily / build_terminal_daily

Windows are half-open on the left: a window of W ending at a payment at t holds the payments in
(t - W, t], the payment itself and its peers at the same instant included. The online store serves the
same rows, so a score computed from it sees what training saw (lakehouse.features.online).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.window import WindowSpec

from lakehouse.silver.conform import utc_date

HOUR = 3600
DAY = 24 * HOUR
WINDOWS = {"1h": HOUR, "24h": DAY, "7d": 7 * DAY, "30d": 30 * DAY}
RISK_DAYS = 30                   # merchant and terminal risk: the 30 days before each midnight
_MICROS = 1_000_000


def payments_for_features(charges: DataFrame) -> DataFrame:
    """silver.charges -> the columns the features use: `charge_id`, `created_at`, `customer_id`,
    `payment_method_id`, `merchant_id`, `terminal_id`, `status`, `amount_usd` (DOUBLE, 0 when silver has
    none), `device_type`, `ip_country`, `ip_pseudo` (silver's keyed pseudonym of the IP), `ip_lat`, `ip_lon`."""
    return charges.select(
        "charge_id", "created_at", "customer_id", "payment_method_id", "merchant_id", "terminal_id", "status",
        F.coalesce(F.col("amount_usd").cast("double"), F.lit(0.0)).alias("amount_usd"), "device_type",
        "ip_country", F.col("ip_address_pseudo").alias("ip_pseudo"),
        F.col("ip_latitude").cast("double").alias("ip_lat"), F.col("ip_longitude").cast("double").alias("ip_lon"))


def _sliding(keys: list[str], seconds: int) -> WindowSpec:
    """The window (t - seconds, t] over the rows with the same `keys`, by `_t` (epoch microseconds)."""
    return Window.partitionBy(*keys).orderBy("_t").rangeBetween(-seconds * _MICROS + 1, 0)


def _count(keys: list[str], seconds: int) -> Column:
    return F.count(F.lit(1)).over(_sliding(keys, seconds))


def _usd(keys: list[str], seconds: int) -> Column:
    return F.round(F.sum("amount_usd").over(_sliding(keys, seconds)), 2)


def _distinct(column: str, keys: list[str], seconds: int) -> Column:
    return F.size(F.collect_set(column).over(_sliding(keys, seconds))).cast("bigint")


def _when_present(key: str, value: Column) -> Column:
    """A window value only for rows that have the key (an IP-less payment is not one "NULL IP")."""
    return F.when(F.col(key).isNotNull(), value)


def build_payment_windows(payments: DataFrame) -> DataFrame:
    """payments_for_features rows -> gold.feat_payment_windows: one row per payment with its customer's,
    card's, IP's, customer x IP's and customer x device's sliding-window counts and USD sums."""
    cust, card, ip = ["customer_id"], ["payment_method_id"], ["ip_pseudo"]
    cust_ip, cust_dev = ["customer_id", "ip_pseudo"], ["customer_id", "device_type"]
    failed = F.when(F.col("status") == F.lit("failed"), F.lit(1)).otherwise(F.lit(0))
    return (payments
            .withColumn("_t", F.unix_micros("created_at"))
            .withColumn("_failed", failed)
            .select(
                "charge_id", F.col("created_at").alias("event_ts"), F.col("created_at").alias("created_ts"),
                "customer_id", "payment_method_id", "merchant_id", "ip_pseudo", "device_type",
                *[c for w, s in WINDOWS.items()
                  for c in (_count(cust, s).alias(f"cust_txn_{w}"), _usd(cust, s).alias(f"cust_amount_usd_{w}"))],
                _count(card, HOUR).alias("card_txn_1h"), _usd(card, HOUR).alias("card_amount_usd_1h"),
                _count(card, DAY).alias("card_txn_24h"), _usd(card, DAY).alias("card_amount_usd_24h"),
                F.sum("_failed").over(_sliding(card, DAY)).cast("bigint").alias("card_declines_24h"),
                _distinct("merchant_id", card, DAY).alias("card_merchants_24h"),
                _count(card, 7 * DAY).alias("card_txn_7d"),
                _distinct("merchant_id", card, 7 * DAY).alias("card_merchants_7d"),
                _when_present("ip_pseudo", _count(ip, DAY)).alias("ip_txn_24h"),
                _when_present("ip_pseudo", _distinct("customer_id", ip, DAY)).alias("ip_customers_24h"),
                _when_present("ip_pseudo", _distinct("payment_method_id", ip, DAY)).alias("ip_cards_24h"),
                _when_present("ip_pseudo", _count(cust_ip, 30 * DAY)).alias("cust_ip_txn_30d"),
                _when_present("device_type", _count(cust_dev, 30 * DAY)).alias("cust_device_txn_30d")))


def _midnight(day: Column) -> Column:
    """The UTC midnight that starts `day` (a DATE), whatever the session time zone."""
    return F.timestamp_seconds(F.unix_date(day).cast("bigint") * F.lit(DAY))


def _midnight_after(day: Column) -> Column:
    """The UTC midnight that ends `day`: when the day's figures are complete."""
    return _midnight(F.date_add(day, 1))


def build_customer_profile(payments: DataFrame) -> DataFrame:
    """payments_for_features rows -> gold.feat_customer_profile: per customer and day with payments, the
    most frequent IP country (ties: the smaller code) and the mean IP location of all its payments up to
    the end of that day; event_ts is the next midnight."""
    located = payments.withColumn("day", utc_date(F.col("created_at")))
    per_country = (located.where(F.col("ip_country").isNotNull())
                   .groupBy("customer_id", "day", "ip_country").agg(F.count(F.lit(1)).alias("n")))
    days = located.select("customer_id", "day").distinct()
    countries = per_country.select("customer_id", "ip_country").distinct()
    running = Window.partitionBy("customer_id", "ip_country").orderBy("day").rowsBetween(
        Window.unboundedPreceding, Window.currentRow)
    best = Window.partitionBy("customer_id", "day").orderBy(F.col("cum_n").desc(), F.col("ip_country"))
    usual = (days.join(countries, on="customer_id", how="inner")
             .join(per_country, on=["customer_id", "day", "ip_country"], how="left")
             .withColumn("cum_n", F.sum(F.coalesce(F.col("n"), F.lit(0))).over(running))
             .where(F.col("cum_n") > 0)
             .withColumn("_rank", F.row_number().over(best)).where(F.col("_rank") == 1)
             .select("customer_id", "day", F.col("ip_country").alias("usual_country")))
    upto = Window.partitionBy("customer_id").orderBy("day").rowsBetween(Window.unboundedPreceding, Window.currentRow)
    geo = (located.groupBy("customer_id", "day")
           .agg(F.count(F.lit(1)).alias("n"), F.sum("ip_lat").alias("lat"), F.sum("ip_lon").alias("lon"),
                F.count("ip_lat").alias("geo_n"))
           .select("customer_id", "day",
                   F.sum("n").over(upto).alias("profile_payments"),
                   (F.sum("lat").over(upto) / F.sum("geo_n").over(upto)).alias("usual_lat"),
                   (F.sum("lon").over(upto) / F.sum("geo_n").over(upto)).alias("usual_lon")))
    return (geo.join(usual, on=["customer_id", "day"], how="left")
            .select("customer_id", _midnight_after(F.col("day")).alias("event_ts"),
                    _midnight_after(F.col("day")).alias("created_ts"), "usual_country",
                    F.round("usual_lat", 5).alias("usual_lat"), F.round("usual_lon", 5).alias("usual_lon"),
                    F.col("profile_payments").cast("bigint").alias("profile_payments")))


def _daily_calendar(per_day: DataFrame, key: str) -> DataFrame:
    """Every (key, day) from the key's first active day to the day after its last."""
    return (per_day.groupBy(key).agg(F.min("day").alias("first"), F.max("day").alias("last"))
            .select(key, F.explode(F.sequence(F.col("first"), F.date_add(F.col("last"), 1))).alias("day")))


def _before_midnight(key: str, value: Column) -> Column:
    """The sum of `value` over the RISK_DAYS days before a row's day (the row's own day excluded); 0 when none."""
    w = Window.partitionBy(key).orderBy(F.unix_date(F.col("day"))).rangeBetween(-RISK_DAYS, -1)
    return F.coalesce(F.sum(F.coalesce(value, F.lit(0))).over(w), F.lit(0))


def _rate(numerator: Column, denominator: Column) -> Column:
    return F.when(denominator > 0, numerator / denominator).otherwise(F.lit(0.0))


def build_merchant_daily(payments: DataFrame, refunds: DataFrame, disputes: DataFrame) -> DataFrame:
    """-> gold.feat_merchant_daily. `refunds` needs `charge_id`, `created_at`; `disputes` needs `charge_id`,
    `opened_at`: each counts against the refunded (disputed) payment's merchant on the day it happened."""
    merchant_of = payments.select("charge_id", "merchant_id")
    pay = (payments.groupBy("merchant_id", utc_date(F.col("created_at")).alias("day"))
           .agg(F.count(F.lit(1)).alias("txn"), F.sum("amount_usd").alias("usd")))
    ref = (refunds.join(merchant_of, on="charge_id", how="inner")
           .groupBy("merchant_id", utc_date(F.col("created_at")).alias("day")).agg(F.count(F.lit(1)).alias("refunds")))
    dis = (disputes.join(merchant_of, on="charge_id", how="inner")
           .groupBy("merchant_id", utc_date(F.col("opened_at")).alias("day")).agg(F.count(F.lit(1)).alias("disputes")))
    txn = _before_midnight("merchant_id", F.col("txn"))
    disputes_30d = _before_midnight("merchant_id", F.col("disputes"))
    return (_daily_calendar(pay, "merchant_id")
            .join(pay, on=["merchant_id", "day"], how="left")
            .join(ref, on=["merchant_id", "day"], how="left")
            .join(dis, on=["merchant_id", "day"], how="left")
            .select("merchant_id", _midnight(F.col("day")).alias("event_ts"),
                    _midnight(F.col("day")).alias("created_ts"),
                    txn.cast("bigint").alias("merchant_txn_30d"),
                    F.round(_before_midnight("merchant_id", F.col("usd")).cast("double"), 2)
                    .alias("merchant_amount_usd_30d"),
                    _rate(_before_midnight("merchant_id", F.col("refunds")), txn).alias("merchant_refund_rate_30d"),
                    disputes_30d.cast("bigint").alias("merchant_disputes_30d"),
                    _rate(disputes_30d, txn).alias("merchant_dispute_rate_30d")))


def build_terminal_daily(payments: DataFrame, disputes: DataFrame) -> DataFrame:
    """-> gold.feat_terminal_daily (payments with a terminal only): payments, distinct cards and chargebacks
    opened in the 30 days before each midnight."""
    at_terminal = payments.where(F.col("terminal_id").isNotNull())
    terminal_of = at_terminal.select("charge_id", "terminal_id")
    pay = (at_terminal.groupBy("terminal_id", utc_date(F.col("created_at")).alias("day"))
           .agg(F.count(F.lit(1)).alias("txn"), F.collect_set("payment_method_id").alias("cards")))
    dis = (disputes.join(terminal_of, on="charge_id", how="inner")
           .groupBy("terminal_id", utc_date(F.col("opened_at")).alias("day")).agg(F.count(F.lit(1)).alias("disputes")))
    w = Window.partitionBy("terminal_id").orderBy(F.unix_date(F.col("day"))).rangeBetween(-RISK_DAYS, -1)
    txn = _before_midnight("terminal_id", F.col("txn"))
    disputes_30d = _before_midnight("terminal_id", F.col("disputes"))
    cards = F.size(F.array_distinct(F.flatten(F.collect_list(
        F.coalesce(F.col("cards"), F.array().cast("array<bigint>"))).over(w))))
    return (_daily_calendar(pay, "terminal_id")
            .join(pay, on=["terminal_id", "day"], how="left")
            .join(dis, on=["terminal_id", "day"], how="left")
            .select("terminal_id", _midnight(F.col("day")).alias("event_ts"),
                    _midnight(F.col("day")).alias("created_ts"),
                    txn.cast("bigint").alias("terminal_txn_30d"), cards.cast("bigint").alias("terminal_cards_30d"),
                    disputes_30d.cast("bigint").alias("terminal_disputes_30d"),
                    _rate(disputes_30d, txn).alias("terminal_dispute_rate_30d")))
