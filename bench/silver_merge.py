"""Silver: changes applied per second (catch-up), and commit in PostgreSQL -> row visible in silver.

    python bench/silver_merge.py [--days 14] [--rate 200] [--seconds 60] [--warmup 20] [--skip-latency]

Runs a private stack (PostgreSQL, Kafka, Kafka Connect with Debezium; free ports, temporary state dir).

1. Throughput: `--days` of simulated history (`lakehouse simulate`'s defaults: 60 merchants, 4,000
   customers) go through CDC's snapshot into bronze; then silver catches up (`availableNow`), timed.
   Figure: bronze change events applied (merged, or quarantined with a reason) per second of the silver
   run, the whole pipeline per change: typing, conformance, PII protection, validation, MERGE.
2. Latency: bronze and silver run continuously in one Spark session while `lakehouse simulate --rate`
   drives payments through the ACID service layer in another process. Per charge change: from its commit
   in PostgreSQL (`_committed_at`, Debezium's source.ts_ms) to the silver commit that wrote it (the
   `_commit_timestamp` of silver.charges' Change Data Feed). The first `--warmup` seconds are left out.

Prints the figures and writes bench/results/silver_merge.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import private_env, write_result

from lakehouse.oltp.simulator import percentile


def wait_for_silver(spark: Any, settings: Any, timeout_s: float) -> float | None:
    """Seconds until silver.charges holds as many rows as payments.charges (None: not within `timeout_s`)."""
    from lakehouse.common.tables import table_path
    from lakehouse.oltp.db import admin_connect

    with admin_connect(settings) as conn:
        expected = conn.execute("SELECT count(*) FROM payments.charges").fetchone()[0]
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        have = spark.read.format("delta").load(table_path(settings, "silver.charges")).count()
        print(f"silver_merge: silver.charges {have:,} / {expected:,}", file=sys.stderr, flush=True)
        if have >= expected:
            return round(time.monotonic() - started, 1)
        time.sleep(10)
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=14, help="days of history for the throughput run (default 14)")
    ap.add_argument("--rate", type=float, default=200, help="payments per second in the latency run (default 200)")
    ap.add_argument("--seconds", type=float, default=60, help="traffic duration of the latency run (default 60)")
    ap.add_argument("--warmup", type=float, default=20, help="seconds of traffic left out of the latency figures")
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--catch-up-timeout", type=float, default=1200,
                    help="seconds to wait after the traffic for silver.charges to hold every charge (default 1200)")
    ap.add_argument("--skip-latency", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    logging.getLogger("lakehouse.silver.ingest").setLevel(logging.INFO)     # one line per batch
    env = private_env()
    os.environ.update(env)

    from pyspark.sql import functions as F

    from lakehouse.bronze.ingest import run_bronze, start_bronze
    from lakehouse.cdc import connector as cdc
    from lakehouse.common.config import load_settings
    from lakehouse.common.spark import get_spark
    from lakehouse.common.tables import table_path
    from lakehouse.oltp.db import admin_connect
    from lakehouse.oltp.migrate import migrate
    from lakehouse.oltp.simulator import SimConfig, backfill
    from lakehouse.oltp.vault import load_vault_key
    from lakehouse.silver.ingest import run_silver, start_silver
    from lakehouse.stack import stack

    settings = load_settings("local")
    state = env["LAKEHOUSE__PATHS__STATE_DIR"]
    cfg = SimConfig(seed=42, days=args.days, end=dt.datetime.now(dt.UTC).date(), merchants=60, customers=4000)
    figures: dict[str, Any] = {}
    queries = []
    try:
        stack.up(settings, only=["postgres", "kafka", "connect"])
        migrate(settings)
        with admin_connect(settings) as conn:
            loaded = backfill(conn, cfg, load_vault_key(settings), progress=False)
        cdc.start(settings, wait=True)
        spark = get_spark(settings, app_name="bench-silver-merge")
        time.sleep(10)                                   # the snapshot reaches Kafka
        bronze = run_bronze(spark, settings, once=True)
        print(f"silver_merge: {bronze.rows:,} change events in bronze; silver catch-up", file=sys.stderr, flush=True)
        started = time.monotonic()
        silver = run_silver(spark, settings, once=True)
        seconds = time.monotonic() - started
        figures.update({
            "history_days": args.days,
            "rows_loaded": sum(loaded.values()),
            "bronze_change_events": bronze.rows,
            "silver_changes_applied": silver.changes,
            "silver_batches": silver.batches,
            "silver_catch_up_s": round(seconds, 1),
            "silver_changes_per_s": round(silver.changes / seconds, 1),
            "silver_quarantined": sum(silver.quarantined.values()),
        })

        if not args.skip_latency:
            bronze_query, bstats = start_bronze(spark, settings, once=False)
            silver_query, sstats = start_silver(spark, settings, once=False)
            queries = [bronze_query, silver_query]
            time.sleep(15)
            traffic_start_ms = time.time() * 1000
            sim = subprocess.run([str(Path(sys.executable).parent / "lakehouse"), "simulate", "--seed", "43",
                                  "--rate", str(args.rate), "--duration", str(args.seconds), "--workers",
                                  str(args.workers)], capture_output=True, text=True, env=os.environ.copy())
            if sim.returncode != 0:
                raise RuntimeError(f"lakehouse simulate failed:\n{sim.stderr[-3000:]}")
            live = json.loads(sim.stdout)
            traffic_end_ms = time.time() * 1000
            caught_up_s = wait_for_silver(spark, settings, args.catch_up_timeout)
            for q in queries:
                if not q.isActive:
                    raise RuntimeError(f"query {q.name} ended: {q.exception()}")
            progress = [p for p in silver_query.recentProgress if p.numInputRows > 0]
            for q in queries:
                q.stop()
            window_start = dt.datetime.fromtimestamp((traffic_start_ms + args.warmup * 1000) / 1000, dt.UTC)
            cdf = (spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", 0)
                   .load(table_path(settings, "silver.charges"))
                   .where(F.col("_change_type").isin("insert", "update_postimage")
                          & (F.col("_committed_at") >= F.lit(window_start.replace(tzinfo=None))))
                   .select((F.unix_millis("_commit_timestamp") - F.unix_millis("_committed_at")).alias("ms")))
            latencies = [r["ms"] / 1000 for r in cdf.collect()]
            measured_s = (traffic_end_ms - traffic_start_ms) / 1000 - args.warmup
            figures.update({
                "rate_target_payments_per_s": args.rate,
                "payments_committed": live["committed"],
                "payments_per_s_achieved": live["rate_achieved"],
                "trigger_interval_bronze": settings.bronze.trigger_interval,
                "trigger_interval_silver": settings.silver.trigger_interval,
                "charge_changes_measured": len(latencies),
                "charge_changes_per_s": round(len(latencies) / measured_s, 1) if measured_s > 0 else None,
                "latency_p50_s": round(percentile(latencies, 50), 2) if latencies else None,
                "latency_p95_s": round(percentile(latencies, 95), 2) if latencies else None,
                "latency_max_s": round(max(latencies), 2) if latencies else None,
                "latency_mean_s": round(statistics.fmean(latencies), 2) if latencies else None,
                "silver_batch_s_median": round(statistics.median(p.batchDuration for p in progress) / 1000, 2)
                if progress else None,
                "silver_batches_live": len(progress),
                "silver_caught_up_after_traffic_s": caught_up_s,
                "bronze_batches_live": bstats.batches,
                "silver_changes_live": sstats.changes,
                "load_avg_1m_after": round(os.getloadavg()[0], 1),
            })
        spark.stop()
    finally:
        for q in queries:
            if q.isActive:
                q.stop()
        stack.down(settings, purge=True)
        shutil.rmtree(state, ignore_errors=True)
    write_result("silver_merge", figures, {"days": args.days, "rate": args.rate, "seconds": args.seconds,
                                           "warmup": args.warmup})


if __name__ == "__main__":
    main()
