"""Job functions of the `silver` layer (wired to `jobs/*.py` and `lakehouse run` in lakehouse.common.jobs)."""

from __future__ import annotations

import argparse

from pyspark.sql import SparkSession

from lakehouse.common.config import Settings
from lakehouse.common.jobs import JobOutcome, run_streaming
from lakehouse.silver.ingest import run_silver


def silver_job(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> JobOutcome:
    """bronze -> silver: `--once` catches up (availableNow) and stops; without it, a long-running service
    that stops cleanly on SIGTERM or Ctrl-C."""
    stats = run_streaming("silver", args.once,
                          lambda should_stop: run_silver(spark, settings, once=args.once, should_stop=should_stop))
    if stats is None:
        return JobOutcome(rows_written=0, summary={"silver": {"interrupted": True}})
    return JobOutcome(rows_written=stats.changes,
                      summary={"mode": "once" if args.once else "continuous", "silver": stats.as_dict()})
