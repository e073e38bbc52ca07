"""Job functions of the `bronze` layer (wired to `jobs/*.py` and `lakehouse run` in lakehouse.common.jobs)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType

from pyspark.sql import SparkSession

from lakehouse.bronze.ingest import run_bronze
from lakehouse.common.config import Settings
from lakehouse.common.jobs import JobOutcome

log = logging.getLogger(__name__)


def bronze_job(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> JobOutcome:
    """Kafka -> bronze: `--once` catches up (availableNow) and stops; without it, a long-running service
    that stops cleanly on SIGTERM or Ctrl-C (a batch cut short is re-run on the next start)."""
    stop = threading.Event()
    previous = None
    if not args.once and threading.current_thread() is threading.main_thread():
        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("bronze: signal %d, stopping", signum)
            stop.set()
        previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        try:
            stats = run_bronze(spark, settings, once=args.once, should_stop=stop.is_set)
        except KeyboardInterrupt:  # Ctrl-C: run_bronze already stopped the query on the way out
            log.info("bronze: interrupted")
            return JobOutcome(rows_written=0, summary={"bronze": {"interrupted": True}})
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return JobOutcome(rows_written=stats.rows,
                      summary={"mode": "once" if args.once else "continuous", "bronze": stats.as_dict()})
