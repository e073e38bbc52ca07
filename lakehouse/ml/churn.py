"""Subscription churn risk: will an active subscription be canceled within the next `horizon_days`?

    active_subscriptions    silver.subscriptions x as_of midnights: the subscriptions active at each, with
                            what was known about them then (tenure, plan price, invoices paid)
    build_churn_examples    the same with the label `churned`: canceled within (as_of, as_of + horizon]
    churn_split             as_of midnights every 7 days; the latest ones test, earlier ones train
    with_customer_features  Feast's point-in-time join of the customer's payment features at as_of
    ChurnModel              the MLflow pyfunc: INPUT_COLUMNS in, P(churn) out
    train_churn             training set -> HistGradientBoostingClassifier -> MLflow run -> `churn_classifier`
    score_churn             today's active subscriptions -> `churn_classifier@champion` -> gold.fact_churn_scores

Point in time: an example at `as_of` (a midnight, UTC) uses only what had happened before it: the
subscription's creation, the invoices paid before it and Feast's feature rows with `event_ts <= as_of`.
The subscription's status and `canceled_at` only make the label. Silver keeps the current state of
`subscriptions` and `plans` (no history, unlike the SCD2 tables), so a plan change or a price change
after `as_of` would show through; the simulator and the OLTP service never change either.

History and split: the history starts at the first invoice (before it nothing tells whether invoices were
paid) and is known up to the latest event of the three tables. An as_of is labelled once its whole
horizon is known. The as_of dates step back every `STEP_DAYS` from the latest labelled one; the latest
`TEST_AS_OF_DATES` test, and training uses only earlier dates whose horizon ended by the first test date:
labels a model trained then could have known (the fraud split's label-delay gap, here = the horizon).
Without that gap, a subscription canceled during the test period would be a positive of the training set
too. The history therefore needs about 1 + 2 x horizon + 7 x (TEST_AS_OF_DATES - 1) days; `churn_split`
says so when it is shorter.

Scores: `score_churn` MERGEs the day's rows into gold.fact_churn_scores keyed by (subscription_id, as_of)
and deletes that as_of's rows the run did not produce: one row per active subscription and scoring day,
earlier days kept (the history a later evaluation of realized churn needs), a re-run on the same day
replaces that day's scores (e.g. after a new champion).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.common.config import Settings
from lakehouse.gold.dims import monthly_amount

try:
    from mlflow.pyfunc import PythonModel
except ImportError:  # pragma: no cover - mlflow is a pinned dependency
    PythonModel = object  # type: ignore[misc,assignment]

log = logging.getLogger(__name__)

MODEL_NAME = "churn_classifier"
EXPERIMENT = "churn"
CHAMPION, CHALLENGER = "champion", "challenger"
LABEL = "churned"
STEP_DAYS = 7
TEST_AS_OF_DATES = 3

SUBSCRIPTIONS = ("subscription_id bigint, customer_id bigint, plan_id bigint, status string, created_at timestamp, "
                 "canceled_at timestamp")
PLANS = "plan_id bigint, amount decimal(23,4), currency_code string, billing_interval string"
INVOICES = ("invoice_id bigint, subscription_id bigint, status string, created_at timestamp, paid_at timestamp, "
            "amount_usd decimal(25,2)")
SOURCE_TABLES = ("silver.subscriptions", "silver.plans", "silver.invoices", "gold.feat_payment_windows",
                 "gold.feat_customer_profile")

# The subscription's facts at as_of (active_subscriptions) and the customer's Feast features.
FACT_COLUMNS = ("tenure_days", "monthly_price", "is_yearly", "invoices_paid", "days_since_last_paid")
FEATURE_REFS = ("customer_30d_fv:cust_txn_30d", "customer_30d_fv:cust_amount_usd_30d", "customer_7d_fv:cust_txn_7d",
                "customer_profile_fv:profile_payments")
FEATURE_NAMES = tuple(ref.split(":", 1)[1] for ref in FEATURE_REFS)
INPUT_COLUMNS = FACT_COLUMNS + FEATURE_NAMES
# Missing means none: no invoice paid yet, no payment in the view's window (its TTL), no profile yet.
# `days_since_last_paid` (no invoice paid yet), `monthly_price` and `is_yearly` (unknown plan) stay NaN.
ZERO_WHEN_MISSING = ("invoices_paid", *FEATURE_NAMES)

_DAY_MICROS = 86_400_000_000.0


# ----------------------------------------------------------------------------------------- pure transforms

def midnight_column(day: Column) -> Column:
    """A DATE column -> the TIMESTAMP of its midnight UTC, whatever the session time zone."""
    return F.timestamp_seconds(F.unix_date(day).cast("bigint") * F.lit(86_400))


def _days_between(later: Column, earlier: Column) -> Column:
    """(later - earlier) in days, fractional, as DOUBLE (exact to the microsecond)."""
    return (F.unix_micros(later) - F.unix_micros(earlier)) / F.lit(_DAY_MICROS)


def active_subscriptions(subscriptions: DataFrame, plans: DataFrame, invoices: DataFrame,
                         as_of_dates: Sequence[dt.date]) -> DataFrame:
    """Per as_of date (its midnight UTC), the subscriptions active then: created before it and not canceled
    at or before it. Columns: `subscription_id`, `customer_id`, `event_timestamp` (the midnight) and
    FACT_COLUMNS, from what was known before the midnight only:

        tenure_days            days since the subscription was created (fractional)
        monthly_price          the plan's price per month in the plan's currency (a twelfth of a yearly one)
        is_yearly              1.0 for a yearly plan, 0.0 for a monthly one
        invoices_paid          invoices paid before the midnight
        days_since_last_paid   days since the latest of them (NULL: none yet)

    A subscription canceled exactly at the midnight is no longer active (the label window, (as_of,
    as_of + horizon], starts after it)."""
    if not as_of_dates:
        raise ValueError("active_subscriptions needs at least one as_of date")
    spark = subscriptions.sparkSession
    as_of = spark.createDataFrame([(d,) for d in sorted(set(as_of_dates))], "as_of_date date").select(
        midnight_column(F.col("as_of_date")).alias("event_timestamp"))
    at = F.col("event_timestamp")
    alive = (subscriptions.select("subscription_id", "customer_id", "plan_id", "created_at", "canceled_at")
             .crossJoin(F.broadcast(as_of))
             .where((F.col("created_at") < at) & (F.col("canceled_at").isNull() | (F.col("canceled_at") > at))))
    paid = (invoices.where((F.col("status") == F.lit("paid")) & F.col("paid_at").isNotNull())
            .select("subscription_id", "paid_at")
            .join(alive.select("subscription_id", "event_timestamp"), on="subscription_id", how="inner")
            .where(F.col("paid_at") < at)
            .groupBy("subscription_id", "event_timestamp")
            .agg(F.count(F.lit(1)).alias("__paid"), F.max("paid_at").alias("__last_paid_at")))
    interval = F.col("billing_interval")
    plan = plans.select("plan_id", monthly_amount(F.col("amount"), interval).cast("double").alias("monthly_price"),
                        (interval == F.lit("year")).cast("double").alias("is_yearly"))
    return (alive.join(paid, on=["subscription_id", "event_timestamp"], how="left")
            .join(F.broadcast(plan), on="plan_id", how="left")
            .select("subscription_id", "customer_id", "event_timestamp",
                    _days_between(at, F.col("created_at")).alias("tenure_days"),
                    "monthly_price", "is_yearly",
                    F.coalesce(F.col("__paid"), F.lit(0)).cast("double").alias("invoices_paid"),
                    _days_between(at, F.col("__last_paid_at")).alias("days_since_last_paid")))


def build_churn_examples(subscriptions: DataFrame, plans: DataFrame, invoices: DataFrame,
                         as_of_dates: Sequence[dt.date], horizon_days: int) -> DataFrame:
    """`active_subscriptions` with the label `churned` (boolean): the subscription was canceled within
    (as_of, as_of + horizon_days]. Only the label looks past as_of."""
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    facts = active_subscriptions(subscriptions, plans, invoices, as_of_dates)
    ends = subscriptions.select("subscription_id", "canceled_at")
    horizon_end = F.col("event_timestamp") + F.expr(f"INTERVAL {int(horizon_days)} DAYS")
    churned = F.coalesce(F.col("canceled_at") <= horizon_end, F.lit(False))
    return (facts.join(ends, on="subscription_id", how="left")
            .select(*facts.columns, churned.alias(LABEL)))


def churn_score_rows(scored: DataFrame, model_version: str) -> DataFrame:
    """`active_subscriptions` rows with `score` -> gold.fact_churn_scores rows (scored now)."""
    from lakehouse.common.tables import conform
    from lakehouse.ml.tables import CHURN_SCORES

    return conform(scored.select(
        "subscription_id", "customer_id", F.col("event_timestamp").alias("as_of"),
        F.col("score").cast("double").alias("score"), F.lit(MODEL_NAME).alias("model_name"),
        F.lit(str(model_version)).alias("model_version"), F.current_timestamp().alias("scored_at")), CHURN_SCORES)


# ------------------------------------------------------------------------------------------------ the split

@dataclass(frozen=True)
class ChurnSplit:
    """The as_of dates of a training run (ascending); `gap`: labelled dates left out (their horizon ends
    after the first test date)."""

    train: tuple[dt.date, ...]
    gap: tuple[dt.date, ...]
    test: tuple[dt.date, ...]

    def as_params(self) -> dict[str, str]:
        return {k: ",".join(d.isoformat() for d in v) for k, v in self.__dict__.items()}


def churn_split(first: dt.datetime, known_until: dt.datetime, horizon_days: int, step_days: int = STEP_DAYS,
                test_dates: int = TEST_AS_OF_DATES) -> ChurnSplit:
    """The as_of midnights of a history that starts at `first` and is known up to `known_until` (naive
    UTC): every `step_days` back from the latest midnight whose horizon has passed (midnight + horizon <=
    known_until) to the first midnight after `first`. The latest `test_dates` test; training takes those
    whose horizon ended by the first test date. Fails when that leaves no training date."""
    if horizon_days <= 0 or step_days <= 0 or test_dates <= 0:
        raise ValueError("horizon_days, step_days and test_dates must be positive")
    horizon = dt.timedelta(days=horizon_days)
    first_as_of = first.date() + dt.timedelta(days=1)
    last_as_of = (known_until - horizon).date()
    dates: list[dt.date] = []
    day = last_as_of
    while day >= first_as_of:
        dates.append(day)
        day -= dt.timedelta(days=step_days)
    dates.reverse()
    test = dates[-test_dates:] if len(dates) > test_dates else []
    train = [d for d in dates[:-test_dates] if d + horizon <= test[0]] if test else []
    if not train:
        needed = 1 + 2 * horizon_days + step_days * (test_dates - 1)
        raise ValueError(
            f"history {first:%Y-%m-%d %H:%M} .. {known_until:%Y-%m-%d %H:%M} ({(known_until - first).days} days) is "
            f"too short for a churn split with a {horizon_days}-day horizon: it needs about {needed} days (the "
            f"latest {test_dates} labelled as_of dates every {step_days} days to test, and earlier ones whose "
            "horizon ended by the first of them to train); use a shorter horizon or more history")
    return ChurnSplit(tuple(train), tuple(d for d in dates if d not in train and d not in test), tuple(test))


# ----------------------------------------------------------------------------------- model inputs and model

def churn_inputs(raw: pd.DataFrame) -> pd.DataFrame:
    """Raw columns (any order, extra columns ignored, a missing one is all missing) -> INPUT_COLUMNS as
    float64, in order; ZERO_WHEN_MISSING's missing values are 0."""
    out = pd.DataFrame(index=raw.index)
    for name in INPUT_COLUMNS:
        if name in raw:
            values = pd.to_numeric(raw[name], errors="coerce").astype("float64")
        else:
            values = pd.Series(np.nan, index=raw.index, dtype="float64")
        out[name] = values.fillna(0.0) if name in ZERO_WHEN_MISSING else values
    return out


