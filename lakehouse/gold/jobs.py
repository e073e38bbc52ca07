"""Job functions of the `gold` layer (wired to `jobs/gold_build.py` and `lakehouse run gold`)."""

from __future__ import annotations

import argparse
import logging
import re
import time

from pyspark.sql import SparkSession

from lakehouse.common.config import Settings
from lakehouse.common.jobs import JobOutcome, run_streaming
from lakehouse.gold.build import GoldStats
from lakehouse.gold.refresh import refresh_gold

log = logging.getLogger(__name__)


def gold_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--full", action="store_true",
                        help="rebuild every gold table from silver instead of refreshing from the Change Data Feed")


def interval_seconds(interval: str) -> float:
    """'60 seconds' / '500 milliseconds' / '2 minutes' / '1 hour' -> seconds (validated by the config)."""
    m = re.match(r"^(\d+) (millisecond|second|minute|hour)s?$", interval)
    if not m:
        raise ValueError(f"not an interval: {interval!r}")
    return int(m.group(1)) * {"millisecond": 0.001, "second": 1, "minute": 60, "hour": 3600}[m.group(2)]


def gold_job(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> JobOutcome:
    """silver -> gold. `--once`: one refresh (incremental from the watermarks; a full build the first time
    or with `--full`). Without it: a refresh every `gold.refresh_interval` until SIGTERM or Ctrl-C."""
    if args.once:
        stats = refresh_gold(spark, settings, full=args.full)
        return JobOutcome(rows_written=sum(stats.rows.values()), summary={"gold": stats.as_dict()})

    every = interval_seconds(settings.gold.refresh_interval)

    def loop(should_stop: object) -> list[GoldStats]:
        assert callable(should_stop)
        done: list[GoldStats] = []
        full = args.full
        while not should_stop():
            done.append(refresh_gold(spark, settings, full=full))
            full = False
            deadline = time.monotonic() + every
            while time.monotonic() < deadline and not should_stop():
                time.sleep(min(1.0, every))
        return done

    refreshes = run_streaming("gold", False, loop) or []
    return JobOutcome(rows_written=sum(sum(s.rows.values()) for s in refreshes),
                      summary={"mode": "continuous", "refreshes": len(refreshes),
                               "gold": refreshes[-1].as_dict() if refreshes else None})
