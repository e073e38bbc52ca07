"""Producing the app events to Kafka with kafka-python: the topics, the idempotent producer, and the sink
that live traffic (`run_live(on_payment=…)`) feeds.

Delivery: `acks='all'` with `enable_idempotence=True` (kafka-python >= 2.1 implements the idempotent
producer: a producer id and per-partition sequence numbers, so a retried batch is never written twice
and order per partition is kept with up to 5 requests in flight). Records are keyed by customer id (by
session id for anonymous traffic, by service for background logs), so one key's events stay in order
in one partition. The Kafka record timestamp is the produce time; the event's own time is
`event_time` in the value (a backfill's 30-day-old timestamps would otherwise fall out of retention at
once).
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer

from lakehouse.common.config import Settings
from lakehouse.common.connections import kafka_bootstrap
from lakehouse.events import FAMILIES, topic_name
from lakehouse.events.generate import Event, EventOptions, EventStats, LiveEvents, history_events
from lakehouse.oltp.simulator import History, SimConfig, World

TOPIC_ALREADY_EXISTS = 36
PRODUCER_CONFIG: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    # Throughput: kafka-python wakes its I/O thread (a socket write) whenever a record opens a new
    # batch, so long lingers and large batches matter more than anything else (20 ms: ~4,400
    # records/s, 250 ms: ~8,100/s on 2 busy cores). No compression: gzip costs more CPU than it saves
    # on a local broker, and lz4 / zstd / snappy need further libraries. The `crc32c` package (a
    # dependency) computes the record batches' CRC in C: kafka-python's pure-Python fallback alone
    # caps a producer at about 2,000 records/s.
    "linger_ms": 250,
    "batch_size": 512 * 1024,
    "max_in_flight_requests_per_connection": 5,
    "client_id": "lakehouse-events",
}


def topics(settings: Settings) -> dict[str, str]:
    """Family -> topic name, e.g. {"clickstream": "events.clickstream", …}."""
    return {family: topic_name(settings.events.topic_prefix, family) for family in FAMILIES}


def ensure_topics(settings: Settings) -> dict[str, dict[str, Any]]:
    """Creates the missing event topics with `events.partitions` partitions and `events.retention_hours`
    retention (replication: the broker's default); existing topics are left as they are. Returns per
    topic whether it was created and its partition count."""
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap(settings), client_id="lakehouse-events-admin")
    try:
        wanted = list(topics(settings).values())
        existing = set(admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing:
            spec = {t: {"num_partitions": settings.events.partitions, "replication_factor": -1,
                        "configs": {"retention.ms": str(settings.events.retention_hours * 3_600_000)}}
                    for t in missing}
            result = admin.create_topics(spec, timeout_ms=30_000, raise_errors=False, wait_for_metadata=True)
            for t in result["topics"]:
                if t["error_code"] not in (0, TOPIC_ALREADY_EXISTS):
                    raise RuntimeError(f"creating topic {t['name']}: error {t['error_code']} {t.get('error_message')}")
        described = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(wanted)}
        return {t: {"created": t in missing, "partitions": described.get(t)} for t in wanted}
    finally:
        admin.close()


class EventProducer:
    """One idempotent KafkaProducer for the event topics; counts what the broker acknowledged, per
    topic, and prints progress every `progress_every` seconds. Thread-safe (live workers share it)."""

    def __init__(self, settings: Settings, progress: bool = True, progress_every: float = 5.0,
                 **overrides: Any) -> None:
        self.topics = topics(settings)
        self.progress, self.progress_every = progress, progress_every
        self._producer = KafkaProducer(bootstrap_servers=kafka_bootstrap(settings), **{**PRODUCER_CONFIG, **overrides})
        self.idempotent = bool(self._producer.config["enable_idempotence"])
        self.sent: Counter[str] = Counter()
        self.acknowledged: Counter[str] = Counter()
        self.failed = 0
        self.first_error: str | None = None
        self._lock = threading.Lock()
        self._t0 = self._last = time.monotonic()

    def send(self, event: Event) -> None:
        topic = self.topics[event.family]
        future = self._producer.send(topic, key=event.key, value=event.value)
        future.add_callback(self._acked, topic)
        future.add_errback(self._failed, topic)
        with self._lock:
            self.sent[topic] += 1
            now = time.monotonic()
            if self.progress and now - self._last >= self.progress_every:
                self._last = now
                total = sum(self.sent.values())
                print(f"  events: {total:,} sent, {sum(self.acknowledged.values()):,} acknowledged, "
                      f"{total / (now - self._t0):,.0f}/s", file=sys.stderr, flush=True)

    def _acked(self, topic: str, _metadata: Any) -> None:
        with self._lock:
            self.acknowledged[topic] += 1

    def _failed(self, topic: str, error: BaseException) -> None:
        with self._lock:
            self.failed += 1
            self.first_error = self.first_error or f"{topic}: {error!r}"

    def close(self, timeout_s: float = 120) -> dict[str, Any]:
        """Flushes (waits for every acknowledgement), closes, and returns the report."""
        self._producer.flush(timeout=timeout_s)
        self._producer.close(timeout=timeout_s)
        took = time.monotonic() - self._t0
        with self._lock:
            acked = sum(self.acknowledged.values())
            return {"topics": {t: self.acknowledged[t] for t in self.topics.values()},
                    "sent": sum(self.sent.values()), "acknowledged": acked, "failed": self.failed,
                    "first_error": self.first_error, "seconds": round(took, 1),
                    "events_per_s": round(acked / took, 1) if took > 0 else None,
                    "acks": "all", "idempotent": self.idempotent}


def produce(settings: Settings, events: Iterable[Event], progress: bool = True,
            stats: EventStats | None = None) -> dict[str, Any]:
    """Creates the topics if missing, sends every event, flushes; returns the producer's report plus the
    generator's `stats` (per family, per type, noise per kind) when given."""
    created = ensure_topics(settings)
    producer = EventProducer(settings, progress=progress)
    try:
        for event in events:
            producer.send(event)
    finally:
        report = producer.close()
    report["partitions"] = {t: info["partitions"] for t, info in created.items()}
    if stats is not None:
        report["generated"] = stats.as_dict()
    return report


class LiveEventSink:
    """The `on_payment` callback of `run_live`: turns each live payment into its events and sends them.
    Never raises into the payment workers; errors are counted in `errors`."""

    def __init__(self, settings: Settings, events: LiveEvents, progress: bool = False) -> None:
        ensure_topics(settings)
        self.events = events
        self.producer = EventProducer(settings, progress=progress)
        self.errors = 0
        self.first_error: str | None = None
        self._lock = threading.Lock()

    def __call__(self, payment: dict[str, Any], ref: Any, ok: bool) -> None:
        try:
            for event in self.events.for_payment(payment, getattr(ref, "charge_id", None),
                                                 getattr(ref, "created_at", None), ok):
                self.producer.send(event)
        except Exception as e:   # a broken sink must not stop the payment workers
            with self._lock:
                self.errors += 1
                self.first_error = self.first_error or repr(e)

    def close(self) -> dict[str, Any]:
        report = self.producer.close()
        report["generated"] = self.events.stats.as_dict()
        report["sink_errors"] = self.errors
        report["sink_first_error"] = self.first_error
        return report


def event_options(settings: Settings, noise: float | None = None) -> EventOptions:
    """`events.noise` (or `noise`, e.g. from `--noise`) and `events.pii_share`."""
    return EventOptions(noise=settings.events.noise if noise is None else noise, pii_share=settings.events.pii_share)


def produce_history(settings: Settings, cfg: SimConfig, world: World, history: History, noise: float | None = None,
                    progress: bool = True) -> dict[str, Any]:
    """The events of a backfilled history (`build_world` / `build_history` for `cfg`) to Kafka; the report."""
    stream = history_events(cfg, world, history, event_options(settings, noise))
    if progress:
        print(f"events: producing the history's events to {settings.events.topic_prefix}.* …", file=sys.stderr,
              flush=True)
    return produce(settings, stream, progress=progress, stats=stream.stats)


def live_sink(settings: Settings, cfg: SimConfig, world: World, noise: float | None = None) -> LiveEventSink:
    """The `on_payment` callback for `run_live` that produces each payment's events."""
    return LiveEventSink(settings, LiveEvents(cfg, world, event_options(settings, noise)))
