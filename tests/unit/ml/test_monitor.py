"""lakehouse.ml.monitor's pure checks on tiny inputs whose PSI, average precision and costs are worked
out by hand.

PSI by hand (lakehouse.ml.metrics.psi, 10 quantile bins): for the reference [1, 1, 2, 2, 3, 3] the
quantile edges are 1, 1.5, 2, 2.5, 3, so the inner edges [1.5, 2, 2.5] give the bins
(< 1.5) [1.5, 2) [2, 2.5) (>= 2.5) plus one for NaN; the reference's shares are 1/3, 0, 1/3, 1/3, 0,
and an empty bin counts as a share of 1e-4. PSI = sum over bins of (a - e) x ln(a / e).
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest
from pyspark.sql.types import _make_type_verifier

from lakehouse.ml.inputs import INPUT_COLUMNS
from lakehouse.ml.monitor import (
    Check,
    feature_drift,
    monitoring_rows,
    performance,
    retrain_decision,
    score_drift,
)
from lakehouse.ml.tables import ML_MONITORING

REFERENCE = [0.1, 0.1, 0.2, 0.2, 0.3, 0.3]
# Recent [1, 2, 3, 3] against the reference: shares 1/4, 0, 1/4, 1/2, 0 ->
# 2 x (1/4 - 1/3) ln(3/4) + (1/2 - 1/3) ln(3/2) = 1/6 ln(4/3) + 1/6 ln(3/2) = ln(2) / 6.
LN2_OVER_6 = math.log(2) / 6                                               # 0.115525


def test_score_psi_of_a_shifted_distribution_by_hand() -> None:
    check = score_drift(REFERENCE, [0.1, 0.2, 0.3, 0.3], threshold=0.1)
    assert check == Check("score_psi", "score", pytest.approx(LN2_OVER_6, rel=1e-12), 0.1, True,
                          "PSI 0.1155 > 0.1; mean 0.2 -> 0.225 (6 training vs 4 recent values)")
    relaxed = score_drift(REFERENCE, [0.1, 0.2, 0.3, 0.3], threshold=0.2)
    assert (relaxed.value, relaxed.threshold, relaxed.breached) == (pytest.approx(LN2_OVER_6, rel=1e-12), 0.2, False)
    assert relaxed.detail.startswith("PSI 0.1155 <= 0.2;")


def test_score_psi_is_zero_for_the_same_shares() -> None:
    check = score_drift(REFERENCE, [0.3, 0.2, 0.1], threshold=0.2)
    assert (check.value, check.breached) == (0.0, False)


def test_score_psi_counts_missing_values_as_their_own_bin() -> None:
    # Recent [0.1, 0.2, 0.3, NaN]: shares 1/4, 0, 1/4, 1/4 and 1/4 in the NaN bin (the reference's: 1e-4) ->
    # 3 x (1/4 - 1/3) ln(3/4) + (1/4 - 1e-4) ln(1/4 / 1e-4) = 1/4 ln(4/3) + 0.2499 ln(2500)
    #   = 0.071921 + 1.955229 = 2.027150.
    expected = 0.25 * math.log(4 / 3) + 0.2499 * math.log(2500)
    check = score_drift(REFERENCE, [0.1, 0.2, 0.3, math.nan], threshold=0.2)
    assert check.value == pytest.approx(expected, rel=1e-12)
    assert check.value == pytest.approx(2.027150, abs=1e-6)
    assert check.breached is True
    assert check.detail == "PSI 2.0271 > 0.2; mean 0.2 -> 0.2, missing 0.0% -> 25.0% (6 training vs 4 recent values)"


def test_score_psi_is_not_measured_without_recent_scores() -> None:
    check = score_drift(REFERENCE, [], threshold=0.2)
    assert math.isnan(check.value)
    assert (check.threshold, check.breached) == (0.2, False)
    assert check.detail == "not measured: 6 training and 0 recent values"


def raw(amounts: list[float], cust_txn_24h: list[float]) -> pd.DataFrame:
    """Raw payments on Monday 2026-03-02 10:00 UTC; every other feature missing (the same on both sides)."""
    return pd.DataFrame({"created_at": pd.to_datetime(["2026-03-02 10:00:00"] * len(amounts)),
                         "amount_usd": amounts, "cust_txn_24h": cust_txn_24h})


def test_feature_drift_is_the_psi_of_every_model_input() -> None:
    reference = raw([1, 1, 2, 2, 3, 3], [1, 1, 2, 2, 3, 3])
    recent = raw([1, 2, 3, 3], [np.nan, np.nan, 3, 3])
    checks = feature_drift(reference, recent, threshold=0.5)
    assert [c.name for c in checks] == list(INPUT_COLUMNS)
    assert {c.kind for c in checks} == {"feature_psi"}
    assert {c.threshold for c in checks} == {0.5}
    # amount_usd and its log1p (monotone: the same bins): ln(2) / 6.
    # cust_txn_24h: a missing count is 0 for the model, so recent is [0, 0, 3, 3]: shares 1/2, 0, 0, 1/2 ->
    # (1/2 - 1/3) ln(3/2) x 2 + (1e-4 - 1/3) ln(3e-4) = 1/3 ln(3/2) + (1/3 - 1e-4) ln(10000/3) = 2.838253.
    txn = math.log(1.5) / 3 + (1 / 3 - 1e-4) * math.log(10000 / 3)
    expected = dict.fromkeys(INPUT_COLUMNS, 0.0)    # constant inputs (hour, device, ratios, ...) do not move
    expected.update(amount_usd=LN2_OVER_6, log_amount_usd=LN2_OVER_6, cust_txn_24h=txn)
    assert {c.name: c.value for c in checks} == {k: pytest.approx(v, rel=1e-12, abs=1e-15) for k, v in expected.items()}
    assert txn == pytest.approx(2.838253, abs=1e-6)
    assert [c.name for c in checks if c.breached] == ["cust_txn_24h"]
    by_name = {c.name: c for c in checks}
    assert by_name["cust_txn_24h"].detail == "PSI 2.8383 > 0.5; mean 2 -> 1.5 (6 training vs 4 recent values)"
    assert by_name["amount_usd"].detail == "PSI 0.1155 <= 0.5; mean 2 -> 2.25 (6 training vs 4 recent values)"


def test_feature_drift_without_recent_payments_measures_nothing() -> None:
    checks = feature_drift(raw([1, 2, 3], [1, 1, 1]), raw([], []), threshold=0.2)
    assert len(checks) == len(INPUT_COLUMNS)
    assert all(math.isnan(c.value) and not c.breached for c in checks)
    assert {c.detail for c in checks} == {"not measured: 3 training and 0 recent values"}


# Labels [fraud, genuine, fraud, genuine] at scores [0.9, 0.8, 0.4, 0.1]: ranked by score, the frauds come
# 1st (precision 1/1) and 3rd (precision 2/3): AP = (1 + 2/3) / 2 = 5/6. At the threshold 0.5 the top two
# are declined: 1 fraud caught of 2 (recall 1/2), 1 of 2 declines is a fraud (precision 1/2); cost =
# 1 missed fraud x 100 + 1 declined genuine x 5 = 105, 26.25 per payment.
LABELS = [True, False, True, False]
SCORES = [0.9, 0.8, 0.4, 0.1]


def test_performance_breaches_when_average_precision_fell_more_than_the_allowed_share() -> None:
    checks = performance(LABELS, SCORES, 0.5, reference_ap=1.0, max_drop=0.1, cost_missed=100.0, cost_decline=5.0)
    assert checks == [
        Check("performance", "average_precision", pytest.approx(5 / 6, rel=1e-12), pytest.approx(0.9), True,
              "average precision 0.8333 vs 1.0000 at training: -16.7% (limit -10%, i.e. 0.9000); "
              "4 payments with mature labels, 2 frauds"),
        Check("performance", "precision", 0.5, None, False, "1 of 2 declined payments were fraud (score >= 0.5000)"),
        Check("performance", "recall", 0.5, None, False, "1 of 2 frauds declined (score >= 0.5000)"),
        Check("performance", "cost_per_payment", 26.25, None, False,
              "1 missed frauds x 100 + 1 declined genuine x 5 = 105.00 over 4 payments (score >= 0.5000)"),
    ]


def test_performance_within_the_allowed_drop_is_not_breached() -> None:
    # Against 0.9: (5/6 - 0.9) / 0.9 = -7.4 %, above the floor 0.9 x 0.9 = 0.81.
    ap = performance(LABELS, SCORES, 0.5, reference_ap=0.9, max_drop=0.1, cost_missed=100.0, cost_decline=5.0)[0]
    assert (ap.value, ap.threshold, ap.breached) == (pytest.approx(5 / 6), pytest.approx(0.81), False)
    assert ap.detail.startswith("average precision 0.8333 vs 0.9000 at training: -7.4% (limit -10%, i.e. 0.8100)")


def test_performance_falling_by_exactly_the_allowed_share_is_not_breached() -> None:
    # The only fraud ranked 2nd of 2: AP = 1/2, exactly half of 1.0; "more than 50 %" is not met.
    ap = performance([False, True], [0.9, 0.1], 0.5, reference_ap=1.0, max_drop=0.5, cost_missed=100.0,
                     cost_decline=5.0)[0]
    assert (ap.value, ap.threshold, ap.breached) == (0.5, 0.5, False)


def test_performance_without_a_reference_is_informational() -> None:
    for reference in (None, math.nan, 0.0):
        ap = performance(LABELS, SCORES, 0.5, reference_ap=reference, max_drop=0.1, cost_missed=100.0,
                         cost_decline=5.0)[0]
        assert (ap.value, ap.threshold, ap.breached) == (pytest.approx(5 / 6), None, False)
        assert ap.detail == ("average precision 0.8333; no reference (the training run has no usable "
                             "test_average_precision); 4 payments with mature labels, 2 frauds")


@pytest.mark.parametrize(("labels", "scores", "count"), [([], [], "0 scored payments with mature labels (0 frauds)"),
                                                         ([False, False], [0.2, 0.7],
                                                          "2 scored payments with mature labels (0 frauds)")])
def test_performance_waits_for_labels_of_both_classes(labels: list[bool], scores: list[float], count: str) -> None:
    checks = performance(labels, scores, 0.5, reference_ap=1.0, max_drop=0.1, cost_missed=100.0, cost_decline=5.0)
    assert len(checks) == 1
    (check,) = checks
    assert (check.kind, check.name, check.threshold, check.breached) == ("performance", "average_precision", 0.9,
                                                                         False)
    assert math.isnan(check.value)
    assert check.detail == f"labels have not arrived yet: {count}; average precision needs both classes"


DRIFTED = Check("feature_psi", "amount_usd", 0.3, 0.2, True, "PSI 0.3000 > 0.2")
STABLE = Check("score_psi", "score", 0.05, 0.2, False, "PSI 0.0500 <= 0.2")
NO_LABELS = Check("performance", "average_precision", math.nan, 0.9, False, "labels have not arrived yet")
WORSE = Check("performance", "average_precision", 0.5, 0.9, True, "average precision 0.5000 vs 1.0000")


def test_retrain_is_recommended_with_the_breached_checks_and_their_reasons() -> None:
    old = Check("retrain", "retrain", 1.0, None, True, "an earlier decision")
    assert retrain_decision([DRIFTED, STABLE, WORSE, old]) == Check(
        "retrain", "retrain", 1.0, None, True,
        "retrain recommended: 2 of 3 checks breached: feature_psi amount_usd: PSI 0.3000 > 0.2 | "
        "performance average_precision: average precision 0.5000 vs 1.0000")


def test_no_retrain_when_nothing_breached_and_unmeasured_checks_are_named() -> None:
    assert retrain_decision([STABLE, NO_LABELS]) == Check(
        "retrain", "retrain", 0.0, None, False,
        "no retrain: 2 checks within their thresholds (1 not measured: average_precision)")
    assert retrain_decision([STABLE]).detail == "no retrain: 1 checks within their thresholds"


def test_a_check_has_a_known_kind() -> None:
    with pytest.raises(ValueError, match="unknown kind 'drift'"):
        Check("drift", "x", 0.0, None, False, "")


def test_monitoring_rows_follow_the_table_schema() -> None:
    at, start, end = dt.datetime(2026, 3, 9, 6, 0), dt.datetime(2026, 3, 1, 12, 0), dt.datetime(2026, 3, 8, 12, 0)
    rows = monitoring_rows([DRIFTED, NO_LABELS, retrain_decision([DRIFTED])], "fraud_classifier", "3", at, start, end)
    assert ML_MONITORING.schema.fieldNames() == ["checked_at", "model_name", "model_version", "kind", "name", "value",
                                                 "threshold", "breached", "window_start", "window_end", "detail"]
    assert rows[0] == (at, "fraud_classifier", "3", "feature_psi", "amount_usd", 0.3, 0.2, True, start, end,
                       "PSI 0.3000 > 0.2")
    assert rows[1][:5] == (at, "fraud_classifier", "3", "performance", "average_precision")
    assert math.isnan(rows[1][5])
    assert rows[1][6:] == (0.9, False, start, end, "labels have not arrived yet")
    assert rows[2] == (at, "fraud_classifier", "3", "retrain", "retrain", 1.0, None, True, start, end,
                       "retrain recommended: 1 of 1 checks breached: feature_psi amount_usd: PSI 0.3000 > 0.2")
    verify = _make_type_verifier(ML_MONITORING.schema)   # what createDataFrame(rows, schema) checks
    for row in rows:
        verify(row)
    # numpy values become plain Python ones (Spark's DoubleType / BooleanType accept no numpy scalars).
    (row,) = monitoring_rows([Check("score_psi", "score", np.float64(0.1), 0.2, bool(np.bool_(False)), "")],
                             "m", None, at, None, None)
    assert (type(row[5]), row[2], row[8], row[9]) == (float, None, None, None)
    verify(row)
