"""Kafka -> bronze Delta: one streaming query for every CDC and event topic (the I/O of the layer).

The query subscribes by pattern to `<cdc.topic_prefix>.<schema>.<table>` and
`<events.topic_prefix>.<family>` and hands each micro-batch to `write_bronze_batch`, which splits it
by table and gives every table one append, marked in the commit's `userMetadata` with
`<app id>:<batch id>` (app id: the query's id, stable across restarts from its checkpoint).

Exactly once, across crashes: Spark writes a batch's offset range to the checkpoint before running
it and its commit after; a crashed batch is re-run on restart with the same offsets, so the same
rows. Only that batch (the first a process runs) can find a table that already has it, so the first
append to each table in a process looks at the table's recent commits first and skips a batch id its
app id has already committed; the tables not yet written get theirs. Each table gets exactly one
append per batch, so that skip is all or nothing.

Why not Delta's own `txnAppId` / `txnVersion` options: Delta 4.4 answers the check from the
snapshot's full state reconstruction (a Spark job over the whole log) on every append, even when the
version checksum holds the transactions; that was 0.8 s of every table's append (1.8 s vs 1.0 s for
300 rows, measured), paid on every micro-batch for a check that only the first one needs.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from delta.tables import DeltaTable
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from lakehouse.bronze.tables import is_cdc, table_for_topic, topic_pattern
from lakehouse.bronze.transforms import build_bronze_cdc, build_bronze_events, with_kafka_meta
from lakehouse.common.config import Settings
from lakehouse.common.connections import kafka_bootstrap
from lakehouse.common.spark import await_query, run_parallel
from lakehouse.common.tables import TableSpec, table_path

log = logging.getLogger(__name__)

QUERY_NAME = "bronze_ingest"
CONCURRENT_WRITERS = 4       # files a task keeps open (see start_bronze)
PARALLEL_TABLES = 4          # tables of one batch written at the same time
# zstd: the same CPU as snappy on bronze rows, half the bytes (1M change events: 46 vs 87 MiB per 333k).
PARQUET_CODEC = "zstd"
APP_ID_PREFIX = "lakehouse-bronze-"
# Commits looked at for an earlier append of the batch a process starts with: bronze appends and the
# few maintenance commits (OPTIMIZE, VACUUM) that can come after them.
HISTORY_LOOKBACK = 100


def checkpoint_location(settings: Settings) -> str:
    return f"{settings.checkpoint_dir.rstrip('/')}/bronze"


def kafka_source_options(settings: Settings) -> dict[str, str]:
    """Options of the Kafka source: pattern subscription, where a new query starts, data-loss policy."""
    b = settings.bronze
    options = {
        "kafka.bootstrap.servers": kafka_bootstrap(settings),
        "subscribePattern": topic_pattern(settings.cdc.topic_prefix, settings.events.topic_prefix),
        # Only for a query without a checkpoint; partitions or topics that appear later start at their earliest.
        "startingOffsets": b.starting_offsets,
        # true: Kafka deleted offsets bronze had not read (retention, a recreated topic) -> the query stops
        # instead of skipping them silently. Nothing is lost without an operator deciding it.
        "failOnDataLoss": str(b.fail_on_data_loss).lower(),
    }
    if b.max_offsets_per_trigger > 0:
        options["maxOffsetsPerTrigger"] = str(b.max_offsets_per_trigger)
    return options


def ensure_bronze_table(spark: SparkSession, settings: Settings, table: TableSpec) -> str:
    """Creates the Delta table of `table` at its registry path when missing; returns the path.

    Created by path, not through the session catalog: every new session attaches `bronze.*` by name
    (lakehouse.common.tables.attach_catalog), and the writer does not depend on this session's catalog.
    """
    path = table_path(settings, table.full_name)
    builder = (DeltaTable.createIfNotExists(spark).location(path).addColumns(table.schema)
               .comment(table.comment).partitionedBy(*table.partition_by))
    for key, value in table.properties.items():
        builder = builder.property(key, value)
    builder.execute()
    return path


@dataclass
class BronzeStats:
    """What one run of the query handed to Delta (a batch re-run after a crash is counted again here;
    Delta itself skips what was already committed)."""

    batches: int = 0
    rows: int = 0
    rows_by_table: dict[str, int] = field(default_factory=dict)
    last_batch_id: int | None = None

    def add(self, batch_id: int, rows: dict[str, int]) -> None:
        self.batches += 1
        self.last_batch_id = batch_id
        for name, n in rows.items():
            self.rows += n
            self.rows_by_table[name] = self.rows_by_table.get(name, 0) + n

    def as_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "rows": self.rows, "last_batch_id": self.last_batch_id,
                "rows_by_table": dict(sorted(self.rows_by_table.items()))}


def commit_marker(app_id: str, batch_id: int) -> str:
    """The `userMetadata` of a bronze append: `<app id>:<batch id>`."""
    return f"{app_id}:{batch_id}"


def marked_batch(marker: str | None, app_id: str | None = None) -> int | None:
    """The batch id in a commit's `userMetadata` when it is a bronze append's marker (of `app_id`, or
    of any bronze query when None); None for any other commit."""
    prefix = APP_ID_PREFIX if app_id is None else f"{app_id}:"
    if not marker or not marker.startswith(prefix) or ":" not in marker:
        return None
    batch = marker.rsplit(":", 1)[1]
    return int(batch) if batch.isdigit() else None


def last_committed_batch(spark: SparkSession, path: str, app_id: str) -> int | None:
    """The newest batch id `app_id` appended to the Delta table at `path` (None if none in the last
    HISTORY_LOOKBACK commits). Reads the commit infos only, not the table's state."""
    for row in (DeltaTable.forPath(spark, path).history(HISTORY_LOOKBACK)
                .select("userMetadata").collect()):                       # newest first
        if (batch := marked_batch(row["userMetadata"], app_id)) is not None:
            return batch
    return None