class ChurnModel(PythonModel):
    """The churn classifier behind MLflow's pyfunc interface: INPUT_COLUMNS in, P(churn) out."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def score(self, raw: pd.DataFrame) -> np.ndarray:
        """P(churn within the horizon) per row of raw columns."""
        scores: np.ndarray = self.estimator.predict_proba(churn_inputs(raw).to_numpy())[:, 1]
        return scores

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.Series:
        return pd.Series(self.score(model_input), index=model_input.index, name="score")


def make_estimator(seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_leaf_nodes=15, l2_regularization=1.0,
                                          class_weight="balanced", random_state=seed)


def churn_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Examples, churned, ROC AUC and average precision (both NaN when the labels have one class only)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    labels = np.asarray(labels).astype(bool)
    both = 0 < labels.sum() < len(labels)
    return {"examples": float(len(labels)), "churned": float(labels.sum()),
            "roc_auc": float(roc_auc_score(labels, scores)) if both else math.nan,
            "average_precision": float(average_precision_score(labels, scores)) if both else math.nan}


def input_schema() -> Any:
    """The pyfunc signature's inputs: every INPUT_COLUMN, double, optional."""
    from mlflow.types import ColSpec, DataType, Schema

    return Schema([ColSpec(DataType.double, c, required=False) for c in INPUT_COLUMNS])


