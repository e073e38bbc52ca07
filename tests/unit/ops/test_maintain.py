"""The pure parts of `lakehouse maintain`: retention, layers, table selection, the report."""

import pytest

from lakehouse.ops.maintain import (
    MIN_RETAIN_HOURS,
    MaintainError,
    MaintainReport,
    TableResult,
    describe,
    layers_for,
    missing_properties,
    select_tables,
    validate_retention,
)

ON_STORAGE = ["bronze.cdc_payments_charges", "silver.charges", "silver.merchants", "gold.fact_payments",
              "gold.dim_merchant", "ops.job_runs", "silver.dim_merchant"]


def test_retention_of_7_days_or_more_is_kept() -> None:
    assert MIN_RETAIN_HOURS == 168
    assert validate_retention(168) == 168
    assert validate_retention(720) == 720


@pytest.mark.parametrize("hours", [167, 24, 0, -1])
def test_retention_under_7_days_is_refused_with_the_minimum_named(hours: int) -> None:
    with pytest.raises(MaintainError, match=f"--retain-hours {hours} is below 168 hours"):
        validate_retention(hours)


def test_layers_of_each_choice() -> None:
    assert layers_for("gold") == ("gold",)
    assert layers_for("all") == ("bronze", "silver", "gold", "ops")
    with pytest.raises(MaintainError, match="--layer 'platinum'"):
        layers_for("platinum")


def test_a_layer_selects_its_tables_sorted() -> None:
    assert select_tables(ON_STORAGE, ("gold",)) == ["gold.dim_merchant", "gold.fact_payments"]
    assert select_tables(ON_STORAGE, ("bronze", "ops")) == ["bronze.cdc_payments_charges", "ops.job_runs"]
    assert select_tables(ON_STORAGE, layers_for("all")) == sorted(ON_STORAGE)
    assert select_tables([], ("gold",)) == []


def test_tables_by_full_or_bare_name() -> None:
    assert select_tables(ON_STORAGE, ("silver", "gold"), ["gold.fact_payments", "charges"]) == [
        "gold.fact_payments", "silver.charges"]
    assert select_tables(ON_STORAGE, ("gold",), ["dim_merchant", "gold.dim_merchant"]) == ["gold.dim_merchant"]


def test_unknown_ambiguous_and_out_of_layer_names_are_refused() -> None:
    with pytest.raises(MaintainError, match="--table fact_refunds: no Delta table of that name in gold"):
        select_tables(ON_STORAGE, ("gold",), ["fact_refunds"])
    with pytest.raises(MaintainError, match=r"--table dim_merchant is ambiguous: gold\.dim_merchant, "
                                            r"silver\.dim_merchant"):
        select_tables(ON_STORAGE, ("silver", "gold"), ["dim_merchant"])
    with pytest.raises(MaintainError, match=r"--table silver\.charges: not in the chosen layers \(gold\)"):
        select_tables(ON_STORAGE, ("gold",), ["silver.charges"])


def _report(dry_run: bool = False) -> MaintainReport:
    report = MaintainReport(("gold",), 168, dry_run, seconds=12.34)
    report.tables = [
        TableResult("gold.fact_payments", files_before=10, files_after=1, optimize_removed=10, optimize_added=1,
                    clustered_by=["date_key", "merchant_id"], vacuumed_files=3, seconds=4.0),
        TableResult("gold.dim_date", files_before=2, files_after=1, optimize_removed=2, optimize_added=1,
                    vacuumed_files=0, seconds=1.0),
        TableResult("gold.fact_refunds", files_before=5, seconds=0.5, error="ConcurrentAppendException: busy")]
    return report


def test_totals_leave_failed_tables_out() -> None:
    report = _report()
    assert not report.ok
    assert report.totals() == {"tables": 3, "failed": 1, "files_before": 12, "files_after": 2,
                               "optimize_removed": 12, "optimize_added": 2, "vacuumed_files": 3, "would_vacuum": 0}
    assert report.summary() == ("3 table(s) of gold in 12.3s: files 12 -> 2 (OPTIMIZE removed 12, added 2); VACUUM "
                                "(retain 168 h) deleted 3 files; 1 failed: gold.fact_refunds")
    as_json = report.as_dict()
    assert (as_json["ok"], as_json["retain_hours"], as_json["seconds"]) == (False, 168, 12.3)
    assert as_json["tables"][2]["error"] == "ConcurrentAppendException: busy"


def test_an_unrecorded_vacuum_count_is_not_summed_as_zero() -> None:
    report = _report()
    report.tables[1].vacuumed_files = None
    assert report.totals()["vacuumed_files"] is None
    assert "deleted an unrecorded number of files" in report.summary()


def test_progress_lines() -> None:
    ok, plain, failed = _report().tables
    assert describe(ok, 168, False) == (
        "gold.fact_payments: OPTIMIZE 10 -> 1 files (removed 10, added 1; clustered by date_key, merchant_id); "
        "VACUUM (retain 168 h) deleted 3 files (4.0s)")
    assert describe(plain, 168, False).startswith(
        "gold.dim_date: OPTIMIZE 2 -> 1 files (removed 2, added 1; compacted)")
    assert describe(failed, 168, False) == "gold.fact_refunds: FAILED after 0.5s: ConcurrentAppendException: busy"
    dry = TableResult("gold.fact_payments", files_before=10, files_after=10, would_vacuum=["a", "b"], seconds=2.0)
    assert describe(dry, 200, True) == ("gold.fact_payments: 10 files; VACUUM DRY RUN (retain 200 h): 2 files would "
                                        "be deleted (2.0s)")


def test_missing_properties_are_the_declared_ones_absent_or_different() -> None:
    declared = {"delta.enableDeletionVectors": "true", "delta.enableChangeDataFeed": "true"}
    actual = {"delta.enableChangeDataFeed": "true", "delta.minReaderVersion": "3",
              "delta.enableDeletionVectors": "false"}
    assert missing_properties(declared, actual) == {"delta.enableDeletionVectors": "true"}
    assert missing_properties(declared, {**actual, "delta.enableDeletionVectors": "true"}) == {}
    assert missing_properties({}, actual) == {}


def test_progress_lines_name_the_properties_set() -> None:
    done = TableResult("gold.fact_refunds", files_before=2, files_after=1, optimize_removed=2, optimize_added=1,
                       clustered_by=["date_key"], properties_set={"delta.enableDeletionVectors": "true"},
                       vacuumed_files=0, seconds=1.0)
    assert describe(done, 168, False) == (
        "gold.fact_refunds: OPTIMIZE 2 -> 1 files (removed 2, added 1; clustered by date_key); VACUUM (retain 168 h) "
        "deleted 0 files; set delta.enableDeletionVectors=true (1.0s)")
    dry = TableResult("gold.fact_refunds", files_before=2, files_after=2, properties_set={"a": "1"}, seconds=1.0)
    assert describe(dry, 168, True) == ("gold.fact_refunds: 2 files; would set a=1; VACUUM DRY RUN (retain 168 h): 0 "
                                        "files would be deleted (1.0s)")