def write_bronze_batch(batch: DataFrame, batch_id: int, settings: Settings, app_id: str,
                       checked: set[str] | None = None) -> dict[str, int]:
    """Appends one micro-batch of Kafka source rows to the bronze tables; returns the rows per table.

    One append per table, marked `<app_id>:<batch_id>`. A table not in `checked` (the tables this
    process has already written) is created if missing and looked at first: if `app_id` already
    appended this batch id or a later one, it is skipped. So writing the same batch id twice (a re-run
    after a crash) leaves every table as after the first time.
    """
    checked = set() if checked is None else checked
    cdc_prefix, events_prefix = settings.cdc.topic_prefix, settings.events.topic_prefix
    # Split by topic from a cached copy: the Kafka source cannot filter by topic, so without it every
    # table would read the whole batch from Kafka again.
    meta = batch.transform(with_kafka_meta).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        counts = {r["_topic"]: int(r["count"]) for r in meta.groupBy("_topic").count().collect()}
        tables: dict[str, tuple[TableSpec, list[str]]] = {}
        for topic in sorted(counts):
            table = table_for_topic(topic, cdc_prefix, events_prefix)
            if table is None:  # the pattern admits only these shapes; a mismatch is a bug, not data to skip
                raise ValueError(f"topic {topic!r} matches the bronze pattern but maps to no bronze table")
            tables.setdefault(table.full_name, (table, []))[1].append(topic)
        spark = batch.sparkSession

        def write(name: str) -> None:
            table, topics = tables[name]
            build = build_bronze_cdc(batch_id) if is_cdc(table) else build_bronze_events(batch_id)
            part = meta.where(F.col("_topic").isin(*topics)).transform(build)
            if part.schema.simpleString() != table.schema.simpleString():
                raise ValueError(f"{name}: rows {part.schema.simpleString()} differ from the table schema")
            path = table_path(settings, name)
            if name not in checked:
                ensure_bronze_table(spark, settings, table)
                done = last_committed_batch(spark, path, app_id)
                checked.add(name)
                if done is not None and done >= batch_id:
                    log.info("bronze batch %d: %s already has it (app %s), skipped", batch_id, name, app_id)
                    return
            started = time.monotonic()
            (part.write.format("delta").mode("append")
             .option("userMetadata", commit_marker(app_id, batch_id))
             .option("compression", PARQUET_CODEC)
             .save(path))
            log.info("bronze batch %d: %s <- %d rows from %s in %.1fs", batch_id, name,
                     sum(counts[t] for t in topics), ",".join(topics), time.monotonic() - started)

        # A few tables at once: one table's write rarely has a task for every core (a topic has a few
        # partitions), and each commit waits on storage. Every append stays one transaction of its own.
        run_parallel([functools.partial(write, name) for name in sorted(tables)], PARALLEL_TABLES)
        return {name: sum(counts[t] for t in topics) for name, (_, topics) in sorted(tables.items())}
    finally:
        meta.unpersist()


