"""The silver steps of `lakehouse demo`: silver catches up with bronze, then is reconciled with PostgreSQL."""

from __future__ import annotations

from typing import Any

from pyspark.sql import SparkSession

from lakehouse.common.config import Settings
from lakehouse.silver.ingest import run_silver
from lakehouse.silver.reconcile import reconcile


def run_silver_demo(spark: SparkSession, settings: Settings) -> dict[str, Any]:
    """`run silver --once`: the changes applied and the rows quarantined."""
    stats = run_silver(spark, settings, once=True)
    return {"changes": stats.changes, "quarantined": sum(stats.quarantined.values())}


def run_reconcile_demo(spark: SparkSession, settings: Settings) -> dict[str, Any]:
    """`reconcile`: the tables compared, silver's rows and the tables that differ."""
    reports = reconcile(spark, settings)
    differing = [r.table for r in reports if not r.ok]
    return {"tables": len(reports), "rows": sum(r.silver_rows for r in reports), "differing": differing,
            "ok": not differing}