# ---------------------------------------------------------------------------------------------------- I/O

def read_sources(spark: SparkSession, settings: Settings) -> tuple[DataFrame, DataFrame, DataFrame]:
    """silver.subscriptions, silver.plans, silver.invoices with the columns the model reads."""
    from lakehouse.features.jobs import read_silver_table

    return (read_silver_table(spark, settings, "subscriptions", SUBSCRIPTIONS),
            read_silver_table(spark, settings, "plans", PLANS),
            read_silver_table(spark, settings, "invoices", INVOICES))


def history_bounds(subscriptions: DataFrame, invoices: DataFrame) -> tuple[dt.datetime, dt.datetime]:
    """(first invoice's creation, latest event of subscriptions and invoices): the history churn is learnt from."""
    events = (subscriptions.select(F.col("created_at").alias("t"))
              .unionByName(subscriptions.select(F.col("canceled_at").alias("t")))
              .unionByName(invoices.select(F.col("created_at").alias("t")))
              .unionByName(invoices.select(F.col("paid_at").alias("t"))))
    first = invoices.agg(F.min("created_at").alias("first")).first()
    last = events.agg(F.max("t").alias("last")).first()
    if first is None or first["first"] is None or last is None or last["last"] is None:
        raise ValueError("no invoices in silver: churn needs subscription history (run the pipeline or import history)")
    return first["first"], last["last"]


