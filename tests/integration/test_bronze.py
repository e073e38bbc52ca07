"""Kafka -> bronze against the real broker: every message lands exactly once, byte for byte, with
`_parse_error` on exactly the malformed ones, also when the job is killed in the middle of a batch.

Every test has its own topic prefixes and its own lakehouse directory, so that other tests' topics
and tables never interfere.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.bronze.ingest import checkpoint_location, marked_batch, write_bronze_batch
from lakehouse.common.config import Settings, load_settings
from lakehouse.common.connections import kafka_bootstrap
from lakehouse.common.tables import table_path
from tests.integration.helpers import BIN, ROOT, explain, lakehouse, last_json, spark_submit


@dataclass(frozen=True)
class Run:
    """One test's private world: topic prefixes, lakehouse directory, and the matching settings."""

    tag: str
    lakehouse_dir: Path
    settings: Settings

    @property
    def cdc(self) -> str:
        return self.settings.cdc.topic_prefix

    @property
    def ev(self) -> str:
        return self.settings.events.topic_prefix

    def overrides(self) -> list[str]:
        return [f"--set=cdc.topic_prefix={self.cdc}", f"--set=events.topic_prefix={self.ev}",
                f"--set=paths.lakehouse_dir={self.lakehouse_dir}"]

    def table(self, spark, name: str) -> DataFrame:
        return spark.read.format("delta").load(table_path(self.settings, f"bronze.{name}"))


@pytest.fixture
def run(stack, tmp_path: Path) -> Run:
    tag = f"t{uuid.uuid4().hex[:8]}"
    lakehouse_dir = tmp_path / "lakehouse"
    settings = load_settings("test", {"cdc.topic_prefix": f"{tag}cdc", "events.topic_prefix": f"{tag}ev",
                                      "paths.lakehouse_dir": str(lakehouse_dir)})
    return Run(tag, lakehouse_dir, settings)


@pytest.fixture
def admin(run: Run) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=kafka_bootstrap(run.settings))
    yield client
    client.close()


@pytest.fixture
def producer(run: Run) -> Iterator[KafkaProducer]:
    p = KafkaProducer(bootstrap_servers=kafka_bootstrap(run.settings), acks="all", linger_ms=5)
    yield p
    p.close()


Key = tuple[str, int, int]  # topic, partition, offset


@dataclass(frozen=True)
class Sent:
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    parse_error: str | None


def send(producer: KafkaProducer, topic: str, partition: int, key: Any, value: Any,
         parse_error: str | None = None) -> tuple[Key, Sent]:
    """Sends one message (dicts as JSON, str as UTF-8, bytes as is) and returns where it landed."""
    def raw(v: Any) -> bytes | None:
        if v is None or isinstance(v, bytes):
            return v
        return (v if isinstance(v, str) else json.dumps(v)).encode()
    k, v = raw(key), raw(value)
    meta = producer.send(topic, key=k, value=v, partition=partition).get(timeout=30)
    return (meta.topic, meta.partition, meta.offset), Sent(k, v, meta.timestamp, parse_error)


def envelope(op: str, table: str, before: dict | None, after: dict | None, lsn: int, tx: int,
             snapshot: str = "false") -> dict[str, Any]:
    return {"before": before, "after": after, "op": op, "ts_ms": 1_714_564_800_000 + lsn,
            "source": {"version": "3.6.3.Final", "connector": "postgresql", "name": "cdc", "ts_ms": 1_714_564_790_000,
                       "snapshot": snapshot, "db": "payments", "schema": "payments", "table": table, "txId": tx,
                       "lsn": lsn}}


def event(family: str, n: int, **extra: Any) -> dict[str, Any]:
    doc = {"schema_version": 1, "event_id": f"{family}-{n}", "event_type": "page_view",
           "event_time": "2024-05-01T12:00:00.123Z", "session": {"id": f"s-{n}", "device": {"os": "android"}},
           "page": {"url": f"/p/{n}"}}
    doc.update(extra)
    return {k: v for k, v in doc.items() if v is not ...}


