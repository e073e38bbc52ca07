from __future__ import annotations

import datetime as dt
import json
from typing import Any

from chispa import assert_df_equality
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.bronze.tables import CDC_SCHEMA, EVENTS_SCHEMA
from lakehouse.bronze.transforms import (
    build_bronze_cdc,
    build_bronze_events,
    parse_cdc_envelope,
    parse_event,
    with_kafka_meta,
)


def js(doc: Any) -> str:
    """JSON as to_json prints a VARIANT: keys sorted, no spaces."""
    return json.dumps(doc, separators=(",", ":"), sort_keys=True)


def source(lsn: int, tx: int, snapshot: str = "false") -> dict[str, Any]:
    return {"version": "3.6.3.Final", "connector": "postgresql", "name": "cdc", "ts_ms": 1_700_000_000_000 + lsn,
            "snapshot": snapshot, "db": "payments", "schema": "payments", "table": "charges", "txId": tx,
            "lsn": lsn}


def envelope(op: str, before: dict[str, Any] | None, after: dict[str, Any] | None, src: dict[str, Any],
             ts_ms: int = 1_700_000_000_500) -> str:
    return json.dumps({"before": before, "after": after, "source": src, "op": op, "ts_ms": ts_ms})


CHARGE = {"charge_id": 7, "amount_minor": "1250", "status": "authorized", "created_at": "2024-05-01T12:00:00Z"}
CAPTURED = {**CHARGE, "status": "captured"}
WITH_NEW_COLUMN = {**CAPTURED, "risk_score": "0.93"}

CDC_MESSAGES: list[tuple[int, str | None]] = [
    (0, envelope("r", None, CHARGE, source(100, 9, "true"))),
    (1, envelope("r", None, CHARGE, source(100, 9, "last"))),
    (2, envelope("c", None, CHARGE, source(200, 10))),
    (3, envelope("u", CHARGE, CAPTURED, source(300, 11))),
    (4, envelope("d", CAPTURED, None, source(400, 12))),
    (5, None),                                                          # the tombstone after the delete
    (6, "charge 7 captured"),                                           # not JSON
    (7, envelope("c", None, CHARGE, source(500, 13))[:60]),             # truncated
    (8, '[{"op": "c"}]'),                                               # JSON, not an object
    (9, envelope("x", None, CHARGE, source(600, 14))),                  # unknown op
    (10, json.dumps({"before": None, "after": CHARGE, "source": source(700, 15), "ts_ms": 1})),   # no op
    (11, envelope("c", None, None, source(800, 16))),                   # create without after
    (12, json.dumps({"after": CHARGE, "op": "c", "ts_ms": 1})),         # no source
    (13, envelope("u", CAPTURED, WITH_NEW_COLUMN, source(900, 17))),    # ALTER TABLE … ADD COLUMN upstream
    (14, envelope("c", None, CHARGE, source(1000, 18)) + " trailing"),  # bytes after the document
    (15, envelope("t", None, None, source(1100, 19))),                  # truncate
    (16, envelope("c", None, CHARGE, source(1200, 20)).replace('"ts_ms": 1700000000500', '"ts_ms": "12"')),
    (17, "{'op': 'c'}"),                                                # single quotes: not JSON
    (18, ""),                                                           # empty, not NULL: no tombstone
    (19, "null"),
]


def messages(spark, rows: list[tuple[int, str | None]]) -> DataFrame:
    return spark.createDataFrame(rows, "_offset long, _value string")


