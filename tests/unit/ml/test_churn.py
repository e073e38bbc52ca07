"""lakehouse.ml.churn on small inputs worked out by hand: which subscriptions are active at an as_of
midnight, what was known about them then, their label, the split, the model's inputs and its pyfunc."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal as D
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession

from lakehouse.common.tables import columns
from lakehouse.ml import churn

T = dt.datetime
MAR_1, MAR_8 = dt.date(2026, 3, 1), dt.date(2026, 3, 8)

PLANS = [(1, D("30.0000"), "EUR", "month"), (2, D("120.0000"), "USD", "year")]
# subscription_id, customer_id, plan_id, status (today's: not a feature), created_at, canceled_at
SUBSCRIPTIONS = [
    (1, 10, 1, "active", T(2026, 3, 1, 12), None),
    (2, 20, 2, "canceled", T(2026, 1, 8), T(2026, 3, 15)),                  # exactly MAR_8 + 7 days: churned
    (3, 30, 1, "active", T(2026, 3, 8), None),                              # created at the MAR_8 midnight
    (4, 40, 1, "canceled", T(2026, 2, 20), T(2026, 3, 8)),                  # canceled at the MAR_8 midnight
    (5, 50, 1, "canceled", T(2026, 2, 1), T(2026, 3, 15, 0, 0, 0, 1)),      # 1 µs after MAR_8 + 7 days
    (6, 60, 2, "canceled", T(2026, 2, 1), T(2026, 3, 5)),
    (7, 10, 2, "canceled", T(2026, 3, 7, 18), T(2026, 3, 10)),              # customer 10's second subscription
]
# invoice_id, subscription_id, status, created_at, paid_at, amount_usd
INVOICES = [
    (1, 1, "paid", T(2026, 3, 1, 12), T(2026, 3, 1, 12), D("30.00")),
    (2, 1, "paid", T(2026, 3, 8), T(2026, 3, 8), D("30.00")),               # paid at the midnight: not before it
    (3, 1, "paid", T(2026, 3, 9), T(2026, 3, 9), D("30.00")),
    (4, 2, "paid", T(2026, 1, 8), T(2026, 1, 8), D("120.00")),
    (5, 2, "paid", T(2026, 2, 8, 6), T(2026, 2, 8, 6), D("120.00")),
    (6, 2, "open", T(2026, 3, 7), None, D("120.00")),
    (7, 6, "void", T(2026, 2, 1), None, D("120.00")),
]


def frame(spark: SparkSession, rows: list[tuple[Any, ...]], ddl: str) -> DataFrame:
    return spark.createDataFrame(rows, columns(ddl))


def sources(spark: SparkSession, subscriptions: list[tuple[Any, ...]] = SUBSCRIPTIONS,
            invoices: list[tuple[Any, ...]] = INVOICES) -> tuple[DataFrame, DataFrame, DataFrame]:
    return (frame(spark, subscriptions, churn.SUBSCRIPTIONS), frame(spark, PLANS, churn.PLANS),
            frame(spark, invoices, churn.INVOICES))


ROW = ("subscription_id", "customer_id", "event_timestamp", *churn.FACT_COLUMNS, churn.LABEL)


def rows_of(df: DataFrame, names: tuple[str, ...] = ROW) -> list[tuple[Any, ...]]:
    return sorted((tuple(r[c] for c in names) for r in df.collect()), key=lambda r: (r[2], r[0]))


def test_examples_are_the_subscriptions_active_at_each_midnight_with_facts_known_then(spark: SparkSession) -> None:
    out = churn.build_churn_examples(*sources(spark), [MAR_8, MAR_1], horizon_days=7)
    assert out.columns == ["subscription_id", "customer_id", "event_timestamp", *churn.FACT_COLUMNS, churn.LABEL]
    # sub, customer, as_of, tenure_days, monthly_price, is_yearly, invoices_paid, days_since_last_paid, churned
    assert rows_of(out) == [
        (2, 20, T(2026, 3, 1), 52.0, 10.0, 1.0, 2.0, 20.75, False),   # canceled 03-15: after 03-08
        (4, 40, T(2026, 3, 1), 9.0, 30.0, 0.0, 0.0, None, True),      # canceled at 03-08 00:00: the window's end
        (5, 50, T(2026, 3, 1), 28.0, 30.0, 0.0, 0.0, None, False),
        (6, 60, T(2026, 3, 1), 28.0, 10.0, 1.0, 0.0, None, True),     # its void invoice is no paid invoice
        (1, 10, T(2026, 3, 8), 6.5, 30.0, 0.0, 1.0, 6.5, False),      # invoices paid at / after 03-08 not counted
        (2, 20, T(2026, 3, 8), 59.0, 10.0, 1.0, 2.0, 27.75, True),    # the open invoice is not paid
        (5, 50, T(2026, 3, 8), 35.0, 30.0, 0.0, 0.0, None, False),    # canceled 1 µs after the horizon
        (7, 10, T(2026, 3, 8), 0.25, 10.0, 1.0, 0.0, None, True),
    ]
    # 3 (created at the 03-08 midnight), 4 (canceled at it) and 6 (canceled 03-05) are not active on 03-08;
    # 1, 3 and 7 did not exist yet on 03-01.


def test_the_label_window_follows_the_horizon(spark: SparkSession) -> None:
    labels = {r["subscription_id"]: r[churn.LABEL] for r in
              churn.build_churn_examples(*sources(spark), [MAR_8], horizon_days=1).collect()}
    assert labels == {1: False, 2: False, 5: False, 7: False}
    labels = {r["subscription_id"]: r[churn.LABEL] for r in
              churn.build_churn_examples(*sources(spark), [MAR_8], horizon_days=8).collect()}
    assert labels == {1: False, 2: True, 5: True, 7: True}
    with pytest.raises(ValueError, match="positive"):
        churn.build_churn_examples(*sources(spark), [MAR_8], horizon_days=0)


def known_at(at: dt.datetime) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The sources as they stood at `at`: later subscriptions and invoices absent, later cancellations and
    payments not happened yet (status as it was)."""
    subscriptions = [(s, c, p, "active" if canceled is None or canceled > at else "canceled", created,
                      canceled if canceled is not None and canceled <= at else None)
                     for s, c, p, _, created, canceled in SUBSCRIPTIONS if created <= at]
    invoices = [(i, s, status if paid is None or paid <= at else "open", created,
                 paid if paid is not None and paid <= at else None, usd)
                for i, s, status, created, paid, usd in INVOICES if created <= at]
    return subscriptions, invoices


