"""Tables of the `bronze` layer: one append-only Delta table per Kafka source.

Two fixed schemas: every CDC topic `<cdc.topic_prefix>.<schema>.<table>` lands in
`bronze.cdc_<schema>_<table>` (CDC_SCHEMA) and every event topic `<events.topic_prefix>.<family>` in
`bronze.events_<family>` (EVENTS_SCHEMA). CDC tables are discovered from the topics Debezium creates,
so their specs are built from the topic name (`table_for_topic`); the known event families are
registered here. Both are partitioned by ingestion date.
"""

from __future__ import annotations

import re

from pyspark.sql.types import (
    BooleanType,
    DateType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
    VariantType,
)

from lakehouse.common.tables import TableSpec, register

LAYER = "bronze"
CDC_TABLE_PREFIX = "cdc_"
EVENTS_TABLE_PREFIX = "events_"

# The producers' contract for event topics (see docs/bronze.md).
EVENT_FAMILIES = ("app_logs", "clickstream", "feedback", "sessions")
EVENT_SCHEMA_VERSIONS = frozenset({1})

PARTITION_COLUMN = "_ingest_date"

# Kafka coordinates and the raw message, first in both schemas.
_KAFKA_FIELDS = [
    StructField("_topic", StringType(), False),
    StructField("_partition", IntegerType(), False),
    StructField("_offset", LongType(), False),
    StructField("_kafka_timestamp", TimestampType(), False),
    StructField("_key", StringType(), True),
    StructField("_value", StringType(), True),       # the message value as sent: NULL for a tombstone
    StructField("_is_tombstone", BooleanType(), False),
]
_INGEST_FIELDS = [
    StructField("_parse_error", StringType(), True),  # NULL: a well-formed message (or a CDC tombstone)
    StructField("_ingested_at", TimestampType(), False),
    StructField(PARTITION_COLUMN, DateType(), False),
    StructField("_batch_id", LongType(), False),
]

CDC_SCHEMA = StructType([
    *_KAFKA_FIELDS,
    StructField("op", StringType(), True),
    StructField("before", VariantType(), True),
    StructField("after", VariantType(), True),
    StructField("source", VariantType(), True),
    StructField("source_lsn", LongType(), True),
    StructField("source_tx_id", LongType(), True),
    StructField("source_ts_ms", LongType(), True),
    StructField("is_snapshot", BooleanType(), True),
    StructField("event_ts_ms", LongType(), True),
    *_INGEST_FIELDS,
])

EVENTS_SCHEMA = StructType([
    *_KAFKA_FIELDS,
    StructField("schema_version", IntegerType(), True),
    StructField("event_id", StringType(), True),
    StructField("event_type", StringType(), True),
    StructField("event_time", TimestampType(), True),
    StructField("payload", VariantType(), True),
    *_INGEST_FIELDS,
])


def _stats_columns(schema: StructType, skip: set[str]) -> str:
    # Min/max statistics only where they prune (offsets, times, LSNs, errors): not on the raw value or the
    # key, which makes every write cheaper; Delta refuses them on partition, boolean and VARIANT columns.
    return ",".join(f.name for f in schema.fields if f.name not in skip and f.name != PARTITION_COLUMN
                    and not isinstance(f.dataType, (VariantType, BooleanType)))


_NO_STATS = {"_key", "_value", "event_id"}
# No Parquet dictionaries: the raw values, keys and VARIANT bodies are all distinct, so the writer would
# build a dictionary per column chunk only to give it up (measured: about 18 % of the write's CPU);
# zstd (ingest.PARQUET_CODEC) compresses the repetitive columns as well without them.
_COMMON_PROPERTIES = {"delta.appendOnly": "true", "parquet.enable.dictionary": "false"}
CDC_PROPERTIES = {**_COMMON_PROPERTIES, "delta.dataSkippingStatsColumns": _stats_columns(CDC_SCHEMA, _NO_STATS)}
EVENTS_PROPERTIES = {**_COMMON_PROPERTIES, "delta.dataSkippingStatsColumns": _stats_columns(EVENTS_SCHEMA, _NO_STATS)}

_UNSAFE = re.compile(r"[^a-z0-9_]")


def _safe(part: str) -> str:
    """A topic name part as a table name part: lower case, anything but [a-z0-9_] becomes `_`."""
    return _UNSAFE.sub("_", part.lower())


def cdc_table(schema: str, table: str) -> TableSpec:
    """The bronze table of the PostgreSQL table `schema.table`: `bronze.cdc_<schema>_<table>`."""
    return TableSpec(
        layer=LAYER, name=f"{CDC_TABLE_PREFIX}{_safe(schema)}_{_safe(table)}", schema=CDC_SCHEMA,
        comment=f"Debezium change events of PostgreSQL {schema}.{table}, as received from Kafka: raw value, "
                "parsed envelope (VARIANT before/after/source), Kafka coordinates; malformed ones with _parse_error.",
        partition_by=(PARTITION_COLUMN,), properties=CDC_PROPERTIES)


def events_table(family: str) -> TableSpec:
    """The bronze table of an event family: `bronze.events_<family>`."""
    return TableSpec(
        layer=LAYER, name=f"{EVENTS_TABLE_PREFIX}{_safe(family)}", schema=EVENTS_SCHEMA,
        comment=f"App events of the {family} family, as received from Kafka: raw value, envelope fields, the "
                "whole document as VARIANT payload, Kafka coordinates; malformed ones with _parse_error.",
        partition_by=(PARTITION_COLUMN,), properties=EVENTS_PROPERTIES)


def topic_pattern(cdc_prefix: str, events_prefix: str) -> str:
    """The Java regex the bronze query subscribes with: `<cdc>.<schema>.<table>` and `<events>.<family>`.

    Debezium's other topics (heartbeats, `<prefix>.transaction`) have another shape and stay out."""
    return rf"^(?:{re.escape(cdc_prefix)}\.[^.]+\.[^.]+|{re.escape(events_prefix)}\.[^.]+)$"


def table_for_topic(topic: str, cdc_prefix: str, events_prefix: str) -> TableSpec | None:
    """The bronze table a topic lands in (None for a topic of neither shape)."""
    if topic.startswith(f"{cdc_prefix}."):
        parts = topic[len(cdc_prefix) + 1:].split(".")
        if len(parts) == 2 and all(parts):
            return cdc_table(parts[0], parts[1])
    if topic.startswith(f"{events_prefix}."):
        parts = topic[len(events_prefix) + 1:].split(".")
        if len(parts) == 1 and parts[0]:
            return events_table(parts[0])
    return None


def is_cdc(table: TableSpec) -> bool:
    return table.schema == CDC_SCHEMA


EVENTS_TABLES = tuple(events_table(family) for family in EVENT_FAMILIES)

register(*EVENTS_TABLES)
