"""Pure transforms from Kafka records to bronze rows (no reads, no writes).

    kafka rows ─ with_kafka_meta ─┬─ parse_cdc_envelope ─ with_ingest_meta ─ select CDC_SCHEMA     (build_bronze_cdc)
                                  └─ parse_event ──────── with_ingest_meta ─ select EVENTS_SCHEMA  (build_bronze_events)

Nothing is dropped and nothing raises on bad input: a message that is not what its topic promises
keeps its raw `_value` and gets `_parse_error` (a short reason). The parsed columns are best effort:
whatever could be read with the right type, NULL otherwise; downstream layers use only rows whose
`_parse_error` is NULL. A CDC tombstone (NULL value after a delete) is a valid message: `_is_tombstone`,
everything parsed NULL, no error.
"""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse.bronze.tables import CDC_SCHEMA, EVENT_SCHEMA_VERSIONS, EVENTS_SCHEMA

CDC_OPS = ("c", "u", "d", "r", "t")      # create, update, delete, read (snapshot), truncate
_OPS_WITH_AFTER = ("c", "u", "r")

# Reasons in `_parse_error` (prefixes stay stable, so that they can be grouped on).
ERR_INVALID_JSON = "invalid JSON"                      # not JSON, truncated, or trailing bytes after the document
ERR_NOT_OBJECT = "not a JSON object"
ERR_FIELD_TYPES = "envelope field of the wrong type"    # e.g. ts_ms "12" (a string) instead of 12
ERR_EVENT_TOMBSTONE = "null value on an event topic"
ERR_MISSING_OP = "missing op"
ERR_UNKNOWN_OP = "unknown op: "
ERR_MISSING_SOURCE = "missing source"
ERR_MISSING_AFTER = "missing after for op "
ERR_MISSING_VERSION = "missing schema_version"
ERR_UNKNOWN_VERSION = "unknown schema_version: "
ERR_MISSING_EVENT_ID = "missing event_id"
ERR_MISSING_EVENT_TYPE = "missing event_type"
ERR_MISSING_EVENT_TIME = "missing event_time"
ERR_INVALID_EVENT_TIME = "invalid event_time: "

_JSON_WHITESPACE = " \t\r\n"
_INTEGER_TYPES = ("TINYINT", "SMALLINT", "INT", "BIGINT")
# ISO-8601 date and time, optional fraction and offset (Spark's cast alone also takes 'yesterday' or '2024').
_ISO_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})?$"

_JSON = "__json"
_JSON_ERROR = "__json_error"
_TRIMMED = "__trimmed"

# CDC: one strict from_json pass that keeps before / after / source as VARIANT (about twice as fast as
# parse_json of the whole value followed by lookups); an ill-formed record lands in _corrupt_record.
_ENVELOPE_SCHEMA = "op string, before variant, after variant, source variant, ts_ms bigint, _corrupt_record string"
_STRICT_JSON = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_corrupt_record", "allowSingleQuotes": "false",
                "allowNonNumericNumbers": "false", "allowComments": "false", "allowUnquotedFieldNames": "false"}
_SOURCE_FIELDS = "struct<lsn bigint, txId bigint, ts_ms bigint, snapshot string>"
_EVENT_FIELDS = "struct<schema_version variant, event_id variant, event_type variant, event_time variant>"

# Every expensive expression (parsing, a VARIANT lookup) gets a column of its own and is referenced
# by name: an expression object repeated inside CASE WHEN is evaluated once per occurrence.


def with_kafka_meta(kafka: DataFrame) -> DataFrame:
    """Kafka source rows -> the Kafka columns of bronze.

    Needs the Kafka source's `key`, `value` (binary), `topic`, `partition`, `offset`, `timestamp`.
    Gives `_topic`, `_partition`, `_offset`, `_kafka_timestamp`, `_key` and `_value` (the bytes as a
    string: Spark does not re-encode, so `CAST(_value AS BINARY)` is the message byte for byte, even when
    it is not UTF-8) and `_is_tombstone` (the value is NULL).
    """
    return kafka.select(
        F.col("topic").alias("_topic"),
        F.col("partition").alias("_partition"),
        F.col("offset").alias("_offset"),
        F.col("timestamp").alias("_kafka_timestamp"),
        F.col("key").cast("string").alias("_key"),
        F.col("value").cast("string").alias("_value"),
        F.col("value").isNull().alias("_is_tombstone"),
    )


