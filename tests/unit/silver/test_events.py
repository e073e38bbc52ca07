"""silver.events: the generator's events through bronze's transforms into typed silver rows (exact rows,
chispa), the rejected rows with their reasons, redaction, and the idempotent MERGE."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.bronze.tables import EVENTS_SCHEMA
from lakehouse.bronze.transforms import build_bronze_events, with_kafka_meta
from lakehouse.events.generate import Event, EventOptions, history_events
from lakehouse.oltp.simulator import SimConfig, build_history, build_world
from lakehouse.silver.events import (
    CLICKSTREAM_EVENTS,
    FAMILIES,
    REJECTED_SCHEMA,
    apply_events_batch,
    build_silver_app_logs,
    build_silver_clickstream,
    build_silver_events,
    build_silver_feedback,
    build_silver_sessions,
    rejected_events,
)

CFG = SimConfig(seed=42, days=2, end=dt.date(2026, 3, 1), merchants=12, customers=300)
NOISE = 0.002                       # 16 of the 8,298 events corrupted, the four kinds in turn
KAFKA_SCHEMA = ("key binary, value binary, topic string, partition int, offset long, timestamp timestamp, "
                "timestampType int")
PRODUCED = dt.datetime(2026, 3, 1, 0, 0, 5)
REASON_OF_NOISE = {"not_json": "invalid JSON", "truncated_json": "invalid JSON",
                   "unknown_version": "unknown schema_version: 99", "missing_event_id": "missing event_id"}


def kafka_rows(spark, family: str, values: list[tuple[bytes | None, bytes | None]], first_offset: int = 0
               ) -> DataFrame:
    """(key, value) -> Kafka source rows of `events.<family>`, partition 0, consecutive offsets."""
    rows = [(k, v, f"events.{family}", 0, first_offset + i, PRODUCED, 0) for i, (k, v) in enumerate(values)]
    return spark.createDataFrame(rows, KAFKA_SCHEMA)


def to_bronze(kafka: DataFrame) -> DataFrame:
    return kafka.transform(with_kafka_meta).transform(
        build_bronze_events(batch_id=1, ingested_at=F.lit("2026-03-01 00:00:06")))


@pytest.fixture(scope="module")
def stream() -> dict[str, list[Event]]:
    """The generator's events of a small two-day history (every feedback text with an e-mail or a card
    number, a few corrupted), per family in production order."""
    world = build_world(CFG)
    events = history_events(CFG, world, build_history(CFG, world), EventOptions(noise=NOISE, pii_share=1.0))
    out: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        out[e.family].append(e)
    return out


@pytest.fixture(scope="module")
def bronze(spark, stream: dict[str, list[Event]]) -> dict[str, DataFrame]:
    out = {}
    for family, events in stream.items():
        df = to_bronze(kafka_rows(spark, family, [(e.key, e.value) for e in events]))
        assert df.schema.simpleString() == EVENTS_SCHEMA.simpleString()
        out[family] = df.cache()
    return out


def offset_of(stream: dict[str, list[Event]], family: str, event_id: str) -> int:
    [offset] = [i for i, e in enumerate(stream[family]) if e.corruption is None
                and json.loads(e.value)["event_id"] == event_id]
    return offset


def with_json_attributes(df: DataFrame) -> DataFrame:
    return df.withColumn("attributes", F.to_json(F.col("attributes")))


def js(doc: Any) -> str:
    """JSON as to_json prints a VARIANT: keys sorted, no spaces."""
    return json.dumps(doc, separators=(",", ":"), sort_keys=True)


def expected_schema(family: str) -> str:
    """The silver table's DDL with `attributes` as its JSON text."""
    table = FAMILIES[family].table
    return ", ".join(f"{f.name} {'string' if f.name == 'attributes' else f.dataType.simpleString()}"
                     for f in table.schema.fields)


def one_event(silver: DataFrame, event_id: str) -> DataFrame:
    return silver.where(F.col("event_id") == F.lit(event_id)).transform(with_json_attributes)


T = dt.datetime


