"""The runtime self-check: writes a deterministic batch to Delta, reads it back by name, verifies it.

It proves the whole runtime (session factory, cached jars, Delta, the table registry, executors)
with an outcome known independently of Spark: the expected count and sum come from plain Python.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.common.config import Settings
from lakehouse.common.tables import append, read_table
from lakehouse.ops.tables import SELFCHECK

BUCKETS = 8
_MODULUS = 100_000


def amount_minor(row_id: int, seed: int) -> int:
    """The amount in minor units of row `row_id` (the Python twin of `build_selfcheck_rows`)."""
    return (row_id * 7919 + seed) % _MODULUS


def build_selfcheck_rows(seed: int, run_id: str) -> Callable[[DataFrame], DataFrame]:
    """From `spark.range(n)` (`id`), gives SELFCHECK's columns: bucket, amount_minor, exact DECIMAL amount."""
    def _(ids: DataFrame) -> DataFrame:
        minor = (F.col("id") * F.lit(7919) + F.lit(seed)) % F.lit(_MODULUS)
        return ids.select(
            F.lit(run_id).alias("run_id"),
            F.col("id"),
            (F.col("id") % F.lit(BUCKETS)).cast("int").alias("bucket"),
            minor.alias("amount_minor"),
            (minor.cast("decimal(18,0)") / F.lit(100)).cast("decimal(18,2)").alias("amount"),
        )
    return _


@dataclass(frozen=True)
class SelfcheckResult:
    run_id: str
    rows: int
    expected_rows: int
    sum_minor: int
    expected_sum_minor: int
    partitions_read: int

    @property
    def ok(self) -> bool:
        return self.rows == self.expected_rows and self.sum_minor == self.expected_sum_minor


def run_selfcheck(spark: SparkSession, settings: Settings, run_id: str, rows: int, seed: int) -> SelfcheckResult:
    """Appends `rows` deterministic rows under `run_id` to ops.selfcheck and verifies them by name."""
    batch = spark.range(rows, numPartitions=max(2, settings.spark.shuffle_partitions))
    append(batch.transform(build_selfcheck_rows(seed, run_id)), settings, SELFCHECK)
    mine = read_table(spark, SELFCHECK.full_name).where(F.col("run_id") == run_id)
    got = mine.agg(F.count("*").alias("n"), F.sum("amount_minor").alias("s"),
                   F.countDistinct("bucket").alias("b")).first()
    assert got is not None
    return SelfcheckResult(
        run_id=run_id,
        rows=int(got["n"]),
        expected_rows=rows,
        sum_minor=int(got["s"] or 0),
        expected_sum_minor=sum(amount_minor(i, seed) for i in range(rows)),
        partitions_read=int(got["b"]),
    )
