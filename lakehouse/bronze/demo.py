"""The bronze part of `lakehouse demo`: CDC running, then a catch-up of bronze that is checked against
PostgreSQL (every charge in the OLTP database is in bronze as a snapshot row or an insert)."""

from __future__ import annotations

import time
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.bronze.ingest import run_bronze
from lakehouse.bronze.tables import cdc_table
from lakehouse.common.config import Settings
from lakehouse.common.tables import table_path
from lakehouse.oltp.db import admin_connect

CHARGES = cdc_table("payments", "charges")


def charges_in_bronze(spark: SparkSession, settings: Settings) -> int:
    """Distinct charges with a snapshot row or an insert in bronze.cdc_payments_charges."""
    rows = spark.read.format("delta").load(table_path(settings, CHARGES.full_name))
    return (rows.where(F.col("_parse_error").isNull() & F.col("op").isin("r", "c"))
            .select(F.expr("after:charge_id::bigint"), F.expr("after:created_at::string")).distinct().count())


def run_bronze_demo(spark: SparkSession, settings: Settings, attempts: int = 10) -> dict[str, Any]:
    """Catches bronze up (`--once`) until it holds every charge PostgreSQL has (Debezium may still be
    sending the last changes), at most `attempts` times; returns what it saw."""
    with admin_connect(settings) as conn:
        row = conn.execute("SELECT count(*) FROM payments.charges").fetchone()
    expected = int(row[0]) if row else 0
    written: dict[str, int] = {}
    seen = 0
    for attempt in range(1, attempts + 1):
        for name, n in run_bronze(spark, settings, once=True).rows_by_table.items():
            written[name] = written.get(name, 0) + n
        seen = charges_in_bronze(spark, settings)
        if seen >= expected:
            break
        print(f"  bronze has {seen:,} of {expected:,} charges; Debezium is still sending (attempt {attempt})",
              flush=True)
        time.sleep(3)
    return {"rows_written": sum(written.values()), "rows_by_table": dict(sorted(written.items())),
            "charges_expected": expected, "charges_in_bronze": seen, "ok": seen == expected}
