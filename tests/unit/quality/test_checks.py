"""The row predicate of every expectation type counts exactly what Great Expectations counts."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import great_expectations as gx
import pytest
from great_expectations.data_context.types.base import ProgressBarsConfig
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.quality.checks import (
    SUPPORTED_TYPES,
    WARN,
    Check,
    ExpectColumnValuesToBeGreaterThanColumn,
    Lookup,
    Suite,
    between,
    greater_than_column,
    in_set,
    matches,
    not_null,
    reference_exists,
    unexpected_condition,
)

E = gx.expectations
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

# Edge values on purpose: NULLs everywhere, bounds, equal pairs, NULL on one side of a pair.
ROWS = [
    # k,    s,    n,    d,                 r,        a,    b,    t1,                          t2
    (1,    "a",  0,    Decimal("0.0000"), "tok_1",  5,    5,    T0,                          T0),
    (2,    "b",  10,   Decimal("1.0000"), "tok_22", 6,    5,    T0,                          T0 + dt.timedelta(1)),
    (None, "z",  -1,   Decimal("1.0001"), "x",      4,    5,    None,                        T0),
    (4,    None, 11,   None,              None,     None, 5,    T0,                          None),
    (5,    "A",  None, Decimal("-0.001"), "TOK_1",  5,    None, None,                        None),
    (None, "c",  5,    Decimal("0.5000"), "tok_",   None, None, T0 + dt.timedelta(2),        T0),
]
SCHEMA = ("k long, s string, n long, d decimal(5,4), r string, a long, b long, t1 timestamp, t2 timestamp")

EXPECTATIONS = [
    E.ExpectColumnValuesToNotBeNull(column="k"),
    E.ExpectColumnValuesToNotBeNull(column="s"),
    E.ExpectColumnValuesToBeInSet(column="s", value_set=["a", "b", "c"]),
    E.ExpectColumnValuesToBeBetween(column="n", min_value=0, max_value=10),
    E.ExpectColumnValuesToBeBetween(column="n", min_value=0, max_value=10, strict_min=True, strict_max=True),
    E.ExpectColumnValuesToBeBetween(column="n", min_value=0),
    E.ExpectColumnValuesToBeBetween(column="n", min_value=0, strict_min=True),
    E.ExpectColumnValuesToBeBetween(column="n", max_value=10, strict_max=True),
    E.ExpectColumnValuesToBeBetween(column="d", min_value=0, max_value=1),
    E.ExpectColumnValuesToMatchRegex(column="r", regex=r"^tok_[0-9]+$"),
    E.ExpectColumnPairValuesAToBeGreaterThanB(column_A="a", column_B="b", or_equal=True),
    E.ExpectColumnPairValuesAToBeGreaterThanB(column_A="a", column_B="b"),
    E.ExpectColumnPairValuesAToBeGreaterThanB(column_A="a", column_B="b", ignore_row_if="either_value_is_missing"),
    E.ExpectColumnPairValuesAToBeGreaterThanB(column_A="a", column_B="b", ignore_row_if="neither"),
    E.ExpectColumnPairValuesAToBeGreaterThanB(column_A="t2", column_B="t1", or_equal=True),
    ExpectColumnValuesToBeGreaterThanColumn(column="a", other_column="b", or_equal=True),
    ExpectColumnValuesToBeGreaterThanColumn(column="a", other_column="b"),
    ExpectColumnValuesToBeGreaterThanColumn(column="t2", other_column="t1", or_equal=True),
]


def ge_unexpected_counts(df: DataFrame, expectations: list[Any]) -> list[int]:
    """GE's unexpected_count per expectation, from a context of its own (independent of validate.py)."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    batch = (context.data_sources.add_spark("test", persist=False).add_dataframe_asset("frame")
             .add_batch_definition_whole_dataframe("whole"))
    suite = context.suites.add(gx.ExpectationSuite(name="all", expectations=[e.copy() for e in expectations]))
    run = context.validation_definitions.add(gx.ValidationDefinition(name="all", data=batch, suite=suite)).run(
        batch_parameters={"dataframe": df}, result_format={"result_format": "BASIC"})
    return [int(r.result["unexpected_count"]) for r in run.results]


