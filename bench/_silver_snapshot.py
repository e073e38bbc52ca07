"""Silver in bulk from a read of the OLTP tables, through the silver pipeline's own steps.

bench/gold_queries.py needs silver at 10 M payments. Through CDC (Debezium -> Kafka -> bronze -> silver
micro-batches) that is about 30 M change events: hours on two cores (bench/silver_merge.py measured
281 changes/s applied). This loader reads each captured table over JDBC instead and hands its rows to
the functions a silver micro-batch uses (lakehouse.silver.pipeline.apply_source_table):

    PostgreSQL table ─ read_oltp (JDBC; a big table in key ranges) ─ snapshot_changes ─ conform_changes
      ─ profile_changes ─ protect_changes ─ apply_changes (MERGE into the current state, or SCD2 versions)

in the pipeline's order: currencies, then the other reference tables (conformance reads silver's
currencies, FX rates and countries), then the rest.

What differs from the streaming pipeline, and why silver's rows come out the same:

- Each row is a snapshot read (`_op` 'r', as in Debezium's initial snapshot). Its sequence is the WAL
  position read just before the load (`pg_current_wal_lsn()`, the same kind of number as Debezium's
  source LSN), so the rows of a later load are newer than an earlier load's and the MERGE takes them;
  its `_committed_at` (an SCD2 version's `valid_from`) is the time of that read, like a snapshot
  event's `ts_ms`. `_seq_offset` is 0 and `_source_partition` -1: there is no Kafka message.
- No Great Expectations validation and no quarantine: the simulator's data is known good, and
  validating 30 M rows would measure Great Expectations, not gold. A row the pipeline would quarantine
  for a type error (no FX rate on its day) fails the load instead, so nothing is dropped silently.
  silver.dq_results and silver.quarantine_* are not written.
- An incremental load (`since_xid`) reads only the rows whose current version was written by a
  transaction after that one (PostgreSQL's `xmin`: inserted or updated since). A delete is not seen;
  the live simulator deletes nothing.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from psycopg import sql
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, LongType, ShortType

from lakehouse.common.config import Settings
from lakehouse.common.spark import run_parallel
from lakehouse.oltp.db import connect
from lakehouse.silver.cdc import COMMITTED_AT, OP, SEQ_LSN, SEQ_OFFSET, SOURCE_PARTITION, TYPE_ERRORS
from lakehouse.silver.pipeline import apply_changes, conform_changes, profile_changes, protect_changes
from lakehouse.silver.reconcile import read_oltp
from lakehouse.silver.tables import SourceTable, oltp_tables

ROWS_PER_READ = 500_000          # rows per JDBC query (one Spark partition each) of a big table
MAX_READS = 64
PARALLEL_TABLES = 3              # as the streaming pipeline: small tables are latency-bound
NO_PARTITION = -1                # `_source_partition` of a row that came from no Kafka partition


class SnapshotLoadError(RuntimeError):
    """A table's rows cannot go to silver without the quarantine this loader does not have."""


@dataclass(frozen=True)
class SnapshotPosition:
    """Where the load reads from: a WAL position (bytes) and the time it was taken (UTC)."""

    lsn: int
    at: dt.datetime


@dataclass
class TableLoad:
    """One table's load: rows read from PostgreSQL, the apply's counts, seconds."""

    table: str
    rows: int = 0
    applied: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def snapshot_changes(position: SnapshotPosition) -> Callable[[DataFrame], DataFrame]:
    """Rows of an OLTP table (its columns, silver-typed, as `read_oltp` gives them) -> the columns
    `changes_from_bronze` gives: the same columns, then `_op` 'r', `_seq_lsn` the position's LSN,
    `_seq_offset` 0, `_source_partition` -1, `_committed_at` the position's time and `_type_errors`
    empty."""
    def _(rows: DataFrame) -> DataFrame:
        return rows.select(
            "*",
            F.lit("r").alias(OP),
            F.lit(position.lsn).cast("bigint").alias(SEQ_LSN),
            F.lit(0).cast("bigint").alias(SEQ_OFFSET),
            F.lit(NO_PARTITION).cast("int").alias(SOURCE_PARTITION),
            F.lit(position.at).cast("timestamp").alias(COMMITTED_AT),
            F.array().cast("array<string>").alias(TYPE_ERRORS))
    return _


def wal_position(settings: Settings) -> SnapshotPosition:
    """PostgreSQL's current WAL position and time."""
    with connect(settings) as conn:
        row = conn.execute("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint, now()").fetchone()
    assert row is not None
    return SnapshotPosition(int(row[0]), row[1].astimezone(dt.UTC))


