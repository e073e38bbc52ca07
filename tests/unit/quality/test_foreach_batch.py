"""Quality inside a Structured Streaming foreachBatch (GE runs in the stream's callback thread), and a
replayed micro-batch writing nothing twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.common.tables import table_path
from lakehouse.quality.quarantine import write_dq_results, write_quarantine
from lakehouse.quality.tables import DQ_RESULTS
from lakehouse.quality.validate import DataQualityError, QualityParams, check_threshold, validate_batch
from tests.conftest import catalog_of

SCHEMA = ("merchant_id long, name string, country_code string, mcc string, default_currency string, status string, "
          "created_at timestamp, _op string, _seq_lsn long, _seq_offset long, _source_partition int")
TABLE = "merchants"


@pytest.fixture
def own(spark, settings, tmp_path: Path):
    """The session's settings with a lakehouse of this test's own: silver.dq_results skips a (table,
    batch, expectation) it already holds, so another test's merchants batch 0 (the demo's) would hide
    this one's results. The catalog points at this lakehouse meanwhile: `ensure_table` finds a table by
    its catalog name, and would otherwise find the session's `silver.dq_results`."""
    import dataclasses

    own = dataclasses.replace(settings, paths=dataclasses.replace(settings.paths,
                                                                  lakehouse_dir=str(tmp_path / "lakehouse")))
    with catalog_of(spark, own, settings):
        yield own


def merchant(i: int, **changes: object) -> dict[str, object]:
    row: dict[str, object] = {"merchant_id": i, "name": f"m{i}", "country_code": "DE", "mcc": "5411",
                              "default_currency": "EUR", "status": "active", "created_at": "2026-03-01T00:00:00Z",
                              "_op": "c", "_seq_lsn": 10 * i, "_seq_offset": i, "_source_partition": 0}
    row.update(changes)
    return row


def test_validation_in_foreach_batch_then_a_replayed_batch(spark, own, tmp_path: Path) -> None:
    settings = own
    source, target = tmp_path / "in", tmp_path / "silver_merchants"
    source.mkdir()
    rows = [merchant(i) for i in range(1, 40)] + [merchant(40, status="gone"), merchant(41, _op="d", status="x")]
    (source / "part-0.json").write_text("\n".join(json.dumps(r) for r in rows))
    params = QualityParams(currencies=frozenset({"EUR", "USD"}))
    seen: list[tuple[int, int, int]] = []

    def process(batch: DataFrame, batch_id: int) -> None:
        with validate_batch(batch, TABLE, batch_id, params) as v:
            if v.quarantined_count:
                write_quarantine(v.quarantined, settings, TABLE, batch_id)
            write_dq_results(v.results, settings)
            check_threshold(v, settings)
            v.valid.write.format("delta").mode("append").save(str(target))
            seen.append((batch_id, v.valid_count, v.quarantined_count))

    query = (spark.readStream.schema(SCHEMA).json(str(source)).writeStream.foreachBatch(process)
             .option("checkpointLocation", str(tmp_path / "checkpoint")).trigger(availableNow=True).start())
    query.awaitTermination()
    assert query.exception() is None
    assert seen == [(0, 40, 1)]                       # 41 rows in: 39 + the delete valid, 1 quarantined
    assert spark.read.format("delta").load(str(target)).count() == 40

    quarantine = spark.read.format("delta").load(table_path(settings, f"silver.quarantine_{TABLE}"))
    assert [(r["source_offset"], r["reasons"]) for r in quarantine.collect()] == [
        (40, ["expect_column_values_to_be_in_set(status)"])]
    results = spark.read.format("delta").load(table_path(settings, DQ_RESULTS.full_name)).where(
        F.col("table") == TABLE)
    assert results.count() == 9
    assert [(r["expectation"], r["element_count"], r["unexpected_count"])
            for r in results.where(~F.col("success")).collect()] == [
        ("expect_column_values_to_be_in_set(status)", 40, 1)]

    # the same micro-batch again (a restart after a crash before the checkpoint's commit): no duplicates
    replay = spark.createDataFrame([tuple(r[c.split(" ")[0]] for c in SCHEMA.split(", ")) for r in rows],
                                   SCHEMA.replace("created_at timestamp", "created_at string")) \
        .withColumn("created_at", F.to_timestamp("created_at"))
    process(replay, 0)
    assert quarantine.count() == 1
    assert results.count() == 9


def test_a_batch_over_the_threshold_fails_the_stream(spark, own, tmp_path: Path) -> None:
    settings = own
    source = tmp_path / "in"
    source.mkdir()
    rows = [merchant(i, status="gone" if i % 2 else "active") for i in range(1, 11)]
    (source / "part-0.json").write_text("\n".join(json.dumps(r) for r in rows))
    params = QualityParams(currencies=frozenset({"EUR"}))

    def process(batch: DataFrame, batch_id: int) -> None:
        with validate_batch(batch, TABLE, batch_id, params) as v:
            check_threshold(v, settings)

    query = (spark.readStream.schema(SCHEMA).json(str(source)).writeStream.foreachBatch(process)
             .option("checkpointLocation", str(tmp_path / "checkpoint")).trigger(availableNow=True).start())
    with pytest.raises(Exception, match="5 of 10 rows quarantined") as raised:
        query.awaitTermination()
    assert "DataQualityError" in str(raised.value) or isinstance(raised.value, DataQualityError)
