"""Pure transforms from bronze change events to the changes silver applies (no reads, no writes).

    bronze.cdc_<schema>_<table> ─ changes_from_bronze(columns) ─ latest_change_per_key(keys) ─► MERGE (apply_cdc)

`changes_from_bronze` keeps the well-formed change events (no `_parse_error`, no tombstone, op c / u /
d / r), gives every column of the table its type from the row image (`after`; `before` for a delete)
and the sequence every later step orders by. `latest_change_per_key` keeps the newest change per key
of one micro-batch. Ordering across batches (an older change never overwrites a newer one) is the
MERGE's condition on the stored sequence.

Sequence: the change's LSN (`source_lsn`), then its Kafka offset. For one row (one key) PostgreSQL
serializes the writers with the row lock, so a later transaction's change to it has a higher LSN; two
changes of one key inside one transaction differ in LSN too, and one key always lands in one Kafka
partition (the topic is keyed by the primary key), whose offsets break any remaining tie.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, DateType, DecimalType, StructType, TimestampNTZType, TimestampType

APPLIED_OPS = ("c", "u", "d", "r")        # truncate (t) is not a row change; see changes_from_bronze
OP = "_op"
SEQ_LSN = "_seq_lsn"
SEQ_OFFSET = "_seq_offset"
SEQUENCE = (SEQ_LSN, SEQ_OFFSET)
SOURCE_PARTITION = "_source_partition"      # the bronze row's Kafka partition (lineage, quarantine)
COMMITTED_AT = "_committed_at"              # the source transaction's commit time (SCD2 valid_from)
TYPE_ERRORS = "_type_errors"
# What Debezium sends for a TOASTed column an UPDATE did not change (its unavailable.value.placeholder).
TOAST_PLACEHOLDER = "__debezium_unavailable_value"
_EPOCH = "1970-01-01"


def _typed(image: Column, name: str, data_type: DataType) -> Column:
    """One field of a Debezium row image (VARIANT, plain JSON) as `data_type`; NULL when absent or not
    convertible (the caller compares with the raw value to tell the two apart).

    The connector's encodings (docs/cdc.md): numeric as an exact decimal string, timestamptz as an
    ISO-8601 string in UTC, timestamp without zone as microseconds since the epoch, date as days since
    the epoch, integers, booleans and text as JSON values."""
    path = f"$.{name}"
    if isinstance(data_type, (DecimalType, TimestampType)):
        return F.try_variant_get(image, path, "string").try_cast(data_type)
    if isinstance(data_type, TimestampNTZType):
        return F.timestamp_micros(F.try_variant_get(image, path, "bigint")).cast(data_type)
    if isinstance(data_type, DateType):
        return F.date_add(F.lit(_EPOCH).cast("date"), F.try_variant_get(image, path, "int"))
    return F.try_variant_get(image, path, data_type.simpleString())


def changes_from_bronze(columns: StructType) -> Callable[[DataFrame], DataFrame]:
    """Bronze CDC rows -> one row per applicable change, typed.

    Needs bronze's `op`, `before`, `after` (VARIANT), `source_lsn`, `source_ts_ms`, `_partition`,
    `_offset`, `_parse_error`, `_is_tombstone`. Gives one column per field of `columns` (from `after`, or
    from `before` for a delete, whose `after` is NULL), `_op`, `_seq_lsn`, `_seq_offset`,
    `_source_partition`, `_committed_at` (timestamp of `source_ts_ms`) and `_type_errors` (the names of
    the fields whose raw value could not be read as their type, sorted; empty when all could: such a row
    belongs in quarantine, not in silver).

    A TOASTed column an UPDATE did not touch arrives as Debezium's placeholder in `after`; with REPLICA
    IDENTITY FULL the `before` image holds its value, which is taken instead. Rows with `_parse_error`,
    tombstones and truncates are left out: bronze keeps them, and they change no row.
    """
    def _(bronze: DataFrame) -> DataFrame:
        applicable = (F.col("_parse_error").isNull() & ~F.col("_is_tombstone") & F.col("op").isin(*APPLIED_OPS))
        image = F.when(F.col("op") == F.lit("d"), F.col("before")).otherwise(F.col("after"))
        rows = bronze.where(applicable).withColumn("__image", image)
        typed: dict[str, Column] = {}
        raw_present: dict[str, Column] = {}
        for field in columns.fields:
            path = f"$.{field.name}"
            untouched_toast = F.try_variant_get(F.col("__image"), path, "string") == F.lit(TOAST_PLACEHOLDER)
            source = F.when(untouched_toast, F.col("before")).otherwise(F.col("__image"))
            typed[field.name] = _typed(source, field.name, field.dataType)
            raw_present[field.name] = F.try_variant_get(source, path, "string").isNotNull()   # JSON null: absent
        rows = rows.withColumns({f"__{name}": col for name, col in typed.items()})
        failed = [F.when(raw_present[name] & F.col(f"__{name}").isNull(), F.lit(name)) for name in typed]
        return rows.select(
            *[F.col(f"__{f.name}").cast(f.dataType).alias(f.name) for f in columns.fields],
            F.col("op").alias(OP),
            F.col("source_lsn").alias(SEQ_LSN),
            F.col("_offset").alias(SEQ_OFFSET),
            F.col("_partition").alias(SOURCE_PARTITION),
            F.timestamp_millis(F.col("source_ts_ms")).alias(COMMITTED_AT),
            (F.array_sort(F.filter(F.array(*failed), lambda x: x.isNotNull())) if failed
             else F.array().cast("array<string>")).alias(TYPE_ERRORS),
        )
    return _


def latest_change_per_key(keys: Sequence[str], sequence_by: Sequence[str] = SEQUENCE
                          ) -> Callable[[DataFrame], DataFrame]:
    """Keeps, per key, the change with the highest `sequence_by` (compared left to right); a delete
    stays a delete. Duplicates (a replayed range) collapse to one row."""
    if not keys:
        raise ValueError("latest_change_per_key: at least one key column is needed")

    def _(changes: DataFrame) -> DataFrame:
        newest_first = Window.partitionBy(*keys).orderBy(*[F.col(c).desc() for c in sequence_by])
        return (changes.withColumn("__rank", F.row_number().over(newest_first))
                .where(F.col("__rank") == F.lit(1)).drop("__rank"))
    return _
