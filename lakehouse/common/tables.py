"""The one table registry: every lakehouse table's name, path, schema, partitioning and properties.

Each layer declares its tables as `TableSpec` constants in its own `tables.py` and registers them
here. Paths are `<lakehouse_dir>/<layer>/<name>`, so every process (a job, `lakehouse sql`, a
notebook, an executor) finds a table from its name alone. Spark's catalog is in-memory per
process; `attach_catalog` re-creates the `bronze` / `silver` / `gold` / `ops` databases and an
external entry for every Delta table found on storage, registered or not, at session start.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DataType,
    DateType,
    DecimalType,
    DoubleType,
    IntegerType,
    LongType,
    ShortType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from lakehouse.common.config import Settings

log = logging.getLogger(__name__)

LAYERS = ("bronze", "silver", "gold", "ops")


@dataclass(frozen=True)
class TableSpec:
    """A lakehouse table: `layer.name`, its schema and physical design."""

    layer: str
    name: str
    schema: StructType
    comment: str
    partition_by: tuple[str, ...] = ()
    properties: Mapping[str, str] = field(default_factory=dict)
    cluster_by: tuple[str, ...] = ()      # liquid clustering keys (OPTIMIZE clusters by them)

    def __post_init__(self) -> None:
        if self.layer not in LAYERS:
            raise ValueError(f"table {self.name}: unknown layer {self.layer!r}; expected one of {LAYERS}")
        for kind, cols in (("partition", self.partition_by), ("clustering", self.cluster_by)):
            missing = [c for c in cols if c not in self.schema.fieldNames()]
            if missing:
                raise ValueError(f"table {self.full_name}: {kind} columns {missing} are not in its schema")
        if self.partition_by and self.cluster_by:
            raise ValueError(f"table {self.full_name}: Delta tables are partitioned or clustered, not both")

    @property
    def full_name(self) -> str:
        return f"{self.layer}.{self.name}"


_DDL_TYPES: dict[str, DataType] = {
    "string": StringType(), "bigint": LongType(), "int": IntegerType(), "smallint": ShortType(),
    "boolean": BooleanType(), "date": DateType(), "timestamp": TimestampType(), "double": DoubleType(),
}
_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")


def columns(ddl: str) -> StructType:
    """A schema from `name type [not null], ...` (types: string, bigint, int, smallint, boolean, date,
    timestamp, double, decimal(p,s)); keeps the table declarations short and readable."""
    fields = []
    for part in re.split(r",(?![^(]*\))", ddl):
        words = part.split()
        if not words:
            continue
        not_null = [w.lower() for w in words[-2:]] == ["not", "null"]
        name, type_name = words[0], " ".join(words[1:-2] if not_null else words[1:]).lower()
        if m := _DECIMAL.match(type_name):
            data_type: DataType = DecimalType(int(m.group(1)), int(m.group(2)))
        elif type_name in _DDL_TYPES:
            data_type = _DDL_TYPES[type_name]
        else:
            raise ValueError(f"column {name!r}: unknown type {type_name!r}")
        fields.append(StructField(name, data_type, nullable=not not_null))
    return StructType(fields)


_REGISTRY: dict[str, TableSpec] = {}


def register(*specs: TableSpec) -> None:
    """Adds table specs to the registry; a second spec under the same name is a bug."""
    for spec in specs:
        known = _REGISTRY.get(spec.full_name)
        if known is not None and known != spec:
            raise ValueError(f"table {spec.full_name} is registered twice with different specs")
        _REGISTRY[spec.full_name] = spec


def _load_layers() -> None:
    # Importing a layer's `tables` module registers its specs.
    import lakehouse.bronze.tables
    import lakehouse.features.tables
    import lakehouse.gold.tables
    import lakehouse.ml.tables
    import lakehouse.ops.tables
    import lakehouse.quality.tables  # noqa: F401


def spec(full_name: str) -> TableSpec:
    """The registered spec of `layer.name`."""
    _load_layers()
    try:
        return _REGISTRY[full_name]
    except KeyError:
        raise KeyError(f"unknown table {full_name!r}; registered: {', '.join(sorted(_REGISTRY))}") from None


def registered() -> list[TableSpec]:
    _load_layers()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def table_path(settings: Settings, full_name: str) -> str:
    """Storage location of `layer.name` (registered or not)."""
    layer, _, name = full_name.partition(".")
    if layer not in LAYERS or not name:
        raise ValueError(f"table name {full_name!r} must look like <layer>.<name> with layer in {LAYERS}")
    return f"{settings.lakehouse_dir.rstrip('/')}/{layer}/{name}"


def ensure_table(spark: SparkSession, settings: Settings, table: TableSpec) -> None:
    """Creates the Delta table (schema, partitioning, properties, comment) when it does not exist."""
    builder = (DeltaTable.createIfNotExists(spark).tableName(table.full_name)
               .location(table_path(settings, table.full_name)).addColumns(table.schema)
               .comment(table.comment))
    if table.partition_by:
        builder = builder.partitionedBy(*table.partition_by)
    if table.cluster_by:
        builder = builder.clusterBy(*table.cluster_by)
    for key, value in table.properties.items():
        builder = builder.property(key, value)
    builder.execute()


def read_table(spark: SparkSession, full_name: str) -> DataFrame:
    """Reads `layer.name` through the catalog."""
    return spark.read.table(full_name)


def append(df: DataFrame, settings: Settings, table: TableSpec) -> None:
    """Appends `df` to `table`, creating it first.

    Column names and types must match the spec exactly; NOT NULL columns are enforced by Delta.
    """
    if df.schema.simpleString() != table.schema.simpleString():
        raise ValueError(f"{table.full_name}: DataFrame schema {df.schema.simpleString()} differs from "
                         f"the registered schema {table.schema.simpleString()}")
    ensure_table(df.sparkSession, settings, table)
    df.write.format("delta").mode("append").saveAsTable(table.full_name)


def delta_version(spark: SparkSession, path: str) -> int | None:
    """The latest committed version of the Delta table at `path` (None when there is none), from the
    names in its `_delta_log`: a file listing, no Spark job (DeltaTable.history costs seconds)."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    log_dir = jvm.org.apache.hadoop.fs.Path(f"{path.rstrip('/')}/_delta_log")
    fs = log_dir.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(log_dir):
        return None
    commits = [str(st.getPath().getName()) for st in fs.listStatus(log_dir)]
    versions = [int(name[:-5]) for name in commits if name.endswith(".json") and name[:-5].isdigit()]
    return max(versions) if versions else None