def with_customer_features(store: Any, examples: DataFrame) -> DataFrame:
    """`examples` (`customer_id`, `event_timestamp`, ...) left-joined with the customer's FEATURE_REFS as of
    `event_timestamp` (Feast's point-in-time join, each customer and time asked once)."""
    from lakehouse.features.jobs import historical_features

    entities = examples.select("customer_id", "event_timestamp").distinct()
    features = historical_features(store, entities, list(FEATURE_REFS)).select(
        "customer_id", "event_timestamp", *FEATURE_NAMES)
    return examples.join(features, on=["customer_id", "event_timestamp"], how="left")


def _finite(values: dict[str, float]) -> dict[str, float | None]:
    return {k: (v if math.isfinite(v) else None) for k, v in values.items()}


def _log_run(settings: Settings, experiment_id: str, model: ChurnModel, frames: dict[str, pd.DataFrame],
             split: ChurnSplit, horizon_days: int, metrics: dict[str, dict[str, float]],
             versions: dict[str, int]) -> tuple[str, str]:
    """One MLflow run of the fitted model; returns (run id, logged model URI)."""
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema

    from lakehouse.ml.tracking import PIP_REQUIREMENTS

    with mlflow.start_run(experiment_id=experiment_id, run_name="churn hist_gradient_boosting") as run:
        mlflow.log_params({"model_kind": "hist_gradient_boosting", "seed": settings.ml.seed,
                           "horizon_days": horizon_days, "step_days": STEP_DAYS, "test_as_of_dates": TEST_AS_OF_DATES,
                           "features": ",".join(FEATURE_REFS), "inputs": ",".join(INPUT_COLUMNS),
                           **{f"as_of.{k}": v or "-" for k, v in split.as_params().items()},
                           **{f"rows.{k}": len(v) for k, v in frames.items()},
                           **{f"churned.{k}": int(v[LABEL].sum()) for k, v in frames.items()},
                           **{f"data_version.{k}": v for k, v in versions.items()},
                           **{f"estimator.{k}": v for k, v in model.estimator.get_params().items()}})
        mlflow.set_tags({"model_name": MODEL_NAME, "kind": "churn",
                         "data_versions": json.dumps(versions, sort_keys=True)})
        mlflow.log_metrics({f"{part}_{k}": v for part, values in metrics.items() for k, v in values.items()})
        example = churn_inputs(frames["train"]).head(3)
        signature = ModelSignature(inputs=input_schema(), outputs=Schema([ColSpec(DataType.double, "score")]))
        info = mlflow.pyfunc.log_model(name="model", python_model=model, signature=signature, input_example=example,
                                       pip_requirements=PIP_REQUIREMENTS)
        return run.info.run_id, info.model_uri


