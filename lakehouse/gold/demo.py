"""The gold step of `lakehouse demo`: gold built from silver, reconciled with the OLTP ledger, and one
query of the pack."""

from __future__ import annotations

from typing import Any

from pyspark.sql import SparkSession

from lakehouse.common.config import Settings
from lakehouse.gold.build import build_gold
from lakehouse.gold.querypack import bind, load_query, run
from lakehouse.gold.reconcile import reconcile_gold


def run_gold_demo(spark: SparkSession, settings: Settings) -> dict[str, Any]:
    """`run gold --once`, `reconcile --layer gold` and `query top_merchants --param top=3`."""
    stats = build_gold(spark, settings)
    [report] = reconcile_gold(spark, settings)
    top = load_query("top_merchants")
    rows = run(spark, top, bind(top, {"top": "3"})).collect()
    return {"tables": len(stats.rows), "rows": sum(stats.rows.values()), "ledger_days": report.oltp_rows,
            "ledger_ok": report.ok, "top": [(r["merchant"], r["net_usd"]) for r in rows], "ok": report.ok}