def conform(df: DataFrame, table: TableSpec) -> DataFrame:
    """`df` with exactly `table`'s columns, in order, cast to their types (a missing column is an error;
    extra columns are dropped)."""
    missing = [f.name for f in table.schema.fields if f.name not in df.columns]
    if missing:
        raise ValueError(f"{table.full_name}: the DataFrame lacks the columns {missing}")
    return df.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in table.schema.fields])


def overwrite(df: DataFrame, settings: Settings, table: TableSpec) -> None:
    """Replaces the rows of `table` (created first) with `df`, conformed to its schema; one Delta commit,
    so readers see the old rows or the new ones, never a mix."""
    ensure_table(df.sparkSession, settings, table)
    writer = df.transform(lambda d: conform(d, table)).write.format("delta").mode("overwrite")
    if table.cluster_by:
        # A plain overwrite resets a liquid-clustered table's clustering columns to none (Delta 4.4); an
        # overwrite through replaceWhere (here: every row) keeps them.
        writer = writer.option("replaceWhere", "true")
    writer.save(table_path(settings, table.full_name))


def _delta_tables_on_storage(settings: Settings, layers: Iterable[str]) -> list[str]:
    root = settings.lakehouse_dir
    found = []
    for layer in layers:
        layer_dir = Path(root) / layer
        if layer_dir.is_dir():
            found += [f"{layer}.{d.name}" for d in sorted(layer_dir.iterdir()) if (d / "_delta_log").is_dir()]
    return found


def attach_catalog(spark: SparkSession, settings: Settings) -> list[str]:
    """Registers the layer databases and every existing Delta table in this session's catalog.

    Returns the names attached. Cheap when nothing exists yet; one Delta log read per table.
    """
    root = settings.lakehouse_dir.rstrip("/")
    for layer in LAYERS:
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {layer} LOCATION '{root}/{layer}'")
    if "://" in root:  # remote storage cannot be listed cheaply: attach what the registry knows
        names = [t.full_name for t in registered() if DeltaTable.isDeltaTable(spark, table_path(settings, t.full_name))]
    else:
        names = _delta_tables_on_storage(settings, LAYERS)
    attached = []
    for name in names:
        path = table_path(settings, name)
        spark.sql(f"CREATE TABLE IF NOT EXISTS {name} USING DELTA LOCATION '{path}'")
        attached.append(name)
    log.debug("attached %d tables: %s", len(attached), attached)
    return attached
