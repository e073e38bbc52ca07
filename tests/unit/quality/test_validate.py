"""validate_batch on charges and refunds micro-batches: exact valid rows, quarantine rows and results."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.quality.suites import suite
from lakehouse.quality.validate import (
    DataQualityError,
    QualityParams,
    check_threshold,
    currency_codes,
    validate_batch,
)

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
CHARGES_SCHEMA = (
    "charge_id long, created_at timestamp, merchant_id long, customer_id long, payment_method_id long, "
    "amount_minor long, currency_code string, status string, captured_amount_minor long, "
    "refunded_amount_minor long, device_type string, risk_score decimal(5,4), anomaly_score decimal(7,3), "
    "_op string, _seq_lsn long, _seq_offset long, _source_partition int")
CHARGE_COLUMNS = [c.split(" ")[0] for c in CHARGES_SCHEMA.split(", ")]
CURRENCIES = frozenset({"USD", "EUR"})

NOT_NULL_ID = "expect_column_values_to_not_be_null(charge_id)"
CURRENCY = "expect_column_values_to_be_in_set(currency_code)"
STATUS = "expect_column_values_to_be_in_set(status)"
AMOUNT = "expect_column_values_to_be_between(amount_minor)"
AMOUNT_GE_CAPTURED = "expect_column_values_to_be_greater_than_column(amount_minor, captured_amount_minor)"
CAPTURED_GE_REFUNDED = "expect_column_values_to_be_greater_than_column(captured_amount_minor, refunded_amount_minor)"
MERCHANT_EXISTS = "expect_reference_to_exist(merchant_id) -> merchants(merchant_id)"


def charge(charge_id: int | None, offset: int, **changes: Any) -> tuple[Any, ...]:
    row: dict[str, Any] = {
        "charge_id": charge_id, "created_at": T0, "merchant_id": 10, "customer_id": 20, "payment_method_id": 30,
        "amount_minor": 1500, "currency_code": "USD", "status": "captured", "captured_amount_minor": 1500,
        "refunded_amount_minor": 0, "device_type": "mobile", "risk_score": Decimal("0.1200"), "anomaly_score": None,
        "_op": "c", "_seq_lsn": 1000 + offset, "_seq_offset": offset, "_source_partition": offset % 2}
    row.update(changes)
    return tuple(row[c] for c in CHARGE_COLUMNS)


BATCH = [
    charge(1, 100),                                                   # valid
    charge(None, 101),                                                # null key
    charge(3, 102, currency_code="XXX"),                              # unknown currency
    charge(4, 103, amount_minor=-5, captured_amount_minor=0, status="pending"),   # negative: fails two checks
    charge(5, 104, status="settled", captured_amount_minor=0),        # not a charge status
    charge(6, 105, currency_code="usd", status="bogus"),              # fails two checks
    charge(7, 106, _op="d", currency_code="XXX", status="bogus", amount_minor=-1),  # a delete: untouched
    charge(8, 107, merchant_id=99),                                   # merchant not (yet) in silver: warn only
    charge(9, 108, refunded_amount_minor=2000),                       # refunded more than captured
    charge(10, 109, _op="u", status="failed", captured_amount_minor=0),  # valid update
]


def parents(spark) -> dict[str, DataFrame]:
    return {
        # silver's current merchants and a merchant deleted in this batch (does not count as existing)
        "merchants": spark.createDataFrame([(10, "c"), (10, "u"), (99, "d")], "merchant_id long, _op string"),
        "customers": spark.createDataFrame([(20,)], "customer_id long"),
        "payment_methods": spark.createDataFrame([(30,)], "payment_method_id long"),
    }


@pytest.fixture(scope="module")
def charges_validation(spark):
    batch = spark.createDataFrame(BATCH, CHARGES_SCHEMA)
    validation = validate_batch(batch, "charges", 42, QualityParams(CURRENCIES, parents(spark)))
    yield batch, validation
    validation.release()


def test_valid_rows_are_the_batch_minus_the_quarantined_with_deletes_untouched(spark, charges_validation) -> None:
    _, v = charges_validation
    expected = spark.createDataFrame([BATCH[0], BATCH[6], BATCH[7], BATCH[9]], CHARGES_SCHEMA)
    assert_df_equality(v.valid, expected, ignore_row_order=True)
    assert (v.rows_in, v.checked_count, v.quarantined_count, v.valid_count) == (10, 9, 6, 4)
    assert v.valid.count() + v.quarantined.count() == v.rows_in


def test_each_failing_row_is_quarantined_once_with_every_reason(spark, charges_validation) -> None:
    _, v = charges_validation
    actual = v.quarantined.select("source_table", "source_partition", "source_offset",
                                  F.get_json_object("record", "$.charge_id").cast("long").alias("charge_id"),
                                  "reasons", "_batch_id")
    expected = spark.createDataFrame([
        ("bronze.cdc_payments_charges", 1, 101, None, [NOT_NULL_ID]),
        ("bronze.cdc_payments_charges", 0, 102, 3, [CURRENCY]),
        ("bronze.cdc_payments_charges", 1, 103, 4, [AMOUNT, AMOUNT_GE_CAPTURED]),
        ("bronze.cdc_payments_charges", 0, 104, 5, [STATUS]),
        ("bronze.cdc_payments_charges", 1, 105, 6, [CURRENCY, STATUS]),
        ("bronze.cdc_payments_charges", 0, 108, 9, [CAPTURED_GE_REFUNDED]),
    ], "source_table string, source_partition int, source_offset long, charge_id long, reasons array<string>"
    ).withColumn("_batch_id", F.lit(42).cast("bigint"))
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_the_record_is_the_whole_row_as_json_with_nulls(charges_validation) -> None:
    _, v = charges_validation
    [row] = v.quarantined.where(F.col("source_offset") == 105).select("record", "_quarantined_at").collect()
    assert row["record"] == (
        '{"charge_id":6,"created_at":"2026-03-01T12:00:00.000Z","merchant_id":10,"customer_id":20,'
        '"payment_method_id":30,"amount_minor":1500,"currency_code":"usd","status":"bogus",'
        '"captured_amount_minor":1500,"refunded_amount_minor":0,"device_type":"mobile","risk_score":0.1200,'
        '"anomaly_score":null,"_op":"c","_seq_lsn":1105,"_seq_offset":105,"_source_partition":1}')
    assert row["_quarantined_at"] is not None


def test_results_have_one_row_per_expectation_with_exact_counts(spark, charges_validation) -> None:
    _, v = charges_validation
    # unexpected counts (of the 9 checked rows) and percents (of the non-NULL values GE counts against:
    # none at all for anomaly_score, hence no percent)
    failing = {NOT_NULL_ID: (1, 100 / 9), CURRENCY: (2, 200 / 9), STATUS: (2, 200 / 9), AMOUNT: (1, 100 / 9),
               AMOUNT_GE_CAPTURED: (1, 100 / 9), CAPTURED_GE_REFUNDED: (1, 100 / 9), MERCHANT_EXISTS: (1, 100 / 9),
               "expect_column_values_to_be_between(anomaly_score)": (0, None)}
    checks = suite("charges").checks
    expected = spark.createDataFrame(
        [("charges", 42, c.name, c.expectation_type, list(c.columns), c.severity, not failing.get(c.name, (0,))[0], 9,
          *failing.get(c.name, (0, 0.0))) for c in checks],
        "table string, batch_id long, expectation string, expectation_type string, columns array<string>, "
        "severity string, success boolean, element_count long, unexpected_count long, unexpected_percent double")
    actual = v.results.drop("run_at")
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True, allow_nan_equality=True)
    assert v.results.count() == len(checks) == 23
    assert v.results.select("run_at").distinct().count() == 1


def test_ge_keeps_no_results_from_run_to_run(charges_validation) -> None:
    from lakehouse.quality.validate import _pool

    with _pool.lend() as runner:
        assert runner.stored_results() == 0


def test_a_missing_parent_is_a_warning_not_a_quarantine(charges_validation) -> None:
    _, v = charges_validation
    outcome = {o.check.name: o for o in v.outcomes}[MERCHANT_EXISTS]
    assert (outcome.check.severity, outcome.success, outcome.unexpected_count) == ("warn", False, 1)
    assert v.valid.where(F.col("merchant_id") == 99).count() == 1


def test_refunds_within_the_captured_amount_of_their_charge_are_checked_as_warnings(spark) -> None:
    refunds = spark.createDataFrame([
        (1, 1, T0, 500, "USD", "requested_by_customer", "succeeded", "c", 1, 1, 0),
        (2, 1, T0, 1200, "USD", "duplicate", "pending", "c", 2, 2, 0),     # more than the 1000 captured
        (3, 2, T0, 100, "EUR", "other", "succeeded", "r", 3, 3, 0),        # charge 2 not in silver yet
        (4, 3, T0, 100, "EUR", "other", "bogus", "c", 4, 4, 0),            # bad status: error
    ], "refund_id long, charge_id long, charge_created_at timestamp, amount_minor long, currency_code string, "
       "reason string, status string, _op string, _seq_lsn long, _seq_offset long, _source_partition int")
    charges = spark.createDataFrame([(1, T0, 0, "c"), (1, T0, 1000, "u"), (3, T0, 100, "c")],
                                    "charge_id long, created_at timestamp, captured_amount_minor long, _op string")
    with validate_batch(refunds, "refunds", 5, QualityParams(CURRENCIES, {"charges": charges})) as v:
        counts = {o.check.name: o.unexpected_count for o in v.outcomes if o.unexpected_count}
        assert counts == {
            "expect_column_values_to_be_in_set(status)": 1,
            "expect_reference_to_exist(charge_id, charge_created_at) -> charges(charge_id, created_at)": 1,
            "expect_refund_within_captured_amount(amount_minor <= charges.captured_amount_minor)": 1}
        assert sorted(r["refund_id"] for r in v.valid.collect()) == [1, 2, 3]
        assert v.valid.columns == refunds.columns


def test_a_batch_of_deletes_only_is_valid_without_running_the_suite(spark) -> None:
    batch = spark.createDataFrame([charge(7, 1, _op="d", currency_code="XXX")], CHARGES_SCHEMA)
    with validate_batch(batch, "charges", 3, QualityParams(CURRENCIES, parents(spark))) as v:
        assert (v.rows_in, v.checked_count, v.quarantined_count) == (1, 0, 0)
        outcomes = {(r["success"], r["element_count"], r["unexpected_count"]) for r in v.results.collect()}
        assert outcomes == {(True, 0, 0)}
        assert_df_equality(v.valid, batch)


def test_missing_parameters_and_columns_are_named(spark) -> None:
    batch = spark.createDataFrame([charge(1, 1)], CHARGES_SCHEMA)
    with pytest.raises(ValueError, match="parents lacks customers, merchants, payment_methods"):
        validate_batch(batch, "charges", 1, QualityParams(CURRENCIES))
    with pytest.raises(ValueError, match="quality parameter 'currencies' is empty"):
        validate_batch(batch, "charges", 1, QualityParams(frozenset(), parents(spark)))
    with pytest.raises(ValueError, match=r"lacks columns \['status'\]"):
        validate_batch(batch.drop("status"), "charges", 1, QualityParams(CURRENCIES, parents(spark)))
    with pytest.raises(KeyError, match="no quality suite for silver table 'charge'"):
        validate_batch(batch, "charge", 1, QualityParams(CURRENCIES))


def test_currency_codes_come_from_ref_currencies_without_deleted_rows(spark) -> None:
    ref = spark.createDataFrame([("USD", "c"), ("EUR", "r"), ("XTS", "d")], "currency_code string, _op string")
    assert currency_codes(ref) == frozenset({"USD", "EUR"})


def test_threshold_fails_the_job_with_table_batch_share_and_setting(settings, charges_validation) -> None:
    _, v = charges_validation
    with pytest.raises(DataQualityError) as raised:
        check_threshold(v, settings)
    assert str(raised.value) == (
        "silver.charges batch 42: 6 of 10 rows quarantined (60.00%), more than silver.max_quarantine_ratio = 5.00%; "
        "see silver.quarantine_charges and silver.dq_results")


def test_threshold_allows_exactly_the_configured_share(spark, settings) -> None:
    assert settings.silver.max_quarantine_ratio == 0.05
    rows = [charge(i, i) for i in range(1, 20)] + [charge(20, 20, status="bogus")]     # 1 of 20 = 5 %
    batch = spark.createDataFrame(rows, CHARGES_SCHEMA)
    with validate_batch(batch, "charges", 1, QualityParams(CURRENCIES, parents(spark))) as v:
        assert v.quarantined_count == 1
        check_threshold(v, settings)        # 5 % is not more than 5 %: no error


def test_boolean_only_ge_gives_the_same_outcomes_from_the_predicates_counts(spark, charges_validation) -> None:
    batch, basic = charges_validation
    params = QualityParams(CURRENCIES, parents(spark), ge_result_format="BOOLEAN_ONLY")
    with validate_batch(batch, "charges", 42, params) as fast:
        assert [(o.check.name, o.success, o.element_count, o.unexpected_count) for o in fast.outcomes] == \
            [(o.check.name, o.success, o.element_count, o.unexpected_count) for o in basic.outcomes]
        assert {o.unexpected_percent for o in fast.outcomes} == {None}
        assert fast.quarantined_count == basic.quarantined_count == 6
    with pytest.raises(ValueError, match="ge_result_format: 'SUMMARY' is not one of BASIC, BOOLEAN_ONLY"):
        QualityParams(ge_result_format="SUMMARY")


def test_a_disagreement_between_ge_and_the_predicates_stops_the_batch(spark, monkeypatch) -> None:
    import lakehouse.quality.validate as validate

    real = validate._ge_results

    def one_more_bad_status(*args: Any) -> dict[str, dict[str, Any]]:
        results = real(*args)
        results[STATUS] = {**results[STATUS], "unexpected_count": results[STATUS]["unexpected_count"] + 1}
        return results

    monkeypatch.setattr(validate, "_ge_results", one_more_bad_status)
    batch = spark.createDataFrame([charge(1, 1), charge(2, 2, status="bogus")], CHARGES_SCHEMA)
    disagreement = r"\{'expect_column_values_to_be_in_set\(status\)': \(2, 1\)\}"
    with pytest.raises(validate.QualityMismatchError, match=disagreement):
        validate_batch(batch, "charges", 1, QualityParams(CURRENCIES, parents(spark)))


def test_an_expectation_ge_cannot_evaluate_raises(spark) -> None:
    from lakehouse.quality.validate import _ge_results, _pool

    frame = spark.createDataFrame([(1,)], "charge_id long")
    with _pool.lend() as runner, \
            pytest.raises(RuntimeError, match=r"quality suite merchants: expectation .* could not be evaluated"):
        _ge_results(runner, suite("merchants"), QualityParams(CURRENCIES), frame)


def test_a_batch_the_caller_cached_stays_cached_and_ours_is_released(spark) -> None:
    from pyspark import StorageLevel

    batch = spark.createDataFrame([charge(1, 1), charge(2, 2, status="bogus")], CHARGES_SCHEMA).cache()
    batch.count()
    with validate_batch(batch, "charges", 1, QualityParams(CURRENCIES, parents(spark))) as v:
        assert v.quarantined.count() == 1
        cached = v._cached
        assert cached is not None and cached.storageLevel != StorageLevel.NONE
    assert cached.storageLevel == StorageLevel.NONE
    assert batch.storageLevel != StorageLevel.NONE
    batch.unpersist()
