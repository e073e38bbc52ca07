"""Job functions of the `ops` layer (wired to `jobs/*.py` and `lakehouse run` in lakehouse.common.jobs)."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from pyspark.sql import SparkSession

from lakehouse.common.config import Settings
from lakehouse.common.jobs import JobOutcome
from lakehouse.ops.selfcheck import run_selfcheck


def selfcheck_job(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> JobOutcome:
    result = run_selfcheck(spark, settings, run_id=args.run_id, rows=args.rows, seed=args.seed)
    return JobOutcome(rows_written=result.rows, summary={"selfcheck": asdict(result)}, ok=result.ok)
