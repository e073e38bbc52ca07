"""`lakehouse maintain` in-process on a temporary lakehouse: a liquid-clustered gold table written in ten
appends is compacted and clustered into one file with its rows unchanged, and VACUUM at 7 days deletes
nothing that was just written or just replaced; a table of another layer is left alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from lakehouse.common.config import Settings, load_settings
from lakehouse.common.tables import table_path
from lakehouse.ops.maintain import maintain
from tests.conftest import catalog_of

APPENDS, ROWS = 10, 10
EXPECTED = sorted((i, 20260101 + i % 3, i % 5, i * 7) for i in range(APPENDS * ROWS))


def _parquet_files(path: str) -> int:
    return len(list(Path(path).glob("*.parquet")))


def _rows(spark: SparkSession, path: str) -> list[tuple[Any, ...]]:
    return sorted(tuple(r) for r in spark.read.format("delta").load(path).select(
        "id", "date_key", "merchant_id", "amount_minor").collect())


def _commit(path: str, version: int) -> dict[str, Any]:
    lines = (Path(path) / "_delta_log" / f"{version:020d}.json").read_text().splitlines()
    return next(json.loads(line)["commitInfo"] for line in lines if '"commitInfo"' in line)


def test_optimize_clusters_ten_appends_into_one_file_and_vacuum_keeps_fresh_files(
        spark: SparkSession, tmp_path: Path) -> None:
    settings = load_settings("test", overrides={"paths.lakehouse_dir": str(tmp_path / "lakehouse")})
    clustered = table_path(settings, "gold.maintain_probe")
    other = table_path(settings, "silver.maintain_other")
    (DeltaTable.createIfNotExists(spark).location(clustered).addColumn("id", "bigint")
     .addColumn("date_key", "int").addColumn("merchant_id", "bigint").addColumn("amount_minor", "bigint")
     .clusterBy("date_key", "merchant_id").execute())
    for n in range(APPENDS):
        (spark.range(n * ROWS, (n + 1) * ROWS, numPartitions=1)
         .selectExpr("id", "CAST(20260101 + id % 3 AS INT) AS date_key", "id % 5 AS merchant_id",
                     "id * 7 AS amount_minor")
         .write.format("delta").mode("append").save(clustered))
    spark.range(3, numPartitions=1).write.format("delta").save(other)
    assert _parquet_files(clustered) == APPENDS
    try:
        _maintain_and_check(spark, settings, clustered, other)
    finally:  # maintain attached both to the session's catalog; the session outlives this test's files
        spark.sql("DROP TABLE IF EXISTS gold.maintain_probe")
        spark.sql("DROP TABLE IF EXISTS silver.maintain_other")


def _maintain_and_check(spark: SparkSession, settings: Settings, clustered: str, other: str) -> None:

    dry = maintain(spark, settings, ("gold",), dry_run=True)
    assert [(t.table, t.files_before, t.files_after, t.would_vacuum, t.error) for t in dry.tables] == [
        ("gold.maintain_probe", APPENDS, APPENDS, [], None)]
    assert (Path(clustered) / "_delta_log" / f"{APPENDS + 1:020d}.json").exists() is False  # a dry run commits nothing

    report = maintain(spark, settings, ("gold",))
    assert report.ok, report.as_dict()
    [probe] = report.tables
    assert (probe.table, probe.files_before, probe.files_after, probe.optimize_removed, probe.optimize_added,
            probe.clustered_by, probe.vacuumed_files) == (
        "gold.maintain_probe", APPENDS, 1, APPENDS, 1, ["date_key", "merchant_id"], 0)
    assert _rows(spark, clustered) == EXPECTED
    # Version 0 created the table, 1..10 the appends; then OPTIMIZE, VACUUM START, VACUUM END.
    optimize, start, end = (_commit(clustered, APPENDS + k) for k in (1, 2, 3))
    assert (optimize["operation"], optimize["operationParameters"]["clusterBy"]) == (
        "OPTIMIZE", '["date_key","merchant_id"]')
    assert (start["operation"], start["operationParameters"]["specifiedRetentionMillis"]) == (
        "VACUUM START", 168 * 3600 * 1000)
    assert (end["operation"], end["operationMetrics"]["numDeletedFiles"]) == ("VACUUM END", "0")
    assert _parquet_files(clustered) == APPENDS + 1     # the replaced files stay for 7 days

    after = maintain(spark, settings, ("gold",), ["maintain_probe"], dry_run=True)
    assert [(t.files_before, t.would_vacuum) for t in after.tables] == [(1, [])]
    assert [_commit(other, 0)["operation"]] == ["WRITE"]
    assert not (Path(other) / "_delta_log" / f"{1:020d}.json").exists()      # silver was not in the layers
    assert spark.conf.get("spark.databricks.delta.vacuum.retentionWindowIgnore.enabled") == "true"  # restored


def test_maintain_gives_a_registered_table_the_properties_its_spec_declares(
        spark: SparkSession, settings: Settings, tmp_path: Path) -> None:
    """A gold table created before its spec declared deletion vectors (here: created bare) gets them from
    maintain, once; its rows are unchanged."""
    own = load_settings("test", overrides={"paths.lakehouse_dir": str(tmp_path / "lakehouse")})
    path = table_path(own, "gold.agg_small_payments")
    spark.range(5, numPartitions=1).selectExpr("CAST(DATE'2026-04-01' AS DATE) AS date", "id AS charge_id").write \
        .format("delta").save(path)
    with catalog_of(spark, own, settings):
        dry = maintain(spark, own, ("gold",), dry_run=True)
        assert [t.properties_set for t in dry.tables] == [{"delta.enableDeletionVectors": "true"}]
        assert "delta.enableDeletionVectors" not in _properties(spark, path)        # a dry run sets nothing
        first = maintain(spark, own, ("gold",))
        assert first.ok, first.as_dict()
        assert [t.properties_set for t in first.tables] == [{"delta.enableDeletionVectors": "true"}]
        assert _properties(spark, path)["delta.enableDeletionVectors"] == "true"
        assert [t.properties_set for t in maintain(spark, own, ("gold",)).tables] == [{}]
    assert sorted(r["charge_id"] for r in spark.read.format("delta").load(path).collect()) == [0, 1, 2, 3, 4]


def _properties(spark: SparkSession, path: str) -> dict[str, str]:
    return dict(spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first()["properties"])