def test_a_click_of_the_generator_as_a_typed_row(spark, stream, bronze) -> None:
    eid = "f0426d6c-8b80-506d-a95b-d4b5c3361081"     # the pay-button click of charge 90 (app, JPY cart)
    actual = one_event(bronze["clickstream"].transform(build_silver_clickstream), eid)
    items = [{"sku": "M1-0384", "quantity": 2, "unit_amount_minor": 307},
             {"sku": "M1-0778", "quantity": 1, "unit_amount_minor": 4742}]
    expected = spark.createDataFrame([(
        eid, "click", T(2026, 2, 27, 0, 21, 24, 201_000), dt.date(2026, 2, 27), 92, "s_jhknmbijmnlofihaldofhecd",
        "checkout", "/checkout", None, "pay-button", "Pay now", 1, "mobile", "Android", "app", "5.11.2", "GB",
        "London", 5356, "JPY", js({"cart": {"items": items}}),
        "events.clickstream", 0, offset_of(stream, "clickstream", eid))], expected_schema("clickstream"))
    assert_df_equality(actual, expected, ignore_nullable=True)


def test_a_session_end_of_the_generator_as_a_typed_row(spark, stream, bronze) -> None:
    eid = "ce0dfb6d-c019-5361-98db-4a3b15d949fe"     # a tablet's web checkout session, charge 116
    actual = one_event(bronze["sessions"].transform(build_silver_sessions), eid)
    expected = spark.createDataFrame([(
        eid, "session_end", T(2026, 2, 27, 0, 10, 52, 850_000), dt.date(2026, 2, 27), 143,
        "s_daijlgneoidnfmgjlcldmnck", "web", "tablet", "iPadOS", None, "MX", "Mexico City", 10, "/m/10", None,
        362257, 4, 2, "checkout_completed", 116,
        None,                                        # every field lifted, the IP dropped: nothing left
        "events.sessions", 0, offset_of(stream, "sessions", eid))], expected_schema("sessions"))
    assert_df_equality(actual, expected, ignore_nullable=True)


def test_a_decline_log_of_the_generator_as_a_typed_row(spark, stream, bronze) -> None:
    eid = "8f64f2ad-f3c4-58d5-8749-be807ccea229"     # the example of docs/events.md
    actual = one_event(bronze["app_logs"].transform(build_silver_app_logs), eid)
    expected = spark.createDataFrame([(
        eid, "error", T(2026, 2, 27, 13, 32, 46, 373_000), dt.date(2026, 2, 27), 75, "s_npbbjfbkeofpfolelflffodk",
        "ERROR", "checkout-api", "payment declined for charge 71: insufficient_funds",
        "oigdcfjaapeoflipjlmciecmppbcelcd", "card_error", "insufficient_funds", 71, 9, 2866, "EUR", None, None,
        "POST", "/v1/payments", 402, 425, None,
        "events.app_logs", 0, offset_of(stream, "app_logs", eid))], expected_schema("app_logs"))
    assert_df_equality(actual, expected, ignore_nullable=True)


def test_feedback_text_is_redacted_e_mail_and_card_number(spark, stream, bronze) -> None:
    survey, review = "0e2162e5-7011-5d49-b4a7-5fb433fa4561", "a041cfe2-763e-5e07-a658-3310ecc9301d"
    raw = {json.loads(e.value)["event_id"]: json.loads(e.value)["payload"]["text"] for e in stream["feedback"]
           if e.corruption is None}
    assert "mateo.kim.94@example.com" in raw[survey] and "3782 829189 14951" in raw[review]   # as typed
    silver = bronze["feedback"].transform(build_silver_feedback)
    actual = silver.where(F.col("event_id").isin(survey, review)).transform(with_json_attributes)
    expected = spark.createDataFrame([
        (survey, "survey", T(2026, 2, 27, 22, 24, 27, 903_000), dt.date(2026, 2, 27), 94, None, "survey", 4, 93, 3,
         "The page was slow. My e-mail is [REDACTED_EMAIL], contact me there.", None, "recommend_v1",
         "How likely are you to recommend us?", "email_survey", None,
         "events.feedback", 0, offset_of(stream, "feedback", survey)),
        (review, "review", T(2026, 2, 28, 6, 17, 21, 99_000), dt.date(2026, 2, 28), 218, None, "review", 8, 185, 4,
         "Good experience overall, delivery a bit slow. The card number is [REDACTED_PAN], please check it.", None,
         None, None, "app", None, "events.feedback", 0, offset_of(stream, "feedback", review)),
    ], expected_schema("feedback"))
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)
    # no text of the whole family keeps an e-mail address or a card number (every one had one)
    texts = [r["text"] for r in silver.select("text").collect() if r["text"]]
    assert len(texts) == sum(1 for t in raw.values() if t)
    assert all("[REDACTED_EMAIL]" in t or "[REDACTED_PAN]" in t for t in texts)
    assert not any("@" in t for t in texts)


