"""Tables of the `silver` layer: one per captured OLTP table, typed from PostgreSQL's own catalog.

    payments.<t>  ->  silver.<t>           (charges, customers, …)
    ref.<t>       ->  silver.ref_<t>       (ref_currencies, ref_fx_rates, …)
    labels.<t>    ->  silver.<t>           (fraud_ground_truth)

A silver table's columns are the OLTP table's columns with the Spark type of their PostgreSQL type
(`spark_type`), then the conformed columns (lakehouse.silver.conform) and the PII columns in their
protected form (lakehouse.security), then the change's sequence and lineage. Its key is the OLTP
primary key. The column list is read from the live catalog (`oltp_tables`), not written down here, so
a column added upstream (`ALTER TABLE … ADD COLUMN`) appears in silver from the next micro-batch on.

Tables in `silver.scd2_tables` keep their history (type 2: one row per version, `valid_from`,
`valid_to`, `is_current`, `_is_deleted`); every other table holds the current state (type 1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pyspark.sql.types import (
    BooleanType,
    DataType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    ShortType,
    StringType,
    StructField,
    StructType,
    TimestampNTZType,
    TimestampType,
)

from lakehouse.cdc.connector import CAPTURED_SCHEMAS
from lakehouse.common.config import Settings

LAYER = "silver"
# SCD2 columns.
VALID_FROM = "valid_from"
VALID_TO = "valid_to"
IS_CURRENT = "is_current"
IS_DELETED = "_is_deleted"
# Where the layer keeps what is not a silver table itself.
MARKERS_DIR = "_silver_deletes"           # per SCD1 table: keys deleted, with the delete's sequence

_NUMERIC = re.compile(r"^numeric\((\d+),(\d+)\)$")
_CHAR = re.compile(r"^(character|character varying)(\(\d+\))?$")
# format_type() name -> Spark type. Text-like types the connector sends as strings stay strings:
# inet/cidr as their text form, jsonb as its canonical text, uuid as text.
_SIMPLE: dict[str, DataType] = {
    "bigint": LongType(), "integer": IntegerType(), "smallint": ShortType(), "boolean": BooleanType(),
    "text": StringType(), "inet": StringType(), "cidr": StringType(), "jsonb": StringType(), "json": StringType(),
    "uuid": StringType(), "date": DateType(), "timestamp with time zone": TimestampType(),
    "timestamp without time zone": TimestampNTZType(), "double precision": DoubleType(), "real": FloatType(),
}


class SilverSchemaError(ValueError):
    """A captured table has a column whose PostgreSQL type silver cannot represent exactly."""


def spark_type(pg_type: str) -> DataType:
    """The Spark type of a PostgreSQL `format_type()` name (`numeric(20,10)` -> DECIMAL(20,10))."""
    if pg_type in _SIMPLE:
        return _SIMPLE[pg_type]
    if _CHAR.match(pg_type):
        return StringType()
    if m := _NUMERIC.match(pg_type):
        return DecimalType(int(m.group(1)), int(m.group(2)))
    if pg_type == "numeric":
        # No declared precision: any value up to 1000 digits; DECIMAL(38,18) would round or overflow.
        raise SilverSchemaError("numeric without precision and scale has no exact Spark type; declare numeric(p,s)")
    raise SilverSchemaError(f"PostgreSQL type {pg_type!r} has no silver mapping (lakehouse/silver/tables.py)")


def silver_name(schema: str, table: str) -> str:
    """`payments.charges` -> `charges`, `ref.currencies` -> `ref_currencies`."""
    return f"ref_{table}" if schema == "ref" else table


@dataclass(frozen=True)
class SourceTable:
    """A captured OLTP table as silver sees it."""

    schema: str
    table: str
    columns: StructType           # the OLTP columns, Spark-typed, in table order
    keys: tuple[str, ...]         # the primary key
    scd2: bool

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def name(self) -> str:
        """The silver table's name (without the layer)."""
        return silver_name(self.schema, self.table)

    @property
    def full_name(self) -> str:
        return f"{LAYER}.{self.name}"


def source_tables(catalog: list[Any], scd2_tables: tuple[str, ...]) -> list[SourceTable]:
    """Silver's view of introspected tables (lakehouse.oltp.erd.Table): a table without a primary key
    cannot be merged and is an error, naming it."""
    out = []
    for t in catalog:
        if not t.primary_key:
            raise SilverSchemaError(f"{t.qualified}: no primary key; silver merges changes by key")
        try:
            columns = StructType([StructField(c.name, spark_type(c.type), not c.not_null) for c in t.columns])
        except SilverSchemaError as e:
            raise SilverSchemaError(f"{t.qualified}: {e}") from None
        out.append(SourceTable(t.schema, t.name, columns, tuple(t.primary_key), t.qualified in scd2_tables))
    unknown = set(scd2_tables) - {t.qualified for t in out}
    if unknown:
        raise SilverSchemaError(f"silver.scd2_tables: {sorted(unknown)} are not captured tables of the OLTP database")
    return out


def oltp_tables(settings: Settings) -> list[SourceTable]:
    """The captured tables of the live OLTP database (schemas ref, payments, labels), with their columns."""
    from lakehouse.oltp.db import connect
    from lakehouse.oltp.erd import introspect

    with connect(settings) as conn:
        catalog = introspect(conn, CAPTURED_SCHEMAS)
    return source_tables(catalog, settings.silver.scd2_tables)