def _register(spark: SparkSession, settings: Settings, model_uri: str, run_id: str,
              evidence: dict[str, Any]) -> tuple[str, str]:
    """A new version of `churn_classifier`: `champion` when there is none yet, else `challenger` (there is
    no churn promotion gate yet); the change goes to ops.model_alias_history. Returns (version, alias)."""
    import mlflow
    from mlflow import MlflowClient

    from lakehouse.ml.registry import alias_version, record_alias_change

    client = MlflowClient()
    champion = alias_version(client, MODEL_NAME, CHAMPION)
    if champion is None:
        alias, previous = CHAMPION, None
        reason = "trained: no champion yet, the first churn model becomes the champion"
    else:
        alias, previous = CHALLENGER, alias_version(client, MODEL_NAME, CHALLENGER)
        reason = f"trained: challenger to champion v{champion.version} (no churn promotion gate: promote by hand)"
    version = str(mlflow.register_model(model_uri, MODEL_NAME, tags={"run_id": run_id}).version)
    client.set_registered_model_alias(MODEL_NAME, alias, version)
    record_alias_change(spark, settings, MODEL_NAME, alias, "set", previous.version if previous else None, version,
                        reason, evidence, run_id)
    return version, alias


def train_churn(spark: SparkSession, settings: Settings, horizon_days: int = 30,
                progress: Callable[[str], None] = log.info) -> dict[str, Any]:
    """Builds the point-in-time training set, fits the classifier on the training as_of dates, measures
    it on the test ones, logs it to MLflow (experiment `churn`) and registers it as `churn_classifier`."""
    from lakehouse.common.tables import delta_version, table_path
    from lakehouse.features.store import feature_store
    from lakehouse.ml.tracking import use_tracking

    started = time.monotonic()
    subscriptions, plans, invoices = read_sources(spark, settings)
    first, known_until = history_bounds(subscriptions, invoices)
    split = churn_split(first, known_until, horizon_days)
    progress(f"churn: history {first:%Y-%m-%d %H:%M} .. {known_until:%Y-%m-%d %H:%M}, horizon {horizon_days} days; "
             f"as_of dates {json.dumps(split.as_params())}")
    examples = build_churn_examples(subscriptions, plans, invoices, split.train + split.test, horizon_days)
    frame: pd.DataFrame = with_customer_features(feature_store(settings), examples).toPandas()
    as_of = pd.to_datetime(frame["event_timestamp"]).dt.date
    frames = {"train": frame[as_of.isin(split.train)].reset_index(drop=True),
              "test": frame[as_of.isin(split.test)].reset_index(drop=True)}
    rows = {k: len(v) for k, v in frames.items()}
    churned = {k: int(v[LABEL].sum()) for k, v in frames.items()}
    seconds = {"training_set": round(time.monotonic() - started, 1)}
    progress(f"churn: examples {json.dumps(rows)}, churned {json.dumps(churned)} ({seconds['training_set']:.0f}s)")
    labels = frames["train"][LABEL].astype(bool).to_numpy()
    if labels.sum() == 0 or labels.all():
        raise ValueError(f"the training as_of dates have {int(labels.sum())} churned in {len(labels)} subscriptions: "
                         "both classes are needed (more history, or another horizon)")
    t0 = time.monotonic()
    model = ChurnModel(make_estimator(settings.ml.seed))
    model.estimator.fit(churn_inputs(frames["train"]).to_numpy(), labels)
    metrics = {part: churn_metrics(frames[part][LABEL].astype(bool).to_numpy(), model.score(frames[part]))
               for part in ("train", "test")}
    if math.isnan(metrics["test"]["roc_auc"]):
        progress(f"churn: the test as_of dates have {churned['test']} churned in {rows['test']}: "
                 "ROC AUC and average precision are undefined (NaN)")
    experiment_id = use_tracking(settings, experiment=EXPERIMENT)
    versions = {}
    for name in SOURCE_TABLES:
        delta = delta_version(spark, table_path(settings, name))
        versions[name] = -1 if delta is None else delta
    run_id, model_uri = _log_run(settings, experiment_id, model, frames, split, horizon_days, metrics, versions)
    seconds["fit_and_log"] = round(time.monotonic() - t0, 1)
    evidence = {"horizon_days": horizon_days, "test_as_of": [d.isoformat() for d in split.test],
                "test": _finite(metrics["test"])}
    version, alias = _register(spark, settings, model_uri, run_id, evidence)
    seconds["total"] = round(time.monotonic() - started, 1)
    test = metrics["test"]
    progress(f"churn: test ROC AUC {test['roc_auc']:.4f}, average precision {test['average_precision']:.4f} "
             f"({churned['test']} churned in {rows['test']}); {MODEL_NAME} v{version} is the {alias} (run {run_id})")
    history = {"first": first.isoformat(), "known_until": known_until.isoformat()}
    return {"horizon_days": horizon_days, "history": history,
            "as_of": split.as_params(), "rows": rows, "churned": churned, "metrics": metrics, "run_id": run_id,
            "model_uri": model_uri, "model_name": MODEL_NAME, "version": version, "alias": alias, "seconds": seconds}


