"""Reconciliation: silver's current state against PostgreSQL, table by table (`lakehouse reconcile`).

For every captured table, both sides are brought to one form and compared by primary key:

- PostgreSQL: the table read over JDBC, each column cast to its silver type (lakehouse.silver.tables),
  then `comparable` (lakehouse.security.protect): PII columns become the same keyed pseudonyms silver
  stores, dropped columns are left out, free text is redacted the same way;
- silver: the current rows (SCD2 tables: `is_current`), the same columns.

A row's checksum is SHA-256 of the JSON of those business columns in a fixed order. Keys only in
PostgreSQL are `missing`, keys only in silver `extra`, keys on both sides with different checksums
`changed`. The table checksum (row count and the XOR of every row's 64-bit hash) lets two runs be
compared at a glance. Ciphertext is never compared or decrypted: the pseudonyms prove the values match.

Run it when silver has caught up (no traffic, or `lakehouse run silver --once` after the last change):
on a live system the lag between a commit and silver shows up as differences.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.common.config import Settings
from lakehouse.common.connections import pg_conninfo, pg_jdbc_url
from lakehouse.common.tables import table_path
from lakehouse.security.keys import load_master_key
from lakehouse.security.protect import comparable
from lakehouse.silver.tables import IS_CURRENT, SourceTable, oltp_tables

SAMPLE = 10             # keys listed per kind of difference


@dataclass
class TableReport:
    """One table's comparison."""

    table: str                      # silver name
    source: str                     # schema.table in PostgreSQL
    oltp_rows: int
    silver_rows: int
    missing: int                    # in PostgreSQL, not in silver
    extra: int                      # in silver, not in PostgreSQL
    changed: int                    # on both sides, different business columns
    oltp_checksum: str
    silver_checksum: str
    sample: dict[str, list[str]] = field(default_factory=dict)   # kind -> up to SAMPLE keys (JSON)

    @property
    def ok(self) -> bool:
        return self.missing == 0 and self.extra == 0 and self.changed == 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def read_jdbc(spark: SparkSession, settings: Settings, dbtable: str,
              options: Mapping[str, str] | None = None) -> DataFrame:
    """A PostgreSQL table, or a `(SELECT ...) alias` subquery, over JDBC. `options` are further Spark JDBC
    options, e.g. a partitioned read (`partitionColumn`, `lowerBound`, `upperBound`, `numPartitions`)."""
    info = pg_conninfo(settings)
    return (spark.read.format("jdbc")
            .option("url", pg_jdbc_url(settings)).option("dbtable", dbtable)
            .option("user", str(info["user"])).option("password", str(info["password"]))
            .option("driver", "org.postgresql.Driver").option("fetchsize", "10000")
            .options(**dict(options or {}))
            .load())


def read_oltp(spark: SparkSession, settings: Settings, source: SourceTable, dbtable: str | None = None,
              options: Mapping[str, str] | None = None) -> DataFrame:
    """The PostgreSQL table over JDBC (or `dbtable`, a subquery of its rows), columns cast to their
    silver types; `options` as in `read_jdbc`."""
    df = read_jdbc(spark, settings, dbtable or source.qualified, options)
    return df.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in source.columns.fields])


def read_silver_current(spark: SparkSession, settings: Settings, source: SourceTable) -> DataFrame | None:
    """Silver's current rows of the table (None when the table does not exist yet)."""
    path = table_path(settings, source.full_name)
    from delta.tables import DeltaTable

    if not DeltaTable.isDeltaTable(spark, path):
        return None
    df = spark.read.format("delta").load(path)
    return df.where(F.col(IS_CURRENT)) if source.scd2 else df


def _hashed(df: DataFrame, keys: tuple[str, ...], columns: list[str]) -> DataFrame:
    row = F.to_json(F.struct(*[F.col(c) for c in columns]))
    return df.select(F.to_json(F.struct(*[F.col(k) for k in keys])).alias("__key"),
                     F.sha2(row, 256).alias("__hash"), F.xxhash64(row).alias("__h64"))


def _checksum(hashed: DataFrame) -> tuple[int, str]:
    [row] = hashed.agg(F.count(F.lit(1)).alias("n"), F.bit_xor("__h64").alias("x")).collect()
    return int(row["n"]), f"{int(row['n'])}:{(row['x'] or 0) & 0xFFFFFFFFFFFFFFFF:016x}"


def compare(oltp: DataFrame, silver: DataFrame | None, keys: tuple[str, ...], table: str, source: str) -> TableReport:
    """Compares the comparable PostgreSQL rows with the lakehouse's rows (`silver`: silver's current
    rows, or any rows of the same columns) by `keys` (pure but for actions); `table` and `source` name
    the two sides in the report."""
    columns = oltp.columns
    left = _hashed(oltp, keys, columns).persist()
    if silver is None:
        silver = oltp.limit(0)
    missing_cols = [c for c in columns if c not in silver.columns]
    silver = silver.withColumns({c: F.lit(None).cast(oltp.schema[c].dataType) for c in missing_cols})
    right = _hashed(silver.select(*columns), keys, columns).persist()
    try:
        n_left, sum_left = _checksum(left)
        n_right, sum_right = _checksum(right)
        joined = left.alias("o").join(right.alias("s"), on=F.col("o.__key") == F.col("s.__key"), how="full_outer")
        kind = (F.when(F.col("s.__key").isNull(), F.lit("missing"))
                .when(F.col("o.__key").isNull(), F.lit("extra"))
                .when(F.col("o.__hash") != F.col("s.__hash"), F.lit("changed")))
        diffs = (joined.select(kind.alias("kind"), F.coalesce(F.col("o.__key"), F.col("s.__key")).alias("key"))
                 .where(F.col("kind").isNotNull()).persist())
        counts = {r["kind"]: int(r["count"]) for r in diffs.groupBy("kind").count().collect()}
        sample = {k: [r["key"] for r in diffs.where(F.col("kind") == k).orderBy("key").limit(SAMPLE).collect()]
                  for k in sorted(counts)}
        diffs.unpersist()
        return TableReport(table, source, n_left, n_right, counts.get("missing", 0),
                           counts.get("extra", 0), counts.get("changed", 0), sum_left, sum_right, sample)
    finally:
        left.unpersist()
        right.unpersist()


def reconcile(spark: SparkSession, settings: Settings, only: list[str] | None = None) -> list[TableReport]:
    """Every captured table (or the silver names in `only`) compared with PostgreSQL."""
    sources = oltp_tables(settings)
    if only:
        unknown = sorted(set(only) - {s.name for s in sources})
        if unknown:
            raise ValueError(f"reconcile: unknown tables {unknown}; known: {', '.join(s.name for s in sources)}")
        sources = [s for s in sources if s.name in only]
    pseudonym_key = load_master_key(settings).pseudonym_key
    reports = []
    for source in sources:
        oltp = read_oltp(spark, settings, source).transform(comparable(source.name, pseudonym_key))
        reports.append(compare(oltp, read_silver_current(spark, settings, source), source.keys, source.name,
                               source.qualified))
    return reports
