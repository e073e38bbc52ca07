"""The features and models steps of `lakehouse demo`: features -> train -> register -> promote -> score.

The demo's history is short (7 days by default), so unless the configuration was changed the split uses
1-day validation and test windows and a 1-day label delay, or none when the history has fewer than 6 days
(conf: ml.label_delay_days = 30, 14-day windows); the figures demonstrate the chain, not the model.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import statistics
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.common.config import Settings, load_settings

SPLIT_KEYS = ("label_delay_days", "validation_days", "test_days")


def demo_split(history_days: int) -> dict[str, int]:
    """Validation and test of one day each, separated by a 1-day label delay when the labelled history
    has room for it (6 days or more), else with none."""
    return {"label_delay_days": 1 if history_days >= 6 else 0, "validation_days": 1, "test_days": 1}


def demo_settings(settings: Settings, history_days: int) -> tuple[Settings, bool]:
    """`settings` with the demo's short split when ml.* still has its configured defaults."""
    defaults = load_settings(settings.env, environ={}).ml
    if any(getattr(settings.ml, k) != getattr(defaults, k) for k in SPLIT_KEYS):
        return settings, False
    split: dict[str, Any] = dict(demo_split(history_days))
    return dataclasses.replace(settings, ml=dataclasses.replace(settings.ml, **split)), True


def run_features_demo(spark: SparkSession, settings: Settings) -> dict[str, Any]:
    from lakehouse.features.jobs import refresh_features

    result = refresh_features(spark, settings, progress=lambda m: print(f"   {m}", flush=True))
    return {"rows": sum(result["rows"].values()), "tables": len(result["rows"]), "skew": result["skew"],
            "ok": result["skew"]["differing"] == 0}


def run_ml_demo(spark: SparkSession, settings: Settings) -> dict[str, Any]:
    """Trains, promotes, batch-scores every payment and scores the latest payment online a few times."""
    from lakehouse.features.jobs import feature_payments
    from lakehouse.ml.dataset import LABEL, labelled_payments
    from lakehouse.ml.registry import promote
    from lakehouse.ml.scoring import score_batch
    from lakehouse.ml.serve import Scorer
    from lakehouse.ml.train import train

    bounds = (labelled_payments(spark, settings).where(F.col(LABEL).isNotNull())
              .agg(F.min("created_at").alias("first"), F.max("created_at").alias("last")).first())
    days = (bounds["last"].date() - bounds["first"].date()).days + 1 if bounds and bounds["first"] else 0
    ml_settings, shortened = demo_settings(settings, days)
    if shortened:
        print(f"   (demo split over {days} days of labelled history: label delay {ml_settings.ml.label_delay_days} "
              "day(s), validation and test 1 day each; conf ml.* has the real ones)", flush=True)

    def say(message: str) -> None:
        print(f"   {message}", flush=True)

    trained = train(spark, ml_settings, progress=say)
    promotion = promote(spark, ml_settings)
    say(f"ml: {'promoted' if promotion.promoted else 'refused'}: {promotion.reason}")
    scored = score_batch(spark, ml_settings, progress=say)
    latest = feature_payments(spark, ml_settings).orderBy(F.col("created_at").desc()).first()
    online: dict[str, Any] = {}
    if latest is not None:
        scorer = Scorer(ml_settings)
        payment = {**latest.asDict(), "ip_latitude": latest["ip_lat"], "ip_longitude": latest["ip_lon"],
                   "created_at": dt.datetime.now(dt.UTC)}
        timings = []
        for _ in range(50):
            decision = scorer.score(payment)
            timings.append(decision.features_ms + decision.model_ms)
        online = {"decision": decision.decision, "score": round(decision.score, 4),
                  "median_ms": round(statistics.median(timings), 2)}
    test = trained.runs[trained.chosen]["test"]
    return {"model": ml_settings.ml.model_name, "version": trained.version, "kind": trained.chosen,
            "promoted": promotion.promoted, "champion_version": trained.version if promotion.promoted
            else promotion.champion_version, "test": test, "rows": trained.rows, "frauds": trained.frauds,
            "scored": scored["scored"], "declined": scored["declined"], "online": online, "ok": True}
