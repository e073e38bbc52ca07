"""Bronze catch-up throughput: N Debezium-like change events in Kafka -> bronze Delta (availableNow),
next to a plain Kafka -> Parquet Spark job over the same topics (the floor: no parsing, no Delta).

    python bench/bronze_ingest.py [--events 1000000] [--tables 3] [--repeat 2]

Runs on a private Kafka (free ports, private state dir). The events are produced with Spark's Kafka
writer (kafka-python manages a few thousand messages per second, far too slow to fill a topic with a
million). Both jobs first run once over a small warm-up topic set, so that neither pays for the JVM's
warm-up alone; then they alternate, and every run is checked against the exact event count.
Prints the figures and writes bench/results/bronze_ingest.json.
"""

from __future__ import annotations

import argparse
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

TARGET_EVENTS_PER_S = 20_000
TABLES = ("charges", "refunds", "ledger_entries", "disputes", "subscriptions")


def produce(spark: Any, bootstrap: str, prefix: str, tables: int, events: int) -> tuple[int, int]:
    """Writes `events` change events round-robin over `tables` topics `<prefix>.payments.<table>`:
    45 % creates, 40 % updates (with before), 10 % deletes, 5 % tombstones. Returns (messages, bytes)."""
    from pyspark.sql import functions as F

    ids = spark.range(events, numPartitions=max(4, spark.sparkContext.defaultParallelism * 2))
    kind = F.col("id") % 20
    op = (F.when(kind < 9, F.lit("c")).when(kind < 17, F.lit("u")).when(kind < 19, F.lit("d")))
    row = F.struct(
        F.col("id").alias("charge_id"), (F.col("id") % 50_000).alias("customer_id"),
        (F.col("id") % 700).alias("merchant_id"), ((F.col("id") * 7919) % 500_000).cast("string").alias("amount_minor"),
        F.lit("EUR").alias("currency"), F.lit("captured").alias("status"),
        F.lit("2024-05-01T12:00:00.123456Z").alias("created_at"), F.lit("2024-05-01T12:00:01.5Z").alias("updated_at"),
        F.sha1(F.col("id").cast("string")).substr(1, 32).alias("card_fingerprint"),
        F.concat(F.lit("10.0."), (F.col("id") % 250).cast("string"), F.lit(".7")).alias("ip_address"),
        F.lit("DE").alias("country"), F.lit("5411").alias("mcc"), F.lit(False).alias("is_recurring"),
        F.concat(F.lit("order "), F.col("id").cast("string")).alias("description"),
        F.lit(None).cast("string").alias("dispute_reason"))
    before = F.when(op == F.lit("u"), row.withField("status", F.lit("authorized"))).when(op == F.lit("d"), row)
    source = F.struct(
        F.lit("3.6.3.Final").alias("version"), F.lit("postgresql").alias("connector"), F.lit("cdc").alias("name"),
        (F.lit(1_714_564_800_000) + F.col("id")).alias("ts_ms"), F.lit("false").alias("snapshot"),
        F.lit("payments").alias("db"), F.concat(F.lit('["'), F.col("id").cast("string"), F.lit('"]')).alias("sequence"),
        F.lit("payments").alias("schema"), F.lit("charges").alias("table"), F.floor(F.col("id") / 3).alias("txId"),
        (F.lit(40_000_000) + F.col("id") * 64).alias("lsn"), F.lit(None).cast("bigint").alias("xmin"))
    envelope = F.struct(before.alias("before"), F.when(op != F.lit("d"), row).alias("after"), source.alias("source"),
                        op.alias("op"), (F.lit(1_714_564_800_100) + F.col("id")).alias("ts_ms"))
    table = F.element_at(F.array(*[F.lit(t) for t in TABLES[:tables]]), (F.col("id") % tables + 1).cast("int"))
    topic = F.concat(F.lit(f"{prefix}.payments."), table)
    messages = ids.select(
        topic.alias("topic"), F.to_json(F.struct(F.col("id").alias("charge_id"))).alias("key"),
        F.when(op.isNotNull(), F.to_json(envelope, {"ignoreNullFields": "false"})).alias("value"))
    messages.write.format("kafka").option("kafka.bootstrap.servers", bootstrap).save()
    size = messages.agg(F.count("*"), F.sum(F.coalesce(F.length("value"), F.lit(0)) + F.length("key"))).first()
    assert size is not None
    return int(size[0]), int(size[1])


def run_bronze_once(spark: Any, settings: Any) -> tuple[float, int, int]:
    """Seconds, rows in bronze (read back) and streaming batches of one availableNow run."""
    from lakehouse.bronze.ingest import run_bronze
    from lakehouse.common.tables import table_path

    t0 = time.monotonic()
    stats = run_bronze(spark, settings, once=True)
    seconds = time.monotonic() - t0
    rows = sum(spark.read.format("delta").load(table_path(settings, name)).count() for name in stats.rows_by_table)
    return seconds, rows, stats.batches