def test_every_expectation_type_is_covered_here() -> None:
    assert {e.expectation_type for e in EXPECTATIONS} == set(SUPPORTED_TYPES)


def test_predicate_counts_equal_ge_unexpected_counts_for_every_expectation(spark) -> None:
    df = spark.createDataFrame(ROWS, SCHEMA).cache()
    ge = ge_unexpected_counts(df, EXPECTATIONS)
    [row] = df.agg(*[F.count_if(unexpected_condition(e.configuration)).alias(f"c{i}")
                     for i, e in enumerate(EXPECTATIONS)]).collect()
    predicate = [row[f"c{i}"] for i in range(len(EXPECTATIONS))]
    named = [f"{e.expectation_type}{dict(e.configuration.kwargs)}" for e in EXPECTATIONS]
    assert dict(zip(named, predicate, strict=True)) == dict(zip(named, ge, strict=True))
    # and the counts are the ones worked out by hand from ROWS
    assert predicate == [2, 1, 2, 2, 4, 1, 2, 2, 2, 3, 1, 2, 2, 2, 1, 1, 2, 1]


def test_the_column_map_form_counts_like_ges_column_pair_expectation(spark) -> None:
    df = spark.createDataFrame(ROWS, SCHEMA)
    pair = [E.ExpectColumnPairValuesAToBeGreaterThanB(column_A="a", column_B="b", or_equal=eq) for eq in (True, False)]
    column_map = [ExpectColumnValuesToBeGreaterThanColumn(column="a", other_column="b", or_equal=eq)
                  for eq in (True, False)]
    assert ge_unexpected_counts(df, column_map) == ge_unexpected_counts(df, pair) == [1, 2]


def test_predicates_are_never_null(spark) -> None:
    df = spark.createDataFrame(ROWS, SCHEMA)
    nulls = df.agg(*[F.count_if(unexpected_condition(e.configuration).isNull()).alias(f"c{i}")
                     for i, e in enumerate(EXPECTATIONS)]).collect()[0]
    assert list(nulls) == [0] * len(EXPECTATIONS)


def test_unsupported_configurations_are_refused() -> None:
    with pytest.raises(ValueError, match="has no row predicate"):
        Check(E.ExpectColumnValuesToBeUnique, {"column": "k"})
    with pytest.raises(ValueError, match="severity must be"):
        Check(E.ExpectColumnValuesToNotBeNull, {"column": "k"}, severity="fatal")  # type: ignore[arg-type]


def test_check_names_and_columns() -> None:
    assert [c.name for c in not_null("a", "b")] == ["expect_column_values_to_not_be_null(a)",
                                                   "expect_column_values_to_not_be_null(b)"]
    assert in_set("status", ("b", "a")).kwargs["value_set"] == ["a", "b"]
    assert between("n", 0, strict_min=True).kwargs == {"column": "n", "min_value": 0, "strict_min": True}
    assert matches("r", "^x$").name == "expect_column_values_to_match_regex(r)"
    check = greater_than_column("amount_minor", "captured_amount_minor", or_equal=True)
    assert check.name == "expect_column_values_to_be_greater_than_column(amount_minor, captured_amount_minor)"
    assert check.columns == ("amount_minor", "captured_amount_minor")
    lookup = Lookup("charges", (("charge_id", "charge_id"), ("charge_created_at", "created_at")),
                    values=("captured_amount_minor",))
    ref = reference_exists(lookup)
    assert (ref.name, ref.severity, ref.columns) == (
        "expect_reference_to_exist(charge_id, charge_created_at) -> charges(charge_id, created_at)", WARN,
        ("__dq_charges_charge_id_charge_created_at_found",))
    assert lookup.value_column("captured_amount_minor") == \
        "__dq_charges_charge_id_charge_created_at_captured_amount_minor"


def test_a_suite_refuses_repeated_names_and_helper_columns_no_lookup_adds() -> None:
    with pytest.raises(ValueError, match="repeated"):
        Suite("t", "payments.t", ("k",), (*not_null("k"), *not_null("k")))
    lookup = Lookup("merchants", (("merchant_id", "merchant_id"),))
    with pytest.raises(ValueError, match="which no lookup adds"):
        Suite("t", "payments.t", ("k",), (reference_exists(lookup),))
