from __future__ import annotations

import re

import pytest

from lakehouse.bronze.tables import (
    CDC_SCHEMA,
    EVENT_FAMILIES,
    EVENTS_SCHEMA,
    cdc_table,
    table_for_topic,
    topic_pattern,
)
from lakehouse.common.tables import registered, spec


@pytest.mark.parametrize(("topic", "table"), [
    ("cdc.payments.charges", "bronze.cdc_payments_charges"),
    ("cdc.ref.fx-rates", "bronze.cdc_ref_fx_rates"),
    ("cdc.Payments.Refunds", "bronze.cdc_payments_refunds"),
    ("events.clickstream", "bronze.events_clickstream"),
    ("events.app_logs", "bronze.events_app_logs"),
    ("t1.cdc.payments.charges", None),          # another prefix
    ("cdc.transaction", None),                  # Debezium's transaction topic: not schema.table
    ("cdc.payments.charges.extra", None),
    ("events.clickstream.v2", None),
    ("events.", None),
    ("__debezium-heartbeat.cdc", None),
])
def test_topics_map_to_bronze_tables(topic: str, table: str | None) -> None:
    got = table_for_topic(topic, "cdc", "events")
    assert (got.full_name if got else None) == table
    matches = re.match(topic_pattern("cdc", "events"), topic) is not None
    assert matches == (table is not None)


def test_prefixes_with_dots_are_matched_literally() -> None:
    got = table_for_topic("t1.cdc.payments.charges", "t1.cdc", "t1.ev")
    assert got is not None and got.full_name == "bronze.cdc_payments_charges"
    assert re.match(topic_pattern("t1.cdc", "t1.ev"), "t1xcdc.payments.charges") is None


def test_two_fixed_schemas_partitioned_by_ingest_date_and_append_only() -> None:
    charges = cdc_table("payments", "charges")
    assert charges.schema == CDC_SCHEMA and charges.partition_by == ("_ingest_date",)
    props = charges.properties
    assert (props["delta.appendOnly"], props["parquet.enable.dictionary"]) == ("true", "false")
    assert charges.properties["delta.dataSkippingStatsColumns"] == (
        "_topic,_partition,_offset,_kafka_timestamp,op,source_lsn,source_tx_id,source_ts_ms,event_ts_ms,"
        "_parse_error,_ingested_at,_batch_id")
    clicks = spec("bronze.events_clickstream")
    assert clicks.schema == EVENTS_SCHEMA and clicks.partition_by == ("_ingest_date",)
    assert [f.dataType.simpleString() for f in EVENTS_SCHEMA.fields if f.name == "payload"] == ["variant"]


def test_known_event_families_are_registered() -> None:
    names = {t.full_name for t in registered() if t.layer == "bronze"}
    assert names == {f"bronze.events_{family}" for family in EVENT_FAMILIES}
    assert EVENT_FAMILIES == ("app_logs", "clickstream", "feedback", "sessions")
