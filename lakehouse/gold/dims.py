"""Gold dimensions from silver: pure transforms (silver DataFrames in, a dimension out; no I/O).

    silver.merchants (history) + ref_merchant_categories ─ build_dim_merchant ─► gold.dim_merchant (SCD2)
    silver.customers (history)                           ─ build_dim_customer ─► gold.dim_customer (SCD2)
    silver.payment_methods (current) + cards             ─ build_dim_payment_method
    ref_countries + ref_regions ─ build_dim_geography;  ref_currencies ─ build_dim_currency
    plans + products ─ build_dim_plan
    fact dates ─ build_dim_date;  build_dim_time, build_dim_device: generated

Every dimension but date, time, currency and device gets the unknown member (lakehouse.gold.tables).
`with_scd2_key` is how a fact finds the version of an SCD2 member in effect at its event time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lakehouse.gold.tables import UNKNOWN_COUNTRY, UNKNOWN_SK

# The closed list of payments.charges.device_type and the channel each one is.
DEVICE_CHANNELS = {"desktop": "online", "mobile": "online", "tablet": "online", "pos": "in_person",
                   "unknown": "unknown"}
BEGINNING = dt.datetime(1900, 1, 1)    # the first version of an SCD2 member is in effect from here
UNKNOWN = "unknown"


def date_key(ts: Column) -> Column:
    """yyyymmdd of a timestamp's or date's UTC day, as INT."""
    return F.date_format(ts, "yyyyMMdd").cast("int")


def time_key(ts: Column) -> Column:
    """hhmm of a timestamp (UTC), as INT."""
    return (F.hour(ts) * F.lit(100) + F.minute(ts)).cast("int")


def build_dim_date(dates: DataFrame) -> DataFrame:
    """One row per day from the earliest to the latest `date` of `dates` (any DataFrame with a DATE
    column `date`); empty when `dates` is."""
    bounds = dates.agg(F.min("date").alias("lo"), F.max("date").alias("hi")).where(F.col("lo").isNotNull())
    days = bounds.select(F.explode(F.sequence(F.col("lo"), F.col("hi"))).alias("date"))
    d = F.col("date")
    return days.select(
        date_key(d).alias("date_key"), d,
        F.year(d).alias("year"), F.quarter(d).alias("quarter"), F.month(d).alias("month"),
        F.date_format(d, "MMMM").alias("month_name"),
        F.date_trunc("week", d).cast("date").alias("week_start"),
        F.weekofyear(d).alias("iso_week"), F.dayofmonth(d).alias("day_of_month"),
        ((F.dayofweek(d) + F.lit(5)) % F.lit(7) + F.lit(1)).alias("day_of_week"),     # 1 = Monday
        F.date_format(d, "EEEE").alias("day_name"),
        F.dayofweek(d).isin(1, 7).alias("is_weekend"),
        F.trunc(d, "month").alias("month_start"))


def build_dim_time(spark: SparkSession) -> DataFrame:
    """The 1,440 minutes of a day with their hour and part of the day."""
    minute = F.col("id").cast("int")
    hour = (minute / F.lit(60)).cast("int")
    part = (F.when(hour < 6, "night").when(hour < 12, "morning").when(hour < 18, "afternoon").otherwise("evening"))
    return spark.range(24 * 60).select((hour * 100 + minute % 60).alias("time_key"), hour.alias("hour"),
                                       (minute % 60).alias("minute"), part.alias("day_part"))


def build_dim_device(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(sorted(DEVICE_CHANNELS.items()), "device_type string, channel string")


def _scd2_versions(history: DataFrame, key: str, sk: str) -> DataFrame:
    """The live versions of an SCD2 silver table with a surrogate key and their effective range: the
    first version of a member from BEGINNING, each next one from its `valid_from`; a delete's version
    is not a member (it ends the previous one)."""
    first = Window.partitionBy(key).orderBy("_seq_lsn", "_seq_offset")
    return (history.withColumn("__first", F.row_number().over(first) == 1)
            .where(~F.col("_is_deleted"))
            .withColumn(sk, F.xxhash64(F.col(key), F.col("_seq_lsn"), F.col("_seq_offset")))
            .withColumn("effective_from", F.when(F.col("__first"), F.lit(BEGINNING)).otherwise(F.col("valid_from")))
            .withColumn("effective_to", F.col("valid_to")))


def build_dim_merchant(merchants: DataFrame, categories: DataFrame) -> DataFrame:
    """silver.merchants (every version) + ref_merchant_categories -> gold.dim_merchant."""
    mcc = categories.select("mcc", F.col("description").alias("mcc_description"),
                            F.col("risk_level").alias("mcc_risk_level"))
    versions = (_scd2_versions(merchants, "merchant_id", "merchant_sk").join(mcc, on="mcc", how="left")
                .select("merchant_sk", "merchant_id", "name", "status", "country_code", "region_code", "mcc",
                        "mcc_description", "mcc_risk_level", "default_currency", "created_at", "effective_from",
                        "effective_to", "is_current"))
    unknown = merchants.sparkSession.createDataFrame(
        [(UNKNOWN_SK, None, UNKNOWN, UNKNOWN, UNKNOWN_COUNTRY, None, UNKNOWN, UNKNOWN, UNKNOWN, None, None, BEGINNING,
          None, True)], versions.schema)
    return versions.unionByName(unknown)


def build_dim_customer(customers: DataFrame) -> DataFrame:
    """silver.customers (every version) -> gold.dim_customer: pseudonyms only."""
    versions = _scd2_versions(customers, "customer_id", "customer_sk").select(
        "customer_sk", "customer_id", "email_pseudo", "country_code", "region_code", "created_at", "effective_from",
        "effective_to", "is_current")
    unknown = customers.sparkSession.createDataFrame(
        [(UNKNOWN_SK, None, None, UNKNOWN_COUNTRY, None, None, BEGINNING, None, True)], versions.schema)
    return versions.unionByName(unknown)


def build_dim_payment_method(methods: DataFrame, cards: DataFrame) -> DataFrame:
    """silver.payment_methods (current versions) + cards -> gold.dim_payment_method."""
    card = cards.select("payment_method_id", F.col("brand").alias("card_brand"), F.col("bin").alias("card_bin"),
                        F.col("last4").alias("card_last4"), F.col("issuing_country").alias("bin_country"))
    current = (methods.where(F.col("is_current"))
               .select("payment_method_id", "customer_id", "kind", "status", "created_at")
               .join(card, on="payment_method_id", how="left")
               .select("payment_method_id", "customer_id", "kind", "status", "card_brand", "card_bin", "card_last4",
                       "bin_country", "created_at"))
    unknown = methods.sparkSession.createDataFrame(
        [(UNKNOWN_SK, None, UNKNOWN, UNKNOWN, None, None, None, UNKNOWN_COUNTRY, None)], current.schema)
    return current.unionByName(unknown)


def build_dim_geography(countries: DataFrame, regions: DataFrame) -> DataFrame:
    region = regions.select("region_code", F.col("name").alias("region_name"))
    geo = (countries.join(region, on="region_code", how="left")
           .select("country_code", F.col("name").alias("country_name"), "alpha3", "region_code", "region_name",
                   "currency_code"))
    unknown = countries.sparkSession.createDataFrame(
        [(UNKNOWN_COUNTRY, UNKNOWN, None, None, None, None)], geo.schema)
    return geo.unionByName(unknown)


def build_dim_currency(currencies: DataFrame) -> DataFrame:
    return currencies.select("currency_code", "name", F.col("minor_unit").cast("int").alias("minor_unit"))


def monthly_amount(amount: Column, interval: Column) -> Column:
    """A plan's price per month: the price of a monthly plan, a twelfth of a yearly one."""
    return F.when(interval == F.lit("year"), amount / F.lit(12)).otherwise(amount).cast("decimal(23,4)")