def test_nothing_after_as_of_enters_a_feature(spark: SparkSession) -> None:
    names = ("subscription_id", "customer_id", "event_timestamp", *churn.FACT_COLUMNS)
    for day in (MAR_1, MAR_8):
        at = T(day.year, day.month, day.day)
        full = rows_of(churn.active_subscriptions(*sources(spark), [day]), names)
        then = rows_of(churn.active_subscriptions(*sources(spark, *known_at(at)), [day]), names)
        assert full == then and len(full) == 4
    # More invoices and cancellations after 03-08 change the label only.
    later = [(8, 7, "paid", T(2026, 3, 9), T(2026, 3, 9), D("10.00")), (9, 5, "paid", T(2026, 3, 8, 0, 0, 1),
                                                                          T(2026, 3, 8, 0, 0, 1), D("30.00"))]
    subs = [(*s[:4], s[4], T(2026, 3, 9) if s[0] == 1 else s[5]) for s in SUBSCRIPTIONS]
    before = rows_of(churn.build_churn_examples(*sources(spark), [MAR_8], 7))
    after = rows_of(churn.build_churn_examples(*sources(spark, subs, INVOICES + later), [MAR_8], 7))
    assert [r[:-1] for r in after] == [r[:-1] for r in before]
    assert [r[-1] for r in before] == [False, True, False, True] and [r[-1] for r in after] == [True, True, False, True]


def test_active_subscriptions_needs_a_date(spark: SparkSession) -> None:
    with pytest.raises(ValueError, match="at least one"):
        churn.active_subscriptions(*sources(spark), [])


def test_split_steps_back_from_the_latest_labelled_midnight_and_leaves_a_horizon_gap() -> None:
    split = churn.churn_split(T(2026, 10, 6, 19, 9), T(2026, 12, 4, 14, 0), horizon_days=14)
    d = dt.date
    # the latest labelled midnight: 12-04 14:00 - 14 days = 11-20 14:00 -> 11-20; the first: 10-07 (after 10-06 19:09)
    assert split.test == (d(2026, 11, 6), d(2026, 11, 13), d(2026, 11, 20))
    assert split.gap == (d(2026, 10, 30),)                       # 10-30 + 14 days > 11-06
    assert split.train == (d(2026, 10, 9), d(2026, 10, 16), d(2026, 10, 23))   # 10-23 + 14 days = 11-06
    assert split.as_params()["gap"] == "2026-10-30"
    # known exactly up to a midnight + horizon: that midnight is labelled
    assert churn.churn_split(T(2026, 10, 6), T(2026, 12, 4), horizon_days=14).test[-1] == d(2026, 11, 20)


def test_split_refuses_a_history_too_short_for_the_horizon() -> None:
    with pytest.raises(ValueError, match=r"too short .* 30-day horizon: it needs about 75 days"):
        churn.churn_split(T(2026, 10, 6, 19, 9), T(2026, 12, 4, 14, 0), horizon_days=30)
    with pytest.raises(ValueError, match="too short"):
        churn.churn_split(T(2026, 10, 6), T(2026, 10, 20), horizon_days=1, test_dates=3)