def create_topics(admin: KafkaAdminClient, partitions: dict[str, int]) -> None:
    admin.create_topics([NewTopic(name, n, 1) for name, n in partitions.items()])


def kafka_offsets(settings: Settings, partitions: dict[str, int]) -> dict[tuple[str, int], list[int]]:
    """Per (topic, partition): every offset Kafka holds, [earliest, latest)."""
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap(settings))
    try:
        tps = [TopicPartition(t, p) for t, n in partitions.items() for p in range(n)]
        lo, hi = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
        return {(tp.topic, tp.partition): list(range(lo[tp], hi[tp])) for tp in tps}
    finally:
        consumer.close()


def bronze_offsets(run: Run, spark, tables: list[str]) -> dict[tuple[str, int], list[int]]:
    """Per (topic, partition): the offsets in bronze, sorted, duplicates kept."""
    got: dict[tuple[str, int], list[int]] = {}
    for name in tables:
        for r in run.table(spark, name).select("_topic", "_partition", "_offset").collect():
            got.setdefault((r["_topic"], r["_partition"]), []).append(r["_offset"])
    return {k: sorted(v) for k, v in got.items()}


def test_once_ingests_every_message_exactly_with_parse_errors_on_the_malformed(run: Run, admin, producer,
                                                                                spark) -> None:
    charges, refunds = f"{run.cdc}.payments.charges", f"{run.cdc}.payments.refunds"
    clicks, feedback = f"{run.ev}.clickstream", f"{run.ev}.feedback"
    ignored = {f"{run.cdc}.transaction": 1, f"{run.tag}other.x": 1}   # not bronze topics
    topics = {charges: 3, refunds: 2, clicks: 2, feedback: 1}
    create_topics(admin, {**topics, **ignored})

    c1 = {"charge_id": 1, "amount_minor": "1250", "currency": "EUR", "status": "authorized",
          "created_at": "2024-05-01T12:00:00.000000Z"}
    c2 = {**c1, "charge_id": 2, "amount_minor": "990"}
    c2_captured = {**c2, "status": "captured"}
    c3 = {**c1, "charge_id": 3}
    c3_scored = {**c3, "status": "captured", "risk_score": "0.93"}     # ALTER TABLE … ADD COLUMN upstream
    sent = dict([
        send(producer, charges, 0, {"charge_id": 1}, envelope("r", "charges", None, c1, 100, 7, "true")),
        send(producer, charges, 0, {"charge_id": 2}, envelope("r", "charges", None, c2, 100, 7, "last")),
        send(producer, charges, 0, {"charge_id": 2}, envelope("u", "charges", c2, c2_captured, 200, 8)),
        send(producer, charges, 0, {"charge_id": 2}, envelope("d", "charges", c2_captured, None, 300, 9)),
        send(producer, charges, 0, {"charge_id": 2}, None),                                  # the tombstone
        send(producer, charges, 0, None, "charge 2 deleted", "invalid JSON"),
        send(producer, charges, 0, {"charge_id": 4},
             json.dumps(envelope("c", "charges", None, c1, 400, 10))[:50], "invalid JSON"),  # truncated
        send(producer, charges, 1, {"charge_id": 3}, envelope("c", "charges", None, c3, 500, 11)),
        send(producer, charges, 1, {"charge_id": 3}, envelope("u", "charges", c3, c3_scored, 600, 12)),
        send(producer, charges, 1, {"charge_id": 3},
             {"schema": {"type": "struct"}, "payload": envelope("c", "charges", None, c3, 700, 13)}, "missing op"),
        # partition 2 of charges stays empty
        send(producer, refunds, 0, {"refund_id": 1}, envelope("c", "refunds", None, {"refund_id": 1}, 800, 14)),
        send(producer, refunds, 1, {"refund_id": 2}, envelope("c", "refunds", None, {"refund_id": 2}, 900, 15)),
        send(producer, refunds, 1, {"refund_id": 3}, "", "invalid JSON"),
        send(producer, clicks, 0, None, event("click", 1)),
        send(producer, clicks, 1, None, event("click", 2, event_type="add_to_cart", cart={"items": [{"sku": "A"}]})),
        send(producer, clicks, 0, None, event("click", 3, schema_version=2), "unknown schema_version: 2"),
        send(producer, clicks, 1, None, event("click", 4, event_id=...), "missing event_id"),
        send(producer, clicks, 0, None, b"\xff\xfe\x00 not json, not UTF-8", "invalid JSON"),
        send(producer, clicks, 1, b"s-6", None, "null value on an event topic"),
        send(producer, feedback, 0, b"u-9", event("feedback", 1, event_type="rating", rating={"stars": 4})),
    ])
    send(producer, f"{run.cdc}.transaction", 0, None, {"status": "BEGIN"})
    send(producer, f"{run.tag}other.x", 0, None, {"x": 1})

    res = lakehouse("run", "bronze", "--once", *run.overrides())
    assert res.returncode == 0, explain(res)
    summary = last_json(res.stdout)
    assert summary["rows_written"] == len(sent) == 20
    assert summary["bronze"]["rows_by_table"] == {"bronze.cdc_payments_charges": 10, "bronze.cdc_payments_refunds": 3,
                                                  "bronze.events_clickstream": 6, "bronze.events_feedback": 1}

    tables = ["cdc_payments_charges", "cdc_payments_refunds", "events_clickstream", "events_feedback"]
    assert sorted(p.name for p in (run.lakehouse_dir / "bronze").iterdir()) == tables   # nothing else ingested
    # Per partition, bronze holds exactly Kafka's offsets: nothing lost, nothing twice.
    assert bronze_offsets(run, spark, tables) == {k: v for k, v in kafka_offsets(run.settings, topics).items() if v}
    assert kafka_offsets(run.settings, topics)[(charges, 2)] == []

    # Every message byte for byte, with its key, Kafka timestamp and exactly the expected error.
    got = {}
    for name in tables:
        rows = run.table(spark, name).select(
            "_topic", "_partition", "_offset", F.col("_key").cast("binary").alias("k"),
            F.col("_value").cast("binary").alias("v"), F.unix_millis("_kafka_timestamp").alias("ts"),
            "_is_tombstone", "_parse_error", "_batch_id", (F.col("_ingest_date") == F.to_date("_ingested_at"))
            .alias("date_ok")).collect()
        for r in rows:
            got[(r["_topic"], r["_partition"], r["_offset"])] = Sent(
                None if r["k"] is None else bytes(r["k"]), None if r["v"] is None else bytes(r["v"]), r["ts"],
                r["_parse_error"])
            assert (r["_is_tombstone"], r["_batch_id"], r["date_ok"]) == (r["v"] is None, 0, True)
    assert got == sent

    # The envelope, parsed: ops, LSNs, snapshot flags, and the column added upstream, by path.
    cdc = run.table(spark, "cdc_payments_charges").where(F.col("_parse_error").isNull() & ~F.col("_is_tombstone"))
    assert sorted(tuple(r) for r in cdc.select(
        "op", "source_lsn", "source_tx_id", "is_snapshot", F.expr("after:charge_id::int"),
        F.variant_get("after", "$.risk_score", "string"), F.expr("before:status::string")).collect()) == [
        ("c", 500, 11, False, 3, None, None),
        ("d", 300, 9, False, None, None, "captured"),
        ("r", 100, 7, True, 1, None, None),
        ("r", 100, 7, True, 2, None, None),
        ("u", 200, 8, False, 2, None, "authorized"),
        ("u", 600, 12, False, 3, "0.93", "authorized"),
    ]
    events = run.table(spark, "events_clickstream").where(F.col("_parse_error").isNull())
    assert sorted(tuple(r) for r in events.select(
        "event_id", "event_type", F.expr("payload:page.url::string"), F.expr("payload:cart.items[0].sku::string"),
        F.expr("payload:session.device.os::string")).collect()) == [
        ("click-1", "page_view", "/p/1", None, "android"),
        ("click-2", "add_to_cart", "/p/2", "A", "android"),
    ]

    # Nothing new in Kafka: a second catch-up writes nothing.
    res = lakehouse("run", "bronze", "--once", *run.overrides())
    assert res.returncode == 0, explain(res)
    assert last_json(res.stdout)["rows_written"] == 0
    assert bronze_offsets(run, spark, tables) == {k: v for k, v in kafka_offsets(run.settings, topics).items() if v}


