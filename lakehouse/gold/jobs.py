"""Job functions of the `gold` layer (wired to `jobs/gold_build.py` and `lakehouse run gold`)."""

from __future__ import annotations

import argparse

from pyspark.sql import SparkSession

from lakehouse.common.config import Settings
from lakehouse.common.jobs import JobOutcome
from lakehouse.gold.build import build_gold


def gold_job(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> JobOutcome:
    """silver -> gold: every dimension, fact and aggregate built from silver's current state."""
    stats = build_gold(spark, settings)
    return JobOutcome(rows_written=sum(stats.rows.values()), summary={"gold": stats.as_dict()})