def with_ingest_meta(batch_id: int, ingested_at: Column | None = None) -> Callable[[DataFrame], DataFrame]:
    """Adds `_ingested_at` (default: the batch's `current_timestamp()`), `_ingest_date` (its UTC date, the
    partition column) and `_batch_id` (the streaming micro-batch)."""
    def _(df: DataFrame) -> DataFrame:
        at = F.current_timestamp() if ingested_at is None else ingested_at.cast("timestamp")
        return (df.withColumn("_ingested_at", at)
                .withColumn("_ingest_date", F.to_date(F.col("_ingested_at")))
                .withColumn("_batch_id", F.lit(batch_id).cast("bigint")))
    return _


def _with_trimmed(df: DataFrame) -> DataFrame:
    return df.withColumn(_TRIMMED, F.btrim(F.col("_value"), F.lit(_JSON_WHITESPACE)))


def _json_error(parsed_ok: Column, wrong_types: Column | None = None) -> Column:
    """The reason a non-NULL `_value` is not one JSON object (NULL when it is one).

    Both parsers read the first document and ignore what follows (`{"a":1} xyz` parses), so an object
    must also end where the value ends."""
    value, trimmed = F.col("_value"), F.col(_TRIMMED)
    starts_object, ends_object = trimmed.startswith("{"), trimmed.endswith("}")
    error = (F.when(value.isNull(), F.lit(None))
             .when(~parsed_ok, F.lit(ERR_INVALID_JSON))
             .when(~starts_object, F.lit(ERR_NOT_OBJECT))
             .when(~ends_object, F.lit(ERR_INVALID_JSON)))
    return error if wrong_types is None else error.when(wrong_types, F.lit(ERR_FIELD_TYPES))


def _null_if_json_null(v: Column) -> Column:
    """JSON null and absence both as SQL NULL."""
    return F.when(~F.is_variant_null(v), v)


def _is_object(v: Column) -> Column:
    return F.try_variant_get(v, "$", "struct<>").isNotNull()


def parse_cdc_envelope(df: DataFrame) -> DataFrame:
    """Parses the Debezium envelope (plain JSON, no schema wrapper) in `_value`.

    Needs `_value` (string, NULL for a tombstone). Adds `op`, `before` / `after` / `source` (VARIANT, so
    a column added in PostgreSQL is just one more field: `variant_get(after, '$.new_col', 'string')`),
    `source_lsn`, `source_tx_id`, `source_ts_ms`, `is_snapshot` (source.snapshot is anything but
    "false": true, first, last, incremental …), `event_ts_ms` (the envelope's ts_ms) and `_parse_error`:
    invalid JSON (strict: no single quotes, NaN or comments), not a JSON object, an envelope field of the
    wrong type, missing or unknown op, missing source, or no `after` for c/u/r.
    """
    value, env, corrupt = F.col("_value"), F.col("__env"), F.col("__env._corrupt_record")
    op, after, source, src = F.col("op"), F.col("after"), F.col("source"), F.col("__source_fields")
    # from_json flags a malformed record (or a field of the wrong type) in _corrupt_record but takes an
    # empty value for no record at all; the full parse below runs only for those rare rows.
    suspect = corrupt.isNotNull() | (F.col(_TRIMMED) == F.lit(""))
    parsed_ok = ~suspect | F.try_parse_json(value).isNotNull()
    error = (F.when(F.col(_JSON_ERROR).isNotNull(), F.col(_JSON_ERROR))
             .when(value.isNull(), F.lit(None))   # a tombstone is a valid message
             .when(op.isNull(), F.lit(ERR_MISSING_OP))
             .when(~op.isin(*CDC_OPS), F.concat(F.lit(ERR_UNKNOWN_OP), op))
             .when(source.isNull() | ~_is_object(source), F.lit(ERR_MISSING_SOURCE))
             .when(op.isin(*_OPS_WITH_AFTER) & (after.isNull() | ~_is_object(after)),
                   F.concat(F.lit(ERR_MISSING_AFTER), op)))
    return (df.transform(_with_trimmed)
            .withColumn("__env", F.from_json(value, _ENVELOPE_SCHEMA, _STRICT_JSON))
            .withColumns({"op": env["op"], "__before": env["before"], "__after": env["after"],
                          "__source": env["source"], "event_ts_ms": env["ts_ms"],
                          _JSON_ERROR: _json_error(parsed_ok, wrong_types=corrupt.isNotNull())})
            .withColumns({name: _null_if_json_null(F.col(f"__{name}")) for name in ("before", "after", "source")})
            .withColumn("__source_fields", F.try_variant_get(source, "$", _SOURCE_FIELDS))
            .withColumns({"source_lsn": src["lsn"], "source_tx_id": src["txId"], "source_ts_ms": src["ts_ms"],
                          "is_snapshot": F.when(src["snapshot"].isNotNull(), src["snapshot"] != F.lit("false")),
                          "_parse_error": error})
            .drop("__env", "__before", "__after", "__source", "__source_fields", _TRIMMED, _JSON_ERROR))