def test_cdc_envelope_is_parsed_with_exact_columns_and_errors(spark) -> None:
    parsed = messages(spark, CDC_MESSAGES).transform(parse_cdc_envelope)
    actual = parsed.select("_offset", "op", F.to_json("before").alias("before"), F.to_json("after").alias("after"),
                           "source_lsn", "source_tx_id", "source_ts_ms", "is_snapshot", "event_ts_ms", "_parse_error")
    t0, ev = 1_700_000_000_000, 1_700_000_000_500
    expected = spark.createDataFrame([
        (0, "r", None, js(CHARGE), 100, 9, t0 + 100, True, ev, None),
        (1, "r", None, js(CHARGE), 100, 9, t0 + 100, True, ev, None),
        (2, "c", None, js(CHARGE), 200, 10, t0 + 200, False, ev, None),
        (3, "u", js(CHARGE), js(CAPTURED), 300, 11, t0 + 300, False, ev, None),
        (4, "d", js(CAPTURED), None, 400, 12, t0 + 400, False, ev, None),
        (5, None, None, None, None, None, None, None, None, None),
        (6, None, None, None, None, None, None, None, None, "invalid JSON"),
        (7, None, None, None, None, None, None, None, None, "invalid JSON"),
        (8, None, None, None, None, None, None, None, None, "not a JSON object"),
        (9, "x", None, js(CHARGE), 600, 14, t0 + 600, False, ev, "unknown op: x"),
        (10, None, None, js(CHARGE), 700, 15, t0 + 700, False, 1, "missing op"),
        (11, "c", None, None, 800, 16, t0 + 800, False, ev, "missing after for op c"),
        (12, "c", None, js(CHARGE), None, None, None, None, 1, "missing source"),
        (13, "u", js(CAPTURED), js(WITH_NEW_COLUMN), 900, 17, t0 + 900, False, ev, None),
        (14, "c", None, js(CHARGE), 1000, 18, t0 + 1000, False, ev, "invalid JSON"),   # best effort + error
        (15, "t", None, None, 1100, 19, t0 + 1100, False, ev, None),
        (16, "c", None, js(CHARGE), 1200, 20, t0 + 1200, False, None, "envelope field of the wrong type"),
        (17, None, None, None, None, None, None, None, None, "invalid JSON"),
        (18, None, None, None, None, None, None, None, None, "invalid JSON"),
        (19, None, None, None, None, None, None, None, None, "not a JSON object"),
    ], "_offset long, op string, before string, after string, source_lsn long, source_tx_id long, "
       "source_ts_ms long, is_snapshot boolean, event_ts_ms long, _parse_error string")
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_the_source_block_is_kept_whole_and_raw_value_untouched(spark) -> None:
    parsed = messages(spark, CDC_MESSAGES[2:3]).transform(parse_cdc_envelope)
    [row] = parsed.select("_value", F.to_json("source").alias("source")).collect()
    assert row["_value"] == CDC_MESSAGES[2][1]
    assert row["source"] == js(source(200, 10))


def test_a_column_added_upstream_is_readable_with_variant_get(spark) -> None:
    parsed = messages(spark, CDC_MESSAGES).transform(parse_cdc_envelope).where(F.col("_parse_error").isNull())
    actual = parsed.select("_offset", F.variant_get("after", "$.risk_score", "string").alias("risk_score"),
                           F.expr("after:amount_minor::bigint").alias("amount_minor"),
                           F.expr("before:status::string").alias("before_status"))
    expected = spark.createDataFrame([
        (0, None, 1250, None), (1, None, 1250, None), (2, None, 1250, None), (3, None, 1250, "authorized"),
        (4, None, None, "captured"), (5, None, None, None), (13, "0.93", 1250, "captured"), (15, None, None, None),
    ], "_offset long, risk_score string, amount_minor long, before_status string")
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def event(**fields: Any) -> str:
    doc = {"schema_version": 1, "event_id": "e-1", "event_type": "page_view", "event_time": "2024-05-01T12:00:00.250Z",
           "user": {"id": "u-9", "device": {"os": "ios", "version": "17.4"}}, "page": {"url": "/checkout"},
           "items": [{"sku": "A", "qty": 2}]}
    doc.update(fields)
    return json.dumps({k: v for k, v in doc.items() if v is not ...})


EVENT_MESSAGES: list[tuple[int, str | None]] = [
    (0, event()),                                                   # valid v1
    (1, event(event_time="2024-05-01T14:00:00+02:00")),             # offset -> UTC
    (2, event(schema_version=2)),                                   # unknown version
    (3, event(schema_version="1")),                                 # a string is not a version
    (4, event(schema_version=...)),                                 # no version
    (5, event(event_id=...)),                                       # no event_id
    (6, event(event_id="")),                                        # empty event_id
    (7, event(event_type=...)),                                     # no event_type
    (8, event(event_time="yesterday")),                             # not ISO-8601
    (9, event(event_time=...)),                                     # no event_time
    (10, "<html>502 Bad Gateway</html>"),                           # not JSON
    (11, event()[:40]),                                             # truncated
    (12, None),                                                     # NULL value
    (13, "42"),                                                     # JSON, not an object
    (14, event(event_id={"id": 1})),                                # an object is no id …
    (15, event() + "\n"),                                          # … trailing whitespace is fine
]