def build_dim_plan(plans: DataFrame, products: DataFrame) -> DataFrame:
    product = products.select("product_id", F.col("name").alias("product_name"),
                              F.col("category").alias("product_category"), "merchant_id")
    dim = (plans.join(product, on="product_id", how="left")
           .select("plan_id", F.col("name").alias("plan_name"), "billing_interval", "amount", "currency_code",
                   monthly_amount(F.col("amount"), F.col("billing_interval")).alias("monthly_amount"), "active",
                   "product_id", "product_name", "product_category", "merchant_id"))
    unknown = plans.sparkSession.createDataFrame(
        [(UNKNOWN_SK, UNKNOWN, None, None, None, None, None, None, UNKNOWN, None, None)], dim.schema)
    return dim.unionByName(unknown)


def with_scd2_key(dim: DataFrame, natural: str, sk: str, at: str) -> Callable[[DataFrame], DataFrame]:
    """Adds `sk`: the surrogate key of the version of `dim` whose natural key is the row's `natural`
    and which was in effect at the row's `at` (UNKNOWN_SK when there is none yet)."""
    versions = dim.where(F.col(natural).isNotNull()).select(
        F.col(natural).alias("__nat"), F.col(sk).alias("__sk"), F.col("effective_from").alias("__from"),
        F.col("effective_to").alias("__to"))

    def _(facts: DataFrame) -> DataFrame:
        in_effect = ((F.col(natural) == F.col("__nat")) & (F.col(at) >= F.col("__from"))
                     & (F.col("__to").isNull() | (F.col(at) < F.col("__to"))))
        return (facts.join(versions, on=in_effect, how="left")
                .withColumn(sk, F.coalesce(F.col("__sk"), F.lit(UNKNOWN_SK)))
                .drop("__nat", "__sk", "__from", "__to"))
    return _


def with_member(dim: DataFrame, key: str, out: str, unknown: object,
                fact_key: str | None = None) -> Callable[[DataFrame], DataFrame]:
    """Adds `out`: the row's `fact_key` (default: `key`) when `dim` has that member (its `key`), else
    the unknown member's key `unknown`."""
    members = dim.select(F.col(key).alias("__member")).distinct()

    def _(facts: DataFrame) -> DataFrame:
        return (facts.join(members, on=F.col(fact_key or key) == F.col("__member"), how="left")
                .withColumn(out, F.coalesce(F.col("__member"), F.lit(unknown)))
                .drop("__member"))
    return _