def test_rows_in_are_silver_rows_plus_rejected_rows_with_the_noise_reasons(spark, stream, bronze) -> None:
    for family, events in stream.items():
        silver = bronze[family].transform(build_silver_events(family))
        rejected = bronze[family].transform(rejected_events(family))
        assert silver.schema.simpleString() == FAMILIES[family].table.schema.simpleString()
        assert rejected.schema.simpleString() == REJECTED_SCHEMA.simpleString()
        valid = [json.loads(e.value)["event_id"] for e in events if e.corruption is None]
        silver_ids = [r["event_id"] for r in silver.select("event_id").collect()]
        assert sorted(silver_ids) == sorted(valid), family
        expected = spark.createDataFrame(
            [(f"bronze.events_{family}", 0, i, [REASON_OF_NOISE[e.corruption]])
             for i, e in enumerate(events) if e.corruption],
            "source_table string, source_partition int, source_offset long, reasons array<string>")
        rejected_rows = spark.createDataFrame(rejected.drop("record").collect(), expected.schema)
        assert_df_equality(rejected_rows, expected, ignore_row_order=True, ignore_nullable=True)
        assert len(silver_ids) + rejected_rows.count() == len(events), family
    assert sum(1 for events in stream.values() for e in events if e.corruption) == 16


def test_the_client_ip_stays_out_of_silver_and_unknown_fields_go_to_attributes(spark) -> None:
    doc = {"schema_version": 1, "event_id": "e-1", "event_type": "page_view", "event_time": "2026-02-27T10:00:00.000Z",
           "customer_id": 7, "session_id": "s_a",
           "payload": {"page": {"type": "cart", "path": "/cart", "referrer": "/p", "scroll_depth": 80},
                       "element": None, "merchant_id": 3,
                       "device": {"type": "iPhone", "os": "iOS", "channel": "app", "app_version": "6.0.0",
                                  "screen": "1170x2532"},
                       "geo": {"ip": "35.10.3.156", "country": "DE", "city": "Berlin"}, "cart": None,
                       "experiment": {"id": "checkout_v2", "arm": "b"}}}
    bronze = to_bronze(kafka_rows(spark, "clickstream", [(b"7", json.dumps(doc).encode())]))
    silver = bronze.transform(build_silver_clickstream)
    [row] = silver.transform(with_json_attributes).collect()
    assert row["device_type"] == "mobile"                  # normalized from "iPhone"
    assert (row["geo_country"], row["geo_city"]) == ("DE", "Berlin")
    assert row["attributes"] == js({"device": {"screen": "1170x2532"}, "experiment": {"arm": "b", "id": "checkout_v2"},
                                    "page": {"scroll_depth": 80}})
    assert "35.10.3.156" not in json.dumps(row.asDict(), default=str)


def bad(**changes: Any) -> bytes:
    """A valid feedback event, changed: `payload__x=v` sets payload.x, `x=...` (Ellipsis) removes x."""
    doc: dict[str, Any] = {
        "schema_version": 1, "event_id": "e-1", "event_type": "review", "event_time": "2026-02-27T10:00:00.000Z",
        "customer_id": 7, "session_id": None,
        "payload": {"kind": "review", "merchant_id": 3, "charge_id": 9, "rating": 5, "text": "ok", "topic": None,
                    "survey": None, "channel": "app"}}
    for key, value in changes.items():
        where, _, name = key.rpartition("__")
        target = doc["payload"] if where == "payload" else doc
        if value is ...:
            target.pop(name)
        else:
            target[name] = value
    return json.dumps(doc).encode()


