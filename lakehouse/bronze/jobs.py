"""Job functions of the `bronze` layer (wired to `jobs/*.py` and `lakehouse run` in lakehouse.common.jobs)."""

from __future__ import annotations

import argparse

from pyspark.sql import SparkSession

from lakehouse.bronze.ingest import run_bronze
from lakehouse.common.config import Settings
from lakehouse.common.jobs import JobOutcome, run_streaming


def bronze_job(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> JobOutcome:
    """Kafka -> bronze: `--once` catches up (availableNow) and stops; without it, a long-running service
    that stops cleanly on SIGTERM or Ctrl-C (a batch cut short is re-run on the next start)."""
    stats = run_streaming("bronze", args.once,
                          lambda should_stop: run_bronze(spark, settings, once=args.once, should_stop=should_stop))
    if stats is None:
        return JobOutcome(rows_written=0, summary={"bronze": {"interrupted": True}})
    return JobOutcome(rows_written=stats.rows,
                      summary={"mode": "once" if args.once else "continuous", "bronze": stats.as_dict()})