def test_replaying_a_batch_id_writes_nothing_twice(run: Run, admin, producer, spark) -> None:
    topic = f"{run.cdc}.payments.charges"
    create_topics(admin, {topic: 2})
    for i in range(6):
        send(producer, topic, i % 2, {"charge_id": i}, envelope("c", "charges", None, {"charge_id": i}, i, i))
    batch = (spark.read.format("kafka").option("kafka.bootstrap.servers", kafka_bootstrap(run.settings))
             .option("subscribe", topic).load())
    app_id = f"test-{run.tag}"
    assert write_bronze_batch(batch, 5, run.settings, app_id) == {"bronze.cdc_payments_charges": 6}
    write_bronze_batch(batch, 5, run.settings, app_id)          # the same batch again: skipped by Delta
    write_bronze_batch(batch, 4, run.settings, app_id)          # an older one too
    table = run.table(spark, "cdc_payments_charges")
    assert (table.count(), table.select("_partition", "_offset").distinct().count()) == (6, 6)
    write_bronze_batch(batch, 6, run.settings, app_id)          # a new batch id is a new append
    assert run.table(spark, "cdc_payments_charges").count() == 12


class Traffic(threading.Thread):
    """Produces CDC and event messages to three topics until stopped; after `add_column_at` messages the
    charges' `after` carries a column added upstream."""

    def __init__(self, run: Run, topics: list[str], rate: float, add_column_at: int) -> None:
        super().__init__(daemon=True)
        self.producer = KafkaProducer(bootstrap_servers=kafka_bootstrap(run.settings), acks="all", linger_ms=5)
        self.topics, self.rate, self.add_column_at = topics, rate, add_column_at
        self.stop = threading.Event()
        self.sent = 0
        self.with_new_column = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        charges, refunds, clicks = self.topics
        try:
            while not self.stop.is_set():
                n = self.sent
                after = {"charge_id": n, "amount_minor": str(100 + n), "status": "captured"}
                if n >= self.add_column_at:
                    after["risk_score"] = f"0.{n % 100:02d}"
                    self.with_new_column += 1
                self.producer.send(charges, key=json.dumps({"charge_id": n}).encode(),
                                   value=json.dumps(envelope("c", "charges", None, after, n, n)).encode())
                self.producer.send(refunds, key=json.dumps({"refund_id": n}).encode(),
                                   value=json.dumps(envelope("d", "refunds", {"refund_id": n}, None, n, n)).encode())
                self.producer.send(refunds, key=json.dumps({"refund_id": n}).encode(), value=None)   # tombstone
                self.producer.send(clicks, value=(json.dumps(event("click", n)) if n % 10 else "{oops").encode())
                self.sent += 1
                time.sleep(1 / self.rate)
            self.producer.flush()
        except BaseException as e:  # surfaced by the test
            self.error = e
        finally:
            self.producer.close()