def test_rejected_rows_name_every_reason_and_carry_the_redacted_record(spark) -> None:
    card = "My card 4242 4242 4242 4242 was charged twice, write to ann@example.com."
    values = [
        bad(),                                                       # valid
        b"<html><body><h1>502 Bad Gateway</h1></body></html>",        # malformed
        bad(schema_version=99),                                      # unknown version
        bad(payload__rating="five", payload__text=card),             # wrong type; PAN and e-mail in the record
        bad(payload__merchant_id=3.5, customer_id="7", payload__survey="checkout_ease_v1"),
        bad(event_type="rating"),                                    # not a feedback event type
        bad(payload=...),                                            # no payload
        bad(payload=[1, 2]),                                         # payload not an object
        bad(payload__rating=None, payload__text=None),               # JSON null is fine
    ]
    bronze = to_bronze(kafka_rows(spark, "feedback", [(b"7", v) for v in values], first_offset=100))
    rejected = bronze.transform(rejected_events("feedback"))
    redacted = bad(payload__rating="five", payload__text="My card [REDACTED_PAN] was charged twice, write to "
                                                         "[REDACTED_EMAIL].").decode()
    expected = spark.createDataFrame([
        ("bronze.events_feedback", 0, 101, values[1].decode(), ["invalid JSON"]),
        ("bronze.events_feedback", 0, 102, values[2].decode(), ["unknown schema_version: 99"]),
        ("bronze.events_feedback", 0, 103, redacted, ["type error: payload.rating"]),
        ("bronze.events_feedback", 0, 104, values[4].decode(),
         ["type error: payload.survey", "type error: customer_id", "type error: payload.merchant_id"]),
        ("bronze.events_feedback", 0, 105, values[5].decode(), ["unknown event_type: rating"]),
        ("bronze.events_feedback", 0, 106, values[6].decode(), ["missing payload"]),
        ("bronze.events_feedback", 0, 107, values[7].decode(), ["type error: payload"]),
    ], REJECTED_SCHEMA)
    assert_df_equality(rejected, expected, ignore_row_order=True, ignore_nullable=True)
    silver = bronze.transform(build_silver_feedback)
    assert sorted((r["_offset"], r["rating"], r["text"]) for r in silver.collect()) == [(100, 5, "ok"),
                                                                                        (108, None, None)]


def test_a_rejected_clickstream_record_has_its_ip_masked(spark) -> None:
    doc = {"schema_version": 1, "event_id": "e-2", "event_type": "click", "event_time": "2026-02-27T10:00:00.000Z",
           "customer_id": 7, "session_id": "s_a", "payload": {"page": "checkout", "geo": {"ip": "35.10.3.156"}}}
    value = json.dumps(doc)
    bronze = to_bronze(kafka_rows(spark, "clickstream", [(b"7", value.encode()),
                                                         (b"7", value[:value.index("3.156")].encode())]))
    rejected = bronze.transform(rejected_events("clickstream")).orderBy("source_offset").collect()
    assert [r["reasons"] for r in rejected] == [["type error: payload.page"], ["invalid JSON"]]
    assert [r["record"] for r in rejected] == [value.replace("35.10.3.156", "[REDACTED_IP]"),
                                               value[:value.index("35.10")] + "[REDACTED_IP]"]


def test_apply_inserts_each_event_once_and_a_replay_inserts_nothing(spark, stream, tmp_path: Path) -> None:
    target = str(tmp_path / "clickstream_events")
    events = stream["clickstream"]
    sample = [*events[::10], next(e for e in events if e.corruption)]    # both days, and a corrupted event
    batch = to_bronze(kafka_rows(spark, "clickstream", [(e.key, e.value) for e in sample]))
    valid = sum(1 for e in sample if e.corruption is None)
    assert apply_events_batch(batch, "clickstream", target) == {"source_rows": valid, "inserted": valid}
    assert apply_events_batch(batch, "clickstream", target) == {"source_rows": valid, "inserted": 0}
    # the same events delivered again at other offsets, twice within one batch, plus one new event
    again = [(e.key, e.value) for e in sample if e.corruption is None][:50]
    new = json.loads(again[0][1]) | {"event_id": "new-event"}
    redelivered = to_bronze(kafka_rows(spark, "clickstream", [*again, *again, (b"1", json.dumps(new).encode())],
                                       first_offset=10_000))
    assert apply_events_batch(redelivered, "clickstream", target) == {"source_rows": 51, "inserted": 1}
    table = spark.read.format("delta").load(target)
    assert table.schema.simpleString() == CLICKSTREAM_EVENTS.schema.simpleString()
    assert table.count() == valid + 1
    assert table.select("event_id").distinct().count() == valid + 1
    expected = batch.transform(build_silver_clickstream).unionByName(
        redelivered.transform(build_silver_clickstream).where(F.col("event_id") == F.lit("new-event")))
    assert_df_equality(table.transform(with_json_attributes), expected.transform(with_json_attributes),
                       ignore_row_order=True, ignore_nullable=True)
    partitions = spark.sql(f"DESCRIBE DETAIL delta.`{target}`").select("partitionColumns").first()
    assert partitions is not None and list(partitions[0]) == ["event_date"]


def test_every_family_has_its_own_build_function(spark, bronze) -> None:
    builders = {"clickstream": build_silver_clickstream, "sessions": build_silver_sessions,
                "app_logs": build_silver_app_logs, "feedback": build_silver_feedback}
    for family, build in builders.items():
        assert build(bronze[family]).schema == bronze[family].transform(build_silver_events(family)).schema
    with pytest.raises(ValueError, match="unknown event family 'orders'"):
        build_silver_events("orders")