def transaction_mark(settings: Settings) -> int:
    """A transaction id (32 bits, as `xmin`): every transaction that starts later has a newer one."""
    with connect(settings) as conn:
        row = conn.execute("SELECT pg_current_xact_id()::text::bigint % 4294967296").fetchone()
    assert row is not None
    return int(row[0])


def _changed_after(since_xid: int | None) -> sql.Composable:
    if since_xid is None:
        return sql.SQL("TRUE")
    # age() counts transactions back from now, modulo 2^32: safe across xid wraparound, unlike xmin::bigint
    return sql.SQL("age(xmin) < age({}::xid)").format(sql.Literal(str(since_xid)))


def read_table(spark: SparkSession, settings: Settings, source: SourceTable,
               since_xid: int | None = None) -> DataFrame | None:
    """The table's rows (all, or those written after `since_xid`) over JDBC, silver-typed; a table whose
    first key column is an integer is read in key ranges of about ROWS_PER_READ rows. None: no rows."""
    key = source.keys[0]
    ranged = isinstance(source.columns[key].dataType, (LongType, IntegerType, ShortType))
    parts = {"t": sql.Identifier(source.schema, source.table), "k": sql.Identifier(key),
             "w": _changed_after(since_xid)}
    with connect(settings) as conn:
        row = conn.execute(sql.SQL("SELECT count(*), min({k}), max({k}) FROM {t} WHERE {w}").format(**parts)).fetchone()
        dbtable = sql.SQL("(SELECT * FROM {t} WHERE {w}) AS snapshot").format(**parts).as_string(conn)
    assert row is not None
    n, low, high = row
    if not n:
        return None
    options = {}
    if ranged and n > ROWS_PER_READ:
        options = {"partitionColumn": key, "lowerBound": str(low), "upperBound": str(high + 1),
                   "numPartitions": str(min(MAX_READS, math.ceil(n / ROWS_PER_READ)))}
    return read_oltp(spark, settings, source, dbtable, options)


def load_table(spark: SparkSession, settings: Settings, source: SourceTable, position: SnapshotPosition,
               since_xid: int | None = None) -> TableLoad:
    """One table (all its rows, or those written after `since_xid`) into silver; see the module."""
    started = time.monotonic()
    rows = read_table(spark, settings, source, since_xid)
    if rows is None:
        return TableLoad(source.name, seconds=time.monotonic() - started)
    # Read once: conformance passes over its input twice (the day x currency pairs of the FX lookup, then
    # the rows), as over a micro-batch's rows, which the streaming pipeline holds persisted too.
    rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
    changes = (rows.transform(snapshot_changes(position))
               .transform(conform_changes(source, spark, settings))
               .persist(StorageLevel.MEMORY_AND_DISK))
    try:
        n = changes.count()
        type_errors, deletes, subjects = profile_changes(source, changes)
        if type_errors:
            raise SnapshotLoadError(f"silver.{source.name}: {type_errors} rows with type errors (e.g. no FX rate "
                                    "on the day); the pipeline would quarantine them, this loader has no quarantine")
        protected = changes.transform(protect_changes(source, subjects, settings)).drop(TYPE_ERRORS)
        applied = apply_changes(protected, source, settings, has_deletes=deletes > 0)
    finally:
        changes.unpersist()
        rows.unpersist()
    return TableLoad(source.name, n, applied, time.monotonic() - started)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_silver(spark: SparkSession, settings: Settings, since_xid: int | None = None,
                progress: Callable[[str], None] = _say) -> list[TableLoad]:
    """Every captured table of the OLTP database (or its rows written after `since_xid`) into silver:
    currencies, the other reference tables, then the rest, a few tables at a time."""
    sources = oltp_tables(settings)
    position = wal_position(settings)
    ref = [s for s in sources if s.schema == "ref"]
    phases = [[s for s in ref if s.table == "currencies"], [s for s in ref if s.table != "currencies"],
              [s for s in sources if s.schema != "ref"]]
    loads: list[TableLoad] = []
    lock = threading.Lock()

    def one(source: SourceTable) -> None:
        load = load_table(spark, settings, source, position, since_xid)
        with lock:
            loads.append(load)
        if load.rows:
            progress(f"  silver.{load.table:<26} {load.rows:>11,} rows  {load.applied}  {load.seconds:6.1f}s")

    for phase in phases:
        run_parallel([functools.partial(one, s) for s in phase], PARALLEL_TABLES)
    return sorted(loads, key=lambda x: x.table)
