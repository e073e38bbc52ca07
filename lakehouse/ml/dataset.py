"""Training and scoring sets: payments with their label and their features as of just before them.

    labelled_payments   silver.charges + silver.fraud_ground_truth: keys, request fields, `is_fraud`
    split_windows       train | gap | validation | gap | test, each gap = the label delay
    with_features       Feast's point-in-time join at `created_at - 1 µs`: the state before the payment

Labels: `silver.fraud_ground_truth` (the simulator's truth, or imported history's labels) is trusted only
for payments at least `ml.label_delay_days` older than the data's end: chargebacks take weeks, so a
younger payment's label is not known yet. The features respect it too: merchant and terminal risk
count a chargeback from the day it was opened (lakehouse.features.build).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.common.config import Settings
from lakehouse.features.jobs import feature_payments, historical_features, read_silver_table
from lakehouse.features.online import NO_IP, NO_TERMINAL
from lakehouse.features.store import FEATURE_SERVICE
from lakehouse.silver.conform import utc_date

LABEL = "is_fraud"


def labelled_payments(spark: SparkSession, settings: Settings) -> DataFrame:
    """Every payment attempt with its keys, request fields and fraud label (NULL: no label)."""
    labels = read_silver_table(spark, settings, "fraud_ground_truth", "charge_id bigint, is_fraud boolean")
    return feature_payments(spark, settings).join(labels, on="charge_id", how="left")


@dataclass(frozen=True)
class Windows:
    """Half-open [start, end) time windows of the split (UTC, naive)."""

    train_start: dt.datetime
    train_end: dt.datetime
    validation_start: dt.datetime
    validation_end: dt.datetime
    test_start: dt.datetime
    test_end: dt.datetime

    def as_params(self) -> dict[str, str]:
        return {k: v.isoformat() for k, v in self.__dict__.items()}


def split_windows(first: dt.datetime, last: dt.datetime, label_delay_days: int, validation_days: int,
                  test_days: int) -> Windows:
    """The split of the payments in [first, last]: the test window ends `label_delay_days` before the last
    payment's day ends (its labels are known), and each window is separated from the next by the label
    delay (a model trained at a time only knows labels that old). Fails when nothing is left to train on."""
    end = dt.datetime.combine(last.date() + dt.timedelta(days=1), dt.time())
    delay = dt.timedelta(days=label_delay_days)
    test_end = end - delay
    test_start = test_end - dt.timedelta(days=test_days)
    validation_end = test_start - delay
    validation_start = validation_end - dt.timedelta(days=validation_days)
    train_end = validation_start - delay
    train_start = dt.datetime.combine(first.date(), dt.time())
    if train_end <= train_start:
        raise ValueError(
            f"history {first:%Y-%m-%d} .. {last:%Y-%m-%d} is too short for the split: it needs more than "
            f"3 x ml.label_delay_days ({label_delay_days}) + ml.validation_days ({validation_days}) + "
            f"ml.test_days ({test_days}) days")
    return Windows(train_start, train_end, validation_start, validation_end, test_start, test_end)


def entity_frame(payments: DataFrame, extra: tuple[str, ...] = ()) -> DataFrame:
    """Feast's entity rows of payments: the join keys (sentinels for no terminal / IP), `event_timestamp` =
    1 µs before the payment (its own row in the windows is not yet known), the request fields and `extra`."""
    before: Column = F.col("created_at") - F.expr("INTERVAL 1 MICROSECOND")
    return payments.select(
        "charge_id", "customer_id", "payment_method_id", "merchant_id",
        F.coalesce(F.col("terminal_id"), F.lit(NO_TERMINAL)).alias("terminal_id"),
        F.coalesce(F.col("device_type"), F.lit("unknown")).alias("device_type"),
        F.coalesce(F.col("ip_pseudo"), F.lit(NO_IP)).alias("ip_pseudo"),
        before.alias("event_timestamp"), "created_at", "amount_usd", "ip_country", "ip_lat", "ip_lon",
        F.col("terminal_id").isNotNull().cast("double").alias("has_terminal"),
        utc_date(F.col("created_at")).alias("day"), *extra)


def with_features(store: object, payments: DataFrame, extra: tuple[str, ...] = ()) -> DataFrame:
    """`entity_frame(payments)` joined point in time with the fraud feature service's features."""
    return historical_features(store, entity_frame(payments, extra), FEATURE_SERVICE)
