"""The quarantine shape for every producer of rejects, and replay-safe writes of quarantine and dq_results."""

from __future__ import annotations

import datetime as dt

import pytest
from chispa import assert_df_equality
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from lakehouse.common.tables import table_path
from lakehouse.quality.quarantine import to_quarantine, write_dq_results, write_quarantine
from lakehouse.quality.tables import DQ_RESULTS, DQ_RESULTS_SCHEMA, QUARANTINE_SCHEMA, quarantine_table

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def test_bronze_rejects_take_the_one_shape_with_base64_binary_and_a_single_reason(spark) -> None:
    bronze = spark.createDataFrame(
        [("payments.charges", 2, 7001, bytearray(b"\x00\xffab"), "not JSON: {x"),
         ("payments.charges", 0, 7002, None, None)],
        "_topic string, _partition int, _offset long, _raw binary, _parse_error string")
    rows = to_quarantine(bronze, "_parse_error", "bronze.cdc_payments_charges")
    assert rows.schema.simpleString() == QUARANTINE_SCHEMA.simpleString()
    expected = spark.createDataFrame([
        ("bronze.cdc_payments_charges", 2, 7001,
         '{"_topic":"payments.charges","_partition":2,"_offset":7001,"_raw":"AP9hYg=="}', ["not JSON: {x"]),
        ("bronze.cdc_payments_charges", 0, 7002,
         '{"_topic":"payments.charges","_partition":0,"_offset":7002,"_raw":null}', []),
    ], "source_table string, source_partition int, source_offset long, record string, reasons array<string>")
    assert_df_equality(rows.drop("_batch_id", "_quarantined_at"), expected, ignore_row_order=True,
                       ignore_nullable=True)
    assert [r["_batch_id"] for r in rows.collect()] == [None, None]


def test_silver_changes_with_type_errors_keep_their_kafka_coordinates(spark) -> None:
    changes = spark.createDataFrame(
        [(1, None, "c", 900, 41, 1, ["amount_minor"])],
        "charge_id long, amount_minor long, _op string, _seq_lsn long, _seq_offset long, _source_partition int, "
        "_type_errors array<string>")
    reasons = changes.withColumn("_type_errors", F.transform("_type_errors", lambda c: F.concat(F.lit("type_error("), c,
                                                                                              F.lit(")"))))
    [row] = to_quarantine(reasons, "_type_errors", "bronze.cdc_payments_charges", batch_id=9).collect()
    assert (row["source_partition"], row["source_offset"], row["reasons"], row["_batch_id"]) == (
        1, 41, ["type_error(amount_minor)"], 9)
    assert row["record"] == ('{"charge_id":1,"amount_minor":null,"_op":"c","_seq_lsn":900,"_seq_offset":41,'
                             '"_source_partition":1}')


def test_explicit_coordinates_and_bad_reasons_are_checked(spark) -> None:
    rows = spark.createDataFrame([(3, 8, "x")], "p int, o long, why string")
    [row] = to_quarantine(rows, "why", "silver.events", partition_col="p", offset_col="o").collect()
    assert (row["source_partition"], row["source_offset"], row["record"]) == (3, 8, '{"p":3,"o":8}')
    with pytest.raises(ValueError, match="must be a string or array<string>, got bigint"):
        to_quarantine(rows, "o", "silver.events")
    with pytest.raises(ValueError, match="no reasons column 'nope'"):
        to_quarantine(rows, "nope", "silver.events")


def _quarantine_rows(spark, offsets: list[int]):
    rows = spark.createDataFrame([(1, o, f"bad {o}") for o in offsets], "_partition int, _offset long, why string")
    return to_quarantine(rows, "why", "bronze.events_clickstream")


def test_write_quarantine_adds_a_replayed_batch_once(spark, settings) -> None:
    table = "test_replay"
    assert write_quarantine(_quarantine_rows(spark, [1, 2]), settings, table, batch_id=5) == 2
    assert write_quarantine(_quarantine_rows(spark, [1, 2]), settings, table, batch_id=5) == 0   # the replay
    assert write_quarantine(_quarantine_rows(spark, [2, 3]), settings, table, batch_id=5) == 1   # one new row
    assert write_quarantine(_quarantine_rows(spark, [1]), settings, table, batch_id=6) == 1      # another batch
    assert write_quarantine(_quarantine_rows(spark, [1]).limit(0), settings, table, batch_id=7) == 0
    path = table_path(settings, "silver.quarantine_test_replay")
    stored = spark.read.format("delta").load(path)
    assert sorted((r["_batch_id"], r["source_offset"], r["reasons"][0]) for r in stored.collect()) == [
        (5, 1, "bad 1"), (5, 2, "bad 2"), (5, 3, "bad 3"), (6, 1, "bad 1")]
    assert stored.schema.simpleString() == QUARANTINE_SCHEMA.simpleString()
    detail = DeltaTable.forPath(spark, path).detail().collect()[0]
    assert detail["properties"]["delta.appendOnly"] == "true"
    # only the create and the 3 merges that inserted rows committed (Delta commits no insert-only MERGE
    # that inserts nothing, and an empty batch is not written at all)
    assert DeltaTable.forPath(spark, path).history().count() == 4
    assert spark.catalog.tableExists("silver.quarantine_test_replay")


def test_write_quarantine_refuses_another_shape(spark, settings) -> None:
    with pytest.raises(ValueError, match="differ from the table's"):
        write_quarantine(_quarantine_rows(spark, [1]).drop("reasons"), settings, "test_shape", batch_id=1)


def _results(spark, table: str, batch_id: int, names: list[str]):
    return spark.createDataFrame(
        [(table, batch_id, n, "expect_column_values_to_not_be_null", [n], "error", True, 3, 0, 0.0, T0) for n in names],
        DQ_RESULTS_SCHEMA)


def test_write_dq_results_adds_a_replayed_batch_once(spark, settings) -> None:
    assert write_dq_results(_results(spark, "test_a", 1, ["x", "y"]), settings) == 2
    assert write_dq_results(_results(spark, "test_a", 1, ["x", "y"]), settings) == 0          # the replay
    both = _results(spark, "test_a", 2, ["x"]).unionByName(_results(spark, "test_b", 1, ["x"]))
    assert write_dq_results(both, settings) == 2                                            # two tables, one commit
    assert write_dq_results(both.unionByName(_results(spark, "test_a", 1, ["y"])), settings) == 0
    stored = spark.read.format("delta").load(table_path(settings, DQ_RESULTS.full_name)).where(
        F.col("table").startswith("test_"))
    assert sorted((r["table"], r["batch_id"], r["expectation"]) for r in stored.collect()) == [
        ("test_a", 1, "x"), ("test_a", 1, "y"), ("test_a", 2, "x"), ("test_b", 1, "x")]
    assert stored.schema.simpleString() == DQ_RESULTS_SCHEMA.simpleString()


def test_tables_are_registered_under_the_silver_layer(settings) -> None:
    from lakehouse.common.tables import _REGISTRY

    assert _REGISTRY["silver.dq_results"] == DQ_RESULTS
    assert _REGISTRY["silver.quarantine_charges"] == quarantine_table("charges")
    assert table_path(settings, "silver.quarantine_charges") == f"{settings.lakehouse_dir}/silver/quarantine_charges"
    assert len([n for n in _REGISTRY if n.startswith("silver.quarantine_")]) == 25
