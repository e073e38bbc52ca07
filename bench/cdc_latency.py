"""CDC latency: a transaction's commit in PostgreSQL -> its change events visible in bronze Delta.

    python bench/cdc_latency.py [--rate 200] [--seconds 60] [--warmup 15] [--trigger "1 second"]

Runs a private stack (PostgreSQL, Kafka, Kafka Connect with Debezium; free ports, temporary state dir),
starts CDC and the bronze query in continuous mode, and drives payments through the ACID service layer at
`--rate` payments per second (each one transaction; a refund is one more). Measured per transaction:
from its commit time in PostgreSQL (Debezium's `source.ts_ms`, the commit timestamp) to the moment the
last of its change events became visible in bronze (the mtime of the Delta commit file that added it:
a reader sees the rows from then on). The first `--warmup` seconds are left out (JVM warm-up, the
connector's first poll). Prints the figures and writes bench/results/cdc_latency.json.
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

from lakehouse.bronze.ingest import marked_batch
from lakehouse.bronze.tables import table_for_topic
from lakehouse.oltp.simulator import percentile


def visible_at_ms(table_dir: Path) -> dict[int, float]:
    """Batch id (in the append's commit marker) -> when its Delta commit file appeared (epoch ms)."""
    out: dict[int, float] = {}
    for commit in sorted((table_dir / "_delta_log").glob("*.json")):
        for line in commit.read_text().splitlines():
            batch = marked_batch(json.loads(line).get("commitInfo", {}).get("userMetadata"))
            if batch is not None:
                out[batch] = commit.stat().st_mtime * 1000
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=200, help="payments per second (default 200)")
    ap.add_argument("--seconds", type=float, default=60, help="traffic duration (default 60)")
    ap.add_argument("--warmup", type=float, default=15, help="seconds of traffic left out of the figures")
    ap.add_argument("--trigger", help="bronze.trigger_interval (default: the conf's)")
    ap.add_argument("--workers", type=int, default=16)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    logging.getLogger("lakehouse.bronze").setLevel(logging.INFO)     # one line per batch and table
    env = private_env()
    os.environ.update(env)
    if args.trigger:
        os.environ["LAKEHOUSE__BRONZE__TRIGGER_INTERVAL"] = args.trigger

    from kafka import KafkaConsumer, TopicPartition
    from pyspark.sql import functions as F

    from lakehouse.bronze.ingest import start_bronze
    from lakehouse.cdc import connector as cdc
    from lakehouse.common.config import load_settings
    from lakehouse.common.connections import kafka_bootstrap
    from lakehouse.common.spark import get_spark
    from lakehouse.common.tables import table_path
    from lakehouse.oltp.db import admin_connect
    from lakehouse.oltp.migrate import migrate
    from lakehouse.oltp.simulator import SimConfig, backfill
    from lakehouse.oltp.vault import load_vault_key
    from lakehouse.stack import stack

    settings = load_settings("local")
    state = env["LAKEHOUSE__PATHS__STATE_DIR"]
    # `lakehouse simulate`'s defaults: the traffic below runs over this world
    cfg = SimConfig(seed=42, days=0, end=dt.datetime.now(dt.UTC).date(), merchants=60, customers=4000)
    figures: dict[str, Any] = {}
    query = None
    try:
        stack.up(settings, only=["postgres", "kafka", "connect"])
        migrate(settings)
        key = load_vault_key(settings)
        with admin_connect(settings) as conn:
            backfill(conn, cfg, key, progress=False)          # parties and cards, no history
        cdc.start(settings, wait=True)

        spark = get_spark(settings, app_name="bench-cdc-latency")
        query, bstats = start_bronze(spark, settings, once=False)
        consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap(settings))

        def kafka_total() -> int:
            topics = [t for t in consumer.topics() if t.startswith(f"{settings.cdc.topic_prefix}.")
                      and table_for_topic(t, settings.cdc.topic_prefix, settings.events.topic_prefix)]
            tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
            return sum(consumer.end_offsets(tps).values()) - sum(consumer.beginning_offsets(tps).values())

        def wait_caught_up(timeout_s: float) -> None:
            deadline = time.monotonic() + timeout_s
            while (k := kafka_total()) == 0 or bstats.rows < k:
                if not query.isActive:
                    raise RuntimeError(f"bronze query ended: {query.exception()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"bronze has {bstats.rows} of {k} change events after {timeout_s:.0f} s")
                time.sleep(0.5)

        wait_caught_up(300)                                    # the snapshot is in bronze
        print(f"cdc_latency: snapshot in bronze ({bstats.rows:,} rows); {args.rate:g} payments/s for "
              f"{args.seconds:g} s", file=sys.stderr, flush=True)
        traffic_start_ms = time.time() * 1000
        # The traffic comes from another process (`lakehouse simulate`), as it would in production: in this
        # one, its client threads would hold the GIL the Spark driver's Python side needs.
        sim = subprocess.run([str(Path(sys.executable).parent / "lakehouse"), "simulate", "--seed", str(cfg.seed),
                              "--rate", str(args.rate), "--duration", str(args.seconds), "--workers",
                              str(args.workers)], capture_output=True, text=True, env=os.environ.copy())
        if sim.returncode != 0:
            raise RuntimeError(f"lakehouse simulate failed:\n{sim.stderr[-3000:]}")
        live = json.loads(sim.stdout)
        traffic_end_ms = time.time() * 1000
        wait_caught_up(300)
        batches = bstats.batches
        progress = [p for p in query.recentProgress if p.numInputRows > 0]
        query.stop()

        window_start = traffic_start_ms + args.warmup * 1000
        per_tx: dict[int, tuple[float, float]] = {}        # txId -> (commit ms, last visible ms)
        events = 0
        for name in sorted(bstats.rows_by_table):
            path = table_path(settings, name)
            seen = visible_at_ms(Path(path))
            rows = (spark.read.format("delta").load(path)
                    .where(F.col("op").isin("c", "u", "d") & (F.col("source_ts_ms") >= int(window_start)))
                    .select("source_tx_id", "source_ts_ms", "_batch_id").collect())
            for tx, commit_ms, batch in rows:
                events += 1
                prev = per_tx.get(tx)
                per_tx[tx] = (commit_ms, max(seen[batch], prev[1] if prev else 0.0))
        latencies = [(visible - commit) / 1000 for commit, visible in per_tx.values()]
        measured_s = (traffic_end_ms - window_start) / 1000
        figures = {
            "rate_target_payments_per_s": args.rate,
            "payments_committed": live["committed"],
            "payments_per_s_achieved": live["rate_achieved"],
            "payment_p95_ms": live["p95_ms"],
            "trigger_interval": settings.bronze.trigger_interval,
            "warmup_s": args.warmup,
            "transactions_measured": len(per_tx),
            "tx_per_s_measured": round(len(per_tx) / measured_s, 1),
            "change_events_measured": events,
            "latency_p50_s": round(percentile(latencies, 50), 2),
            "latency_p95_s": round(percentile(latencies, 95), 2),
            "latency_p99_s": round(percentile(latencies, 99), 2),
            "latency_max_s": round(max(latencies), 2),
            "latency_mean_s": round(statistics.fmean(latencies), 2),
            "bronze_batches": batches,
            "bronze_batch_s_median": round(statistics.median(p.batchDuration for p in progress) / 1000, 2)
            if progress else None,
            "bronze_rows_per_batch_median": int(statistics.median(p.numInputRows for p in progress))
            if progress else None,
            "spark_master": settings.spark.master,
            "load_avg_1m_after": round(os.getloadavg()[0], 1),
        }
        consumer.close()
        spark.stop()
    finally:
        if query is not None and query.isActive:
            query.stop()
        stack.down(settings, purge=True)
        shutil.rmtree(state, ignore_errors=True)
    write_result("cdc_latency", figures, {"rate": args.rate, "seconds": args.seconds, "warmup": args.warmup,
                                          "trigger": settings.bronze.trigger_interval})


if __name__ == "__main__":
    main()