def _latest(dir_: Path) -> int | None:
    names = [int(p.name) for p in dir_.iterdir() if p.name.isdigit()] if dir_.is_dir() else []
    return max(names) if names else None


def _marked_batch(action: dict) -> int | None:
    """The batch id of a bronze append's commit (`userMetadata` = `<app id>:<batch id>`), else None."""
    return marked_batch(action.get("commitInfo", {}).get("userMetadata"))


def _batch_ids(table_dir: Path) -> list[int]:
    """The batch ids of the table's commits, oldest first (one per bronze append)."""
    batches = []
    log = table_dir / "_delta_log"
    for commit in sorted(log.glob("*.json")) if log.is_dir() else []:
        for line in commit.read_text().splitlines():
            if (batch := _marked_batch(json.loads(line))) is not None:
                batches.append(batch)
    return batches


def _latest_batch(table_dir: Path) -> int | None:
    """The batch id of the table's newest commit (None before the first)."""
    commits = sorted((table_dir / "_delta_log").glob("*.json")) if (table_dir / "_delta_log").is_dir() else []
    for commit in reversed(commits):
        try:
            lines = commit.read_text().splitlines()
        except FileNotFoundError:
            continue
        for line in lines:
            if (batch := _marked_batch(json.loads(line))) is not None:
                return batch
    return None