def test_inputs_are_float64_in_order_and_missing_counts_are_zero() -> None:
    raw = pd.DataFrame({"cust_txn_7d": [3, None], "tenure_days": [1.5, 2.0], "extra": ["x", "y"],
                        "invoices_paid": [None, 2.0], "days_since_last_paid": [None, 4.25],
                        "monthly_price": [D("9.99"), None], "is_yearly": [0.0, 1.0], "cust_txn_30d": [5, 6],
                        "cust_amount_usd_30d": [None, 12.5]})                     # profile_payments missing
    out = churn.churn_inputs(raw)
    assert list(out.columns) == list(churn.INPUT_COLUMNS) and set(out.dtypes) == {np.dtype("float64")}
    got = out.to_dict(orient="list")
    assert got["tenure_days"] == [1.5, 2.0] and got["invoices_paid"] == [0.0, 2.0]
    assert math.isnan(got["days_since_last_paid"][0]) and got["days_since_last_paid"][1] == 4.25
    assert got["monthly_price"][0] == 9.99 and math.isnan(got["monthly_price"][1])
    assert got["cust_txn_7d"] == [3.0, 0.0] and got["cust_amount_usd_30d"] == [0.0, 12.5]
    assert got["profile_payments"] == [0.0, 0.0]


def test_pyfunc_predict_is_the_estimators_probability_whatever_the_column_order() -> None:
    rng = np.random.default_rng(0)
    train = pd.DataFrame(rng.uniform(0, 10, size=(60, len(churn.INPUT_COLUMNS))), columns=list(churn.INPUT_COLUMNS))
    labels = (train["tenure_days"] < 3).to_numpy()
    estimator = churn.make_estimator(seed=1)
    estimator.set_params(max_iter=10)
    estimator.fit(churn.churn_inputs(train).to_numpy(), labels)
    model = churn.ChurnModel(estimator)
    shuffled = train[list(reversed(churn.INPUT_COLUMNS))].head(5)
    got = model.predict(None, shuffled)
    assert got.name == "score" and list(got.index) == list(shuffled.index)
    np.testing.assert_array_equal(got.to_numpy(), estimator.predict_proba(train.head(5).to_numpy())[:, 1])
    assert ((got >= 0) & (got <= 1)).all()


def test_metrics_on_hand_worked_scores_and_one_class() -> None:
    got = churn.churn_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    assert got["examples"] == 4.0 and got["churned"] == 2.0
    assert got["roc_auc"] == 0.75                             # 3 of the 4 (churned, kept) pairs ordered right
    assert abs(got["average_precision"] - (0.5 * 1 + 0.5 * 2 / 3)) < 1e-12
    none = churn.churn_metrics(np.array([0, 0]), np.array([0.2, 0.3]))
    assert none["churned"] == 0.0 and math.isnan(none["roc_auc"]) and math.isnan(none["average_precision"])


class FakeStore:
    """Answers get_historical_features from fixed feature rows (customer 10 at 03-08 only), recording the
    entity rows it was asked for."""

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark
        self.asked: list[tuple[Any, ...]] = []
        self.refs: list[str] = []

    def get_historical_features(self, entity_df: DataFrame, features: list[str]) -> FakeStore:
        self.asked = sorted(tuple(r) for r in entity_df.collect())
        self.refs = features
        known = self.spark.createDataFrame(
            [(10, T(2026, 3, 8), 4, 55.5, 1, 9)], "customer_id bigint, event_timestamp timestamp, cust_txn_30d bigint, "
            "cust_amount_usd_30d double, cust_txn_7d bigint, profile_payments bigint")
        self.result = entity_df.join(known, on=["customer_id", "event_timestamp"], how="left")
        return self

    def to_spark_df(self) -> DataFrame:
        return self.result


def test_customer_features_are_asked_once_per_customer_and_time_and_joined_to_each_subscription(
        spark: SparkSession) -> None:
    store = FakeStore(spark)
    facts = churn.active_subscriptions(*sources(spark), [MAR_8])
    out = churn.with_customer_features(store, facts)
    assert store.refs == list(churn.FEATURE_REFS)
    assert store.asked == [(10, T(2026, 3, 8)), (20, T(2026, 3, 8)), (50, T(2026, 3, 8))]   # 10 has subs 1 and 7
    got = {r["subscription_id"]: tuple(r[c] for c in churn.FEATURE_NAMES) for r in out.collect()}
    assert got == {1: (4, 55.5, 1, 9), 7: (4, 55.5, 1, 9), 2: (None,) * 4, 5: (None,) * 4}


def test_score_rows_have_the_table_layout(spark: SparkSession) -> None:
    from lakehouse.ml.tables import CHURN_SCORES

    scored = churn.active_subscriptions(*sources(spark), [MAR_8]).where("subscription_id = 7").selectExpr(
        "*", "0.25 AS score")
    out = churn.churn_score_rows(scored, "3")
    assert out.schema.simpleString() == CHURN_SCORES.schema.simpleString()
    row = out.collect()[0].asDict()
    assert {k: v for k, v in row.items() if k != "scored_at"} == {
        "subscription_id": 7, "customer_id": 10, "as_of": T(2026, 3, 8), "score": 0.25,
        "model_name": "churn_classifier", "model_version": "3"}
    assert row["scored_at"] is not None