def test_events_are_parsed_with_exact_columns_and_errors(spark) -> None:
    parsed = messages(spark, EVENT_MESSAGES).transform(parse_event)
    actual = parsed.select("_offset", "schema_version", "event_id", "event_type", "event_time", "_parse_error")
    t = dt.datetime(2024, 5, 1, 12, 0, 0, 250_000)
    t2 = dt.datetime(2024, 5, 1, 12, 0, 0)
    expected = spark.createDataFrame([
        (0, 1, "e-1", "page_view", t, None),
        (1, 1, "e-1", "page_view", t2, None),
        (2, 2, "e-1", "page_view", t, "unknown schema_version: 2"),
        (3, None, "e-1", "page_view", t, 'unknown schema_version: "1"'),
        (4, None, "e-1", "page_view", t, "missing schema_version"),
        (5, 1, None, "page_view", t, "missing event_id"),
        (6, 1, "", "page_view", t, "missing event_id"),
        (7, 1, "e-1", None, t, "missing event_type"),
        (8, 1, "e-1", "page_view", None, "invalid event_time: yesterday"),
        (9, 1, "e-1", "page_view", None, "missing event_time"),
        (10, None, None, None, None, "invalid JSON"),
        (11, None, None, None, None, "invalid JSON"),
        (12, None, None, None, None, "null value on an event topic"),
        (13, None, None, None, None, "not a JSON object"),
        (14, 1, None, "page_view", t, "envelope field of the wrong type"),
        (15, 1, "e-1", "page_view", t, None),
    ], "_offset long, schema_version int, event_id string, event_type string, event_time timestamp, "
       "_parse_error string")
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_event_payload_keeps_its_nesting_for_path_queries(spark) -> None:
    parsed = messages(spark, EVENT_MESSAGES[:1] + EVENT_MESSAGES[10:11]).transform(parse_event)
    actual = parsed.select("_offset", F.expr("payload:page.url::string").alias("url"),
                           F.variant_get("payload", "$.user.device.os", "string").alias("os"),
                           F.expr("payload:items[0].qty::int").alias("qty"),
                           F.to_json("payload").alias("payload"))
    expected = spark.createDataFrame([
        (0, "/checkout", "ios", 2, js(json.loads(event()))),
        (10, None, None, None, None),
    ], "_offset long, url string, os string, qty int, payload string")
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


KAFKA_SCHEMA = ("key binary, value binary, topic string, partition int, offset long, timestamp timestamp, "
                "timestampType int")


def test_kafka_meta_keeps_the_raw_bytes_and_flags_tombstones(spark) -> None:
    ts = dt.datetime(2024, 5, 1, 12, 0, 1)
    raw = b'\xff\xfe not utf-8'
    kafka = spark.createDataFrame([
        (b'{"charge_id":7}', b'{"op":"c"}', "cdc.payments.charges", 2, 40, ts, 0),
        (b'{"charge_id":7}', None, "cdc.payments.charges", 2, 41, ts, 0),
        (None, raw, "events.clickstream", 0, 5, ts, 0),
    ], KAFKA_SCHEMA)
    meta = kafka.transform(with_kafka_meta)
    actual = meta.select("_topic", "_partition", "_offset", "_kafka_timestamp", "_key", "_is_tombstone",
                         F.col("_value").cast("binary").alias("raw"))
    expected = spark.createDataFrame([
        ("cdc.payments.charges", 2, 40, ts, '{"charge_id":7}', False, bytearray(b'{"op":"c"}')),
        ("cdc.payments.charges", 2, 41, ts, '{"charge_id":7}', True, None),
        ("events.clickstream", 0, 5, ts, None, False, bytearray(raw)),
    ], "_topic string, _partition int, _offset long, _kafka_timestamp timestamp, _key string, "
       "_is_tombstone boolean, raw binary")
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_build_functions_give_the_table_schemas_with_ingest_columns(spark) -> None:
    ts = dt.datetime(2024, 5, 1, 23, 59, 59)
    kafka = spark.createDataFrame([(b"k", CDC_MESSAGES[2][1].encode(), "cdc.payments.charges", 0, 0, ts, 0)],
                                  KAFKA_SCHEMA)
    at = F.lit("2024-05-02 00:00:01").cast("timestamp")
    cdc = kafka.transform(with_kafka_meta).transform(build_bronze_cdc(batch_id=17, ingested_at=at))
    assert cdc.schema.simpleString() == CDC_SCHEMA.simpleString()
    [row] = cdc.select("_ingested_at", "_ingest_date", "_batch_id", "op", "_parse_error").collect()
    assert tuple(row) == (dt.datetime(2024, 5, 2, 0, 0, 1), dt.date(2024, 5, 2), 17, "c", None)

    events = kafka.transform(with_kafka_meta).transform(build_bronze_events(batch_id=3, ingested_at=at))
    assert events.schema.simpleString() == EVENTS_SCHEMA.simpleString()
    [row] = events.select("_batch_id", "_parse_error").collect()
    assert tuple(row) == (3, "missing schema_version")   # a CDC envelope is no event
