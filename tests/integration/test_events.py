"""The app events through the real Kafka: produced by the idempotent producer and by `lakehouse simulate
--events`, consumed back byte for byte. Each test writes to topics of its own prefix."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from lakehouse.common.config import Settings
from lakehouse.common.connections import kafka_bootstrap
from lakehouse.events import FAMILIES
from lakehouse.events.generate import EventOptions, history_events, planned_noise
from lakehouse.events.producer import produce_history, topics
from lakehouse.oltp.db import connect
from lakehouse.oltp.simulator import SimConfig, build_history, build_world
from tests.integration.helpers import explain, fresh_database, lakehouse

CFG = SimConfig(seed=11, days=2, end=dt.date(2026, 3, 1), merchants=8, customers=120)


def with_events(settings: Settings, **changes: Any) -> Settings:
    """`settings` with a topic prefix of the test's own (and any other events.* change)."""
    prefix = f"evt{uuid.uuid4().hex[:10]}"
    return dataclasses.replace(settings, events=dataclasses.replace(settings.events, topic_prefix=prefix,
                                                                    **changes))


def consume_all(settings: Settings, names: list[str], timeout_s: float = 120) -> list[ConsumerRecord]:
    """Every record of the topics, from the beginning to the end offsets at the time of the call."""
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap(settings), enable_auto_commit=False, group_id=None)
    try:
        consumer.topics()                                         # metadata
        tps = [TopicPartition(t, p) for t in names for p in sorted(consumer.partitions_for_topic(t) or [])]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, "timed out reading the topics back"
            for batch in consumer.poll(timeout_ms=1000, max_records=10_000).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def parsed(records: Iterable[ConsumerRecord]) -> list[dict[str, Any]]:
    """The records' values that are JSON documents of the current schema."""
    out = []
    for r in records:
        try:
            doc = json.loads(r.value)
        except ValueError:
            continue
        if doc.get("schema_version") == 1 and "event_id" in doc:
            out.append(doc)
    return out


def test_a_backfills_events_round_trip_through_kafka(stack: Any, settings: Settings) -> None:
    s = with_events(settings, noise=0.1, partitions=3)
    world = build_world(CFG)
    history = build_history(CFG, world)
    started_ms = int(time.time() * 1000)
    report = produce_history(s, CFG, world, history, progress=False)
    expected = list(history_events(CFG, world, history, EventOptions(noise=0.1, pii_share=s.events.pii_share)))
    names = topics(s)
    per_family = Counter(e.family for e in expected)
    assert report["failed"] == 0 and report["acks"] == "all" and report["idempotent"] is True
    assert report["acknowledged"] == report["sent"] == len(expected) > 3000
    assert report["topics"] == {names[f]: per_family[f] for f in FAMILIES}
    assert report["partitions"] == {names[f]: 3 for f in FAMILIES}
    assert report["generated"]["corrupted"] == planned_noise(len(expected), 0.1)

    records = consume_all(s, list(names.values()))
    assert Counter(r.topic for r in records) == {names[f]: per_family[f] for f in FAMILIES}
    # byte for byte, malformed ones included
    assert Counter((r.topic, r.key, r.value) for r in records) == Counter(
        (names[e.family], e.key, e.value) for e in expected)
    # one key -> one partition, and its events in the order they were generated (event time order)
    partitions: dict[tuple[str, bytes], set[int]] = defaultdict(set)
    consumed: dict[tuple[str, bytes], list[bytes]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        partitions[(r.topic, r.key)].add(r.partition)
        consumed[(r.topic, r.key)].append(r.value)
    assert all(len(p) == 1 for p in partitions.values())
    generated: dict[tuple[str, bytes], list[bytes]] = defaultdict(list)
    for e in expected:
        generated[(names[e.family], e.key)].append(e.value)
    assert consumed == generated
    # keys: the customer for customer traffic
    kind = {(names[e.family], e.key, e.value): e.corruption for e in expected}
    for r in records:
        if kind[(r.topic, r.key, r.value)] in (None, "unknown_version", "missing_event_id"):
            doc = json.loads(r.value)
            if doc["customer_id"] is not None:
                assert r.key == str(doc["customer_id"]).encode()
    # the malformed events are there as produced, e.g. the first of each kind
    values = {r.value for r in records}
    for kind in ("not_json", "truncated_json", "unknown_version", "missing_event_id"):
        first = next(e for e in expected if e.corruption == kind)
        assert first.value in values
    # Kafka's record timestamp is the produce time (event_time lives in the value)
    assert min(r.timestamp for r in records) >= started_ms - 5_000


def test_simulate_events_backfill_and_live_through_the_cli(stack: Any, settings: Settings) -> None:
    db = fresh_database(settings, "events_cli")
    s = with_events(db)
    opts = ["--set", f"services.postgres.database={db.services.postgres.database}",
            "--set", f"events.topic_prefix={s.events.topic_prefix}"]
    res = lakehouse(*opts, "simulate", "--seed", str(CFG.seed), "--days", str(CFG.days), "--end", str(CFG.end),
                    "--merchants", str(CFG.merchants), "--customers", str(CFG.customers), "--events",
                    "--noise", "0.05")
    assert res.returncode == 0, explain(res)
    backfill = json.loads(res.stdout)["events"]
    world = build_world(CFG)
    expected = list(history_events(CFG, world, build_history(CFG, world), EventOptions(noise=0.05)))
    names = topics(s)
    per_family = Counter(e.family for e in expected)       # the same seed, the same events, with or without Kafka
    assert backfill["topics"] == {names[f]: per_family[f] for f in FAMILIES}
    assert backfill["generated"]["corrupted"] == planned_noise(len(expected), 0.05)
    assert backfill["failed"] == 0 and backfill["acknowledged"] == len(expected)
    with connect(db) as conn:
        last_backfilled = conn.execute("SELECT max(charge_id) FROM payments.charges").fetchone()[0]

    res = lakehouse(*opts, "simulate", "--seed", "12", "--rate", "25", "--duration", "4", "--workers", "2",
                    "--events")
    assert res.returncode == 0, explain(res)
    live_doc = json.loads(res.stdout)
    live = live_doc["events"]
    assert live["failed"] == 0 and live["sink_errors"] == 0
    assert live["acknowledged"] == live["generated"]["total"] > live_doc["committed"] * 6
    assert live["generated"]["corrupted"] == planned_noise(live["generated"]["total"], 0.0)

    records = consume_all(s, list(names.values()))
    assert Counter(r.topic for r in records) == Counter(backfill["topics"]) + Counter(live["topics"])
    # the live payments' charges, as PostgreSQL has them, against the events
    with connect(db) as conn:
        charges = conn.execute("SELECT charge_id, status, customer_id FROM payments.charges WHERE charge_id > %s",
                               (last_backfilled,)).fetchall()
    assert len(charges) == live_doc["committed"]
    docs = parsed(r for r in records if r.topic == names["app_logs"])   # the backfill's noise left out
    declined = {d["payload"]["error"]["charge_id"] for d in docs
                if d["payload"]["level"] == "ERROR" and d["payload"]["error"]["type"] == "card_error"
                and d["payload"]["error"]["charge_id"] > last_backfilled}
    assert declined == {cid for cid, status, _ in charges if status == "failed"}
    sessions = parsed(r for r in records if r.topic == names["sessions"])
    checkouts = {d["payload"]["charge_id"]: d["customer_id"] for d in sessions
                 if d["event_type"] == "session_end" and (d["payload"]["charge_id"] or 0) > last_backfilled}
    assert checkouts == {cid: customer for cid, _, customer in charges}