def run_parquet_once(spark: Any, settings: Any, out: str) -> tuple[float, int]:
    """The floor: the same Kafka source, raw key / value / coordinates to Parquet, availableNow."""
    from lakehouse.bronze.ingest import kafka_source_options

    t0 = time.monotonic()
    query = (spark.readStream.format("kafka").options(**kafka_source_options(settings)).load()
             .selectExpr("CAST(key AS STRING) AS key", "CAST(value AS STRING) AS value", "topic", "partition",
                         "offset", "timestamp")
             .writeStream.format("parquet").option("path", f"{out}/data").option("checkpointLocation", f"{out}/_cp")
             .trigger(availableNow=True).start())
    query.awaitTermination()
    seconds = time.monotonic() - t0
    if query.exception() is not None:
        raise RuntimeError(f"parquet baseline failed: {query.exception()}")
    return seconds, spark.read.parquet(f"{out}/data").count()


def du_mib(path: str) -> float:
    out = subprocess.run(["du", "-sk", path], capture_output=True, text=True, check=True).stdout
    return round(int(out.split()[0]) / 1024, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="change events to ingest (default 1000000)")
    ap.add_argument("--tables", type=int, default=3, choices=range(1, len(TABLES) + 1),
                    help="CDC topics (= bronze tables) they are spread over (default 3)")
    ap.add_argument("--repeat", type=int, default=2, help="measured runs of each job (default 2)")
    ap.add_argument("--warmup-events", type=int, default=50_000)
    args = ap.parse_args()
    env = private_env()
    os.environ.update(env)

    from kafka.admin import KafkaAdminClient, NewTopic

    from lakehouse.common.config import load_settings
    from lakehouse.common.connections import kafka_bootstrap
    from lakehouse.common.spark import get_spark
    from lakehouse.stack import stack

    state = env["LAKEHOUSE__PATHS__STATE_DIR"]
    base = load_settings("local")
    figures: dict[str, Any] = {}
    try:
        stack.up(base, only=["kafka"])
        bootstrap = kafka_bootstrap(base)
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        partitions = base.cdc.partitions
        admin.create_topics([NewTopic(f"{prefix}.payments.{t}", partitions, 1)
                             for prefix in ("warm", "bench") for t in TABLES[:args.tables]])
        admin.close()
        spark = get_spark(base, app_name="bench-bronze-ingest")

        def settings_for(prefix: str, run: str) -> Any:
            return load_settings("local", {"cdc.topic_prefix": prefix, "events.topic_prefix": f"{prefix}-events",
                                           "paths.lakehouse_dir": f"{state}/runs/{run}"})

        t0 = time.monotonic()
        produce(spark, bootstrap, "warm", args.tables, args.warmup_events)
        messages, value_bytes = produce(spark, bootstrap, "bench", args.tables, args.events)
        figures["produce_s"] = round(time.monotonic() - t0, 1)
        assert messages == args.events
        run_bronze_once(spark, settings_for("warm", "warm-bronze"))
        run_parquet_once(spark, settings_for("warm", "warm-parquet"), f"{state}/runs/warm-parquet")

        bronze_s, parquet_s, loads = [], [], []
        batches = 0
        for i in range(args.repeat):
            loads.append(os.getloadavg()[0])
            settings = settings_for("bench", f"bronze-{i}")
            seconds, rows, batches = run_bronze_once(spark, settings)
            assert rows == args.events, f"bronze holds {rows} rows, expected {args.events}"
            bronze_s.append(seconds)
            out = f"{state}/runs/parquet-{i}"
            seconds, rows = run_parquet_once(spark, settings, out)
            assert rows == args.events, f"parquet holds {rows} rows, expected {args.events}"
            parquet_s.append(seconds)
            loads.append(os.getloadavg()[0])
        bronze_best, parquet_best = min(bronze_s), min(parquet_s)
        figures.update({
            "events": args.events,
            "topics_tables": args.tables,
            "kafka_partitions_per_topic": partitions,
            "avg_message_bytes": round(value_bytes / messages),
            "kafka_payload_mib": round(value_bytes / 2**20, 1),
            "spark_master": base.spark.master,
            "cpus": os.cpu_count(),
            "bronze_runs_s": [round(s, 1) for s in bronze_s],
            "bronze_batches_per_run": batches,
            "bronze_events_per_s": int(args.events / bronze_best),
            "bronze_events_per_s_median": int(args.events / statistics.median(bronze_s)),
            "parquet_runs_s": [round(s, 1) for s in parquet_s],
            "parquet_events_per_s": int(args.events / parquet_best),
            "parquet_events_per_s_median": int(args.events / statistics.median(parquet_s)),
            "bronze_time_vs_parquet": round(bronze_best / parquet_best, 2),   # x times the plain job's time
            "bronze_on_disk_mib": du_mib(f"{state}/runs/bronze-0/bronze"),
            "parquet_on_disk_mib": du_mib(f"{state}/runs/parquet-0/data"),
            "target_events_per_s": TARGET_EVENTS_PER_S,
            "target_met": int(args.events / bronze_best) >= TARGET_EVENTS_PER_S,
            "load_avg_1m_during": [round(x, 1) for x in loads],
        })
        spark.stop()
    finally:
        stack.down(base, purge=True)
        shutil.rmtree(state, ignore_errors=True)
    write_result("bronze_ingest", figures, {"events": args.events, "tables": args.tables, "repeat": args.repeat,
                                            "master": base.spark.master})


if __name__ == "__main__":
    main()
