"""Data quality of the silver layer: Great Expectations suites per silver table, validated inside
foreachBatch; failing rows to `silver.quarantine_<table>`, results to `silver.dq_results`.

    validate_batch(df, table, batch_id, params) -> Validation (.valid, .quarantined, .results)
    write_quarantine(v.quarantined, settings, table, batch_id); write_dq_results(v.results, settings)
    check_threshold(v, settings)          # DataQualityError above silver.max_quarantine_ratio

See docs/quality.md.
"""

from lakehouse.quality.checks import ERROR, WARN, Check, Lookup, Suite, unexpected_condition
from lakehouse.quality.quarantine import to_quarantine, write_dq_results, write_quarantine
from lakehouse.quality.suites import SUITES, suite
from lakehouse.quality.validate import (
    DataQualityError,
    QualityMismatchError,
    QualityParams,
    Validation,
    check_threshold,
    currency_codes,
    validate_batch,
)

__all__ = [
    "ERROR",
    "SUITES",
    "WARN",
    "Check",
    "DataQualityError",
    "Lookup",
    "QualityMismatchError",
    "QualityParams",
    "Suite",
    "Validation",
    "check_threshold",
    "currency_codes",
    "suite",
    "to_quarantine",
    "unexpected_condition",
    "validate_batch",
    "write_dq_results",
    "write_quarantine",
]