class _BatchWriter:
    """The foreachBatch function: waits for the query id (known once `start()` returns), then writes."""

    def __init__(self, settings: Settings, stats: BronzeStats) -> None:
        self.settings = settings
        self.stats = stats
        self.checked: set[str] = set()
        self._query_id: str | None = None
        self._started = threading.Event()

    def set_query_id(self, query_id: str) -> None:
        self._query_id = query_id
        self._started.set()

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        if not self._started.wait(timeout=120):
            raise RuntimeError("bronze: the streaming query id was never set")
        started = time.monotonic()
        rows = write_bronze_batch(batch, batch_id, self.settings, f"{APP_ID_PREFIX}{self._query_id}", self.checked)
        self.stats.add(batch_id, rows)
        log.info("bronze batch %d: %d rows into %d tables in %.1fs", batch_id, sum(rows.values()), len(rows),
                 time.monotonic() - started)


def start_bronze(spark: SparkSession, settings: Settings, once: bool,
                 stats: BronzeStats | None = None) -> tuple[StreamingQuery, BronzeStats]:
    """Starts the bronze query: `once` -> availableNow (everything in Kafka now, then stop), else a
    processingTime trigger of `bronze.trigger_interval`. Checkpoint: `<checkpoint_dir>/bronze`."""
    stats = BronzeStats() if stats is None else stats
    writer = _BatchWriter(settings, stats)
    # A partitioned write sorts its rows by the partition columns first, unless it may keep a few files
    # open at once; every row of a batch has the same _ingest_date, so that sort is pure cost.
    spark.conf.set("spark.sql.maxConcurrentOutputFileWriters", str(CONCURRENT_WRITERS))
    # The batch cache holds raw JSON strings, which the in-memory column compression barely shrinks:
    # building it uncompressed costs about a third less CPU.
    spark.conf.set("spark.sql.inMemoryColumnarStorage.compressed", "false")
    source = spark.readStream.format("kafka").options(**kafka_source_options(settings)).load()
    stream = (source.writeStream.queryName(QUERY_NAME).foreachBatch(writer)
              .option("checkpointLocation", checkpoint_location(settings)))
    stream = (stream.trigger(availableNow=True) if once
              else stream.trigger(processingTime=settings.bronze.trigger_interval))
    query = stream.start()
    writer.set_query_id(str(query.id))
    log.info("bronze query %s (run %s) started: %s, checkpoint %s", query.id, query.runId,
             "availableNow" if once else f"every {settings.bronze.trigger_interval}", checkpoint_location(settings))
    return query, stats


def _is_spark_55271(query: StreamingQuery) -> bool:
    """Spark 4.1.1 bug (SPARK-55271, apache/spark#55236, fixed in later releases): a query restarted
    with an uncommitted batch re-runs that batch, commits it, then fails while reporting the Kafka
    source's progress (a NullPointerException in KafkaMicroBatchStream.metrics, because it never asked
    Kafka for the latest offsets). Nothing is lost or duplicated; started again, the query works."""
    failure = query._jsq.exception()  # the JVM exception: its cause's stack identifies the bug exactly
    if not failure.isDefined():
        return False
    cause = failure.get().getCause()
    if cause is None or cause.getClass().getName() != "java.lang.NullPointerException":
        return False
    frames = [str(frame.toString()) for frame in list(cause.getStackTrace())[:2]]
    return any("KafkaMicroBatchStream" in frame and ".metrics(" in frame for frame in frames)


def run_bronze(spark: SparkSession, settings: Settings, once: bool,
               should_stop: Callable[[], bool] = lambda: False) -> BronzeStats:
    """Runs the bronze query until it ends (`once`), or until `should_stop()` (a signal) in continuous
    mode; a failed query raises. Stopping mid-batch is safe: the batch is re-run on the next start."""
    stats = BronzeStats()
    restarted = False
    while True:
        query, _ = start_bronze(spark, settings, once, stats)
        await_query(query, should_stop, "bronze")
        failure = query.exception()
        if failure is None:
            return stats
        if not restarted and _is_spark_55271(query):
            log.warning("bronze: the query failed reporting progress after re-running the batch a previous run left "
                        "unfinished (Spark bug SPARK-55271; that batch is committed); starting it again")
            restarted = True
            continue
        raise RuntimeError(f"bronze query failed: {failure}")