def test_killed_mid_batch_then_restarted_loses_and_duplicates_nothing(run: Run, admin, spark) -> None:
    charges, refunds, clicks = f"{run.cdc}.payments.charges", f"{run.cdc}.payments.refunds", f"{run.ev}.clickstream"
    topics = {charges: 3, refunds: 2, clicks: 2}
    create_topics(admin, topics)
    traffic = Traffic(run, [charges, refunds, clicks], rate=100, add_column_at=300)
    traffic.start()

    checkpoint = Path(checkpoint_location(run.settings))
    tables = ["cdc_payments_charges", "cdc_payments_refunds", "events_clickstream"]
    table_dirs = [run.lakehouse_dir / "bronze" / name for name in tables]
    job = subprocess.Popen([str(BIN / "lakehouse"), "run", "bronze", *run.overrides(),
                            "--set=bronze.trigger_interval=1 second"],
                           cwd=ROOT, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           start_new_session=True)   # its own process group: the Python driver and its JVM
    killed_batch = None
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and job.poll() is None:
            # Wait for a batch that some tables have committed and others not yet (nor the checkpoint),
            # then kill everything at once.
            batch = _latest(checkpoint / "offsets")
            if batch is not None and batch >= 2 and not (checkpoint / "commits" / str(batch)).exists():
                written = [_latest_batch(d) == batch for d in table_dirs]
                if any(written) and not all(written):
                    os.killpg(job.pid, signal.SIGKILL)
                    killed_batch = batch
                    break
            time.sleep(0.01)
        out = job.communicate(timeout=60)[0].decode(errors="replace")
        assert killed_batch is not None, f"never caught a batch in flight; job output:\n{out[-5000:]}"
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
    # The kill landed inside the batch: some tables have its append, at least one has not.
    assert not (checkpoint / "commits" / str(killed_batch)).exists()
    has_batch = [killed_batch in _batch_ids(d) for d in table_dirs]
    assert any(has_batch) and not all(has_batch), has_batch

    time.sleep(3)          # a little more traffic after the crash
    traffic.stop.set()
    traffic.join(timeout=60)
    assert traffic.error is None and traffic.with_new_column > 0

    res = spark_submit(str(ROOT / "jobs" / "bronze_ingest.py"), "--env", "test", "--once", *run.overrides())
    assert res.returncode == 0, explain(res)
    assert last_json(res.stdout)["bronze"]["batches"] >= 2    # the interrupted batch again, then the rest

    in_kafka = kafka_offsets(run.settings, topics)
    assert sum(len(v) for v in in_kafka.values()) == 4 * traffic.sent
    assert bronze_offsets(run, spark, tables) == in_kafka       # exact: nothing lost, nothing twice
    for d in table_dirs:   # each batch appended once to each table, the interrupted one included
        versions = _batch_ids(d)
        assert len(versions) == len(set(versions)) and killed_batch in versions, (d.name, versions)

    charges_rows = run.table(spark, "cdc_payments_charges")
    assert charges_rows.where(F.variant_get("after", "$.risk_score", "string").isNotNull()).count() == \
        traffic.with_new_column
    assert charges_rows.where(F.col("_parse_error").isNotNull()).count() == 0
    refunds_rows = run.table(spark, "cdc_payments_refunds")
    assert sorted(tuple(r) for r in refunds_rows.groupBy("_is_tombstone", "op").count().collect()) == [
        (False, "d", traffic.sent), (True, None, traffic.sent)]
    clicks_rows = run.table(spark, "events_clickstream")
    assert clicks_rows.where(F.col("_parse_error") == "invalid JSON").count() == (traffic.sent + 9) // 10