def upsert_churn_scores(spark: SparkSession, settings: Settings, rows: DataFrame, as_of: dt.date) -> None:
    """MERGE by (subscription_id, as_of); rows of the same as_of the run did not produce are deleted, so the
    day's rows are exactly this run's."""
    from delta.tables import DeltaTable

    from lakehouse.common.tables import ensure_table, table_path
    from lakehouse.ml.tables import CHURN_SCORES

    ensure_table(spark, settings, CHURN_SCORES)
    target = DeltaTable.forPath(spark, table_path(settings, CHURN_SCORES.full_name))
    same_day = F.col("t.as_of") == midnight_column(F.lit(as_of))
    (target.alias("t").merge(rows.alias("s"), "t.subscription_id = s.subscription_id AND t.as_of = s.as_of")
     .whenMatchedUpdateAll().whenNotMatchedInsertAll().whenNotMatchedBySourceDelete(condition=same_day).execute())


def score_churn(spark: SparkSession, settings: Settings, progress: Callable[[str], None] = log.info) -> dict[str, Any]:
    """Scores every subscription active at today's midnight (UTC) with `churn_classifier@champion` (through
    spark_udf) into gold.fact_churn_scores."""
    import mlflow
    from mlflow import MlflowClient

    from lakehouse.features.store import feature_store
    from lakehouse.ml.registry import alias_version
    from lakehouse.ml.tracking import use_tracking

    started = time.monotonic()
    use_tracking(settings, experiment=EXPERIMENT)
    champion = alias_version(MlflowClient(), MODEL_NAME, CHAMPION)
    if champion is None:
        raise LookupError(f"{MODEL_NAME} has no {CHAMPION}: train one first (train_churn)")
    version = str(champion.version)
    today = dt.datetime.now(dt.UTC).date()
    subscriptions, plans, invoices = read_sources(spark, settings)
    facts = active_subscriptions(subscriptions, plans, invoices, [today])
    features = with_customer_features(feature_store(settings), facts)
    udf = mlflow.pyfunc.spark_udf(spark, f"models:/{MODEL_NAME}/{version}", env_manager="local", result_type="double")
    scored = features.withColumn("score", udf(F.struct(*[F.col(c).cast("double").alias(c) for c in INPUT_COLUMNS])))
    rows = churn_score_rows(scored, version).cache()
    try:
        summary = rows.agg(F.count(F.lit(1)).alias("n"), F.avg("score").alias("mean"),
                           F.max("score").alias("max")).first()
        assert summary is not None
        upsert_churn_scores(spark, settings, rows, today)
    finally:
        rows.unpersist()
    n = int(summary["n"])
    mean = None if summary["mean"] is None else float(summary["mean"])
    progress(f"churn: scored {n:,} subscriptions active at {today} with {MODEL_NAME} v{version} "
             f"(mean score {mean if mean is None else round(mean, 4)}) in {time.monotonic() - started:.0f}s")
    return {"as_of": today.isoformat(), "scored": n, "mean_score": mean,
            "max_score": None if summary["max"] is None else float(summary["max"]),
            "model_name": MODEL_NAME, "model_version": version, "table": "gold.fact_churn_scores"}
