"""The silver part of `lakehouse demo`: silver catches up with bronze, then is reconciled with PostgreSQL."""

from __future__ import annotations

from typing import Any

from pyspark.sql import SparkSession

from lakehouse.common.config import Settings
from lakehouse.silver.ingest import run_silver
from lakehouse.silver.reconcile import reconcile


def run_silver_demo(spark: SparkSession, settings: Settings) -> dict[str, Any]:
    """`run silver --once`, then `reconcile`; returns the changes applied, the rows quarantined and the
    reconciliation's tables and differences."""
    stats = run_silver(spark, settings, once=True)
    reports = reconcile(spark, settings)
    differing = [r.table for r in reports if not r.ok]
    return {"changes": stats.changes, "quarantined": sum(stats.quarantined.values()),
            "tables": len(reports), "rows": sum(r.silver_rows for r in reports),
            "differing": differing, "ok": not differing}