def parse_event(df: DataFrame) -> DataFrame:
    """Parses an app event in `_value`: `{"schema_version": 1, "event_id", "event_type", "event_time", …}`.

    Needs `_value` (string). Adds `schema_version` (int, when the field is a JSON integer), `event_id`,
    `event_type`, `event_time` (timestamp, from an ISO-8601 string; UTC when it has no offset),
    `payload` (the whole document as VARIANT, nesting kept: `payload:page.url`) and `_parse_error`: a
    NULL value, invalid JSON, not a JSON object, a missing or unknown schema_version (known:
    EVENT_SCHEMA_VERSIONS), a missing event_id / event_type (or one that is not a JSON string), a missing
    or invalid event_time.
    """
    json, fields = F.col(_JSON), F.col("__fields")
    version_raw, time_text = F.col("__version"), F.col("__event_time")
    id_raw, type_raw = F.col("__event_id"), F.col("__event_type")
    version, event_id, event_type = F.col("schema_version"), F.col("event_id"), F.col("event_type")

    def text(raw: Column) -> Column:   # a JSON string, nothing else
        return F.when(F.schema_of_variant(raw) == F.lit("STRING"), F.try_variant_get(raw, "$", "string"))

    error = (F.when(F.col("_value").isNull(), F.lit(ERR_EVENT_TOMBSTONE))
             .when(F.col(_JSON_ERROR).isNotNull(), F.col(_JSON_ERROR))
             .when(version_raw.isNull(), F.lit(ERR_MISSING_VERSION))
             .when(version.isNull() | ~version.isin(*sorted(EVENT_SCHEMA_VERSIONS)),
                   F.concat(F.lit(ERR_UNKNOWN_VERSION), F.to_json(version_raw)))
             .when(id_raw.isNull() | (event_id == F.lit("")), F.lit(ERR_MISSING_EVENT_ID))
             .when(type_raw.isNull() | (event_type == F.lit("")), F.lit(ERR_MISSING_EVENT_TYPE))
             .when(event_id.isNull() | event_type.isNull(), F.lit(ERR_FIELD_TYPES))
             .when(time_text.isNull(), F.lit(ERR_MISSING_EVENT_TIME))
             .when(F.col("event_time").isNull(), F.concat(F.lit(ERR_INVALID_EVENT_TIME), time_text)))
    return (df.transform(_with_trimmed)
            .withColumn("__parsed", F.try_parse_json(F.col("_value")))
            .withColumn(_JSON_ERROR, _json_error(F.col("__parsed").isNotNull()))
            .withColumn(_JSON, F.when(F.col(_JSON_ERROR).isNull() | (F.col(_JSON_ERROR) == F.lit(ERR_NOT_OBJECT)),
                                      F.col("__parsed")))
            # One lookup of the envelope fields, each kept as VARIANT so that no type mismatch hides another.
            .withColumn("__fields", F.try_variant_get(json, "$", _EVENT_FIELDS))
            .withColumns({"__version": _null_if_json_null(fields["schema_version"]),
                          "__event_id": _null_if_json_null(fields["event_id"]),
                          "__event_type": _null_if_json_null(fields["event_type"]),
                          "__event_time": F.try_variant_get(fields["event_time"], "$", "string"),
                          "payload": json})
            .withColumns({"schema_version": F.when(F.schema_of_variant(version_raw).isin(*_INTEGER_TYPES),
                                                   F.try_variant_get(version_raw, "$", "int")),
                          "event_id": text(id_raw), "event_type": text(type_raw),
                          "event_time": F.when(time_text.rlike(_ISO_TIMESTAMP), time_text.try_cast("timestamp"))})
            .withColumn("_parse_error", error)
            .drop("__parsed", "__fields", "__version", "__event_id", "__event_type", "__event_time", _TRIMMED,
                  _JSON, _JSON_ERROR))


def build_bronze_cdc(batch_id: int, ingested_at: Column | None = None) -> Callable[[DataFrame], DataFrame]:
    """`with_kafka_meta` output of one CDC topic -> rows of CDC_SCHEMA, in its column order."""
    def _(rows: DataFrame) -> DataFrame:
        return (rows.transform(parse_cdc_envelope).transform(with_ingest_meta(batch_id, ingested_at))
                .select(*CDC_SCHEMA.fieldNames()))
    return _


def build_bronze_events(batch_id: int, ingested_at: Column | None = None) -> Callable[[DataFrame], DataFrame]:
    """`with_kafka_meta` output of one event topic -> rows of EVENTS_SCHEMA, in its column order."""
    def _(rows: DataFrame) -> DataFrame:
        return (rows.transform(parse_event).transform(with_ingest_meta(batch_id, ingested_at))
                .select(*EVENTS_SCHEMA.fieldNames()))
    return _
