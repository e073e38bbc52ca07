"""Job functions of the models (`lakehouse ml …`, `lakehouse run score`, `jobs/score_batch.py` and friends)."""

from __future__ import annotations

import argparse
import datetime as dt

from pyspark.sql import SparkSession

from lakehouse.common.config import Settings
from lakehouse.common.jobs import JobOutcome


def _say(message: str) -> None:
    print(message, flush=True)


def train_arguments(parser: argparse.ArgumentParser) -> None:
    from lakehouse.ml.train import MODEL_KINDS

    parser.add_argument("--kinds", nargs="+", choices=MODEL_KINDS, default=list(MODEL_KINDS),
                        help="models to fit; the best on validation becomes the challenger (default: all)")


def train_job(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> JobOutcome:
    """Point-in-time training set from Feast, models logged to MLflow, the best registered as challenger."""
    from lakehouse.ml.train import train

    result = train(spark, settings, tuple(args.kinds), progress=_say)
    return JobOutcome(rows_written=sum(result.rows.values()), summary={"train": result.as_dict()})


def promote_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", help="the model version to consider (default: the challenger)")


def promote_job(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> JobOutcome:
    """The promotion gate; a refused promotion is a successful run (the gate did its job) that says so."""
    from lakehouse.ml.registry import promote

    result = promote(spark, settings, version=args.version)
    _say(f"ml: {'PROMOTED' if result.promoted else 'REFUSED'}: {result.reason}")
    return JobOutcome(rows_written=1, summary={"promotion": result.as_dict()})


def score_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", type=dt.datetime.fromisoformat,
                        help="score the payments created since this UTC time (default: those not scored yet)")
    parser.add_argument("--alias", default="champion", help="the model alias to score with (default champion)")


def score_job(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> JobOutcome:
    """Batch scoring into gold.fact_payment_scores."""
    from lakehouse.ml.scoring import score_batch

    result = score_batch(spark, settings, since=args.since, alias=args.alias, progress=_say)
    return JobOutcome(rows_written=result["scored"], summary={"score": result})


def monitor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--days", type=int, default=7, help="recent scoring window in days (default 7)")


def monitor_job(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> JobOutcome:
    """Drift and performance of the champion into gold.ml_monitoring."""
    from lakehouse.ml.monitor import monitor

    result = monitor(spark, settings, days=args.days, progress=_say)
    return JobOutcome(rows_written=int(result.get("checks", 0)), summary={"monitor": result})


def churn_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--horizon-days", type=int, default=14,
                        help="a subscription churns when canceled within this many days (default 14; the history "
                             "needs about 1 + 2 x horizon + 14 days)")


def churn_job(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> JobOutcome:
    """The churn model: trained from the feature store, registered, and the active subscriptions scored."""
    from lakehouse.ml.churn import score_churn, train_churn

    trained = train_churn(spark, settings, horizon_days=args.horizon_days, progress=_say)
    scored = score_churn(spark, settings, progress=_say)
    return JobOutcome(rows_written=int(scored.get("scored", 0)), summary={"train": trained, "score": scored})
