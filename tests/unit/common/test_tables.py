from __future__ import annotations

import pytest
from pyspark.sql.types import LongType, StringType, StructField, StructType

from lakehouse.common.config import load_settings
from lakehouse.common.tables import TableSpec, register, registered, spec, table_path

SCHEMA = StructType([StructField("id", LongType(), False), StructField("day", StringType(), False)])


def test_paths_follow_layer_and_name() -> None:
    s = load_settings("local", overrides={"paths.lakehouse_dir": "/data/lh/"}, environ={})
    assert table_path(s, "silver.charges") == "/data/lh/silver/charges"
    assert table_path(s, "gold.fact_payments") == "/data/lh/gold/fact_payments"
    s3 = load_settings("local", overrides={"paths.lakehouse_dir": "s3a://b/lh"}, environ={})
    assert table_path(s3, "bronze.pg_charges") == "s3a://b/lh/bronze/pg_charges"


@pytest.mark.parametrize("bad", ["charges", "platinum.charges", "silver."])
def test_bad_table_names_are_rejected(bad: str) -> None:
    s = load_settings("local", environ={})
    with pytest.raises(ValueError, match=r"must look like <layer>\.<name>"):
        table_path(s, bad)


def test_spec_validates_layer_and_partition_columns() -> None:
    with pytest.raises(ValueError, match="unknown layer 'platinum'"):
        TableSpec("platinum", "x", SCHEMA, "c")
    with pytest.raises(ValueError, match=r"partition columns \['month'\] are not in its schema"):
        TableSpec("silver", "x", SCHEMA, "c", partition_by=("month",))


def test_registry_knows_ops_tables_and_refuses_conflicting_duplicates() -> None:
    names = [t.full_name for t in registered()]
    assert {"ops.job_runs", "ops.selfcheck"} <= set(names)
    assert spec("ops.selfcheck").partition_by == ("bucket",)
    with pytest.raises(KeyError, match=r"unknown table 'ops\.nope'"):
        spec("ops.nope")
    with pytest.raises(ValueError, match="registered twice"):
        register(TableSpec("ops", "job_runs", SCHEMA, "another spec under a taken name"))
