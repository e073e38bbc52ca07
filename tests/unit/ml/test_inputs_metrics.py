"""lakehouse.ml.inputs and lakehouse.ml.metrics on hand-worked values."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from lakehouse.ml.inputs import INPUT_COLUMNS, haversine_km, model_inputs, records_inputs
from lakehouse.ml.metrics import card_precision_at_k, cost_threshold, evaluate, expected_cost


def _row(**values: object) -> dict[str, object]:
    base: dict[str, object] = {"amount_usd": 100.0, "created_at": dt.datetime(2026, 3, 7, 22, 30),  # a Saturday
                               "device_type": "mobile", "ip_country": "DE", "ip_lat": 52.52, "ip_lon": 13.405,
                               "has_terminal": 0.0}
    base.update(values)
    return base


def test_inputs_are_derived_as_documented() -> None:
    rows = [_row(cust_txn_30d=4, cust_amount_usd_30d=200.0, cust_ip_txn_30d=0, cust_device_txn_30d=3,
                 usual_country="FR", usual_lat=48.8566, usual_lon=2.3522),
            _row(device_type=None, amount_usd=None)]
    got = pd.DataFrame(records_inputs(rows), columns=list(INPUT_COLUMNS))
    first, second = got.iloc[0], got.iloc[1]
    assert (first["hour_utc"], first["is_weekend"], first["device_mobile"]) == (22.0, 1.0, 1.0)
    assert first["log_amount_usd"] == pytest.approx(math.log(101.0))
    assert first["amount_vs_cust_avg_30d"] == 2.0                  # 100 against 200 / 4
    assert (first["new_ip_for_customer"], first["new_device_for_customer"]) == (1.0, 0.0)
    assert (first["country_is_usual"], first["has_profile"]) == (0.0, 1.0)
    assert first["km_from_usual"] == pytest.approx(877.5, abs=1.0)    # Berlin - Paris
    # nothing known: windows 0, no profile (0, and has_profile says so), the amount 0, the device unknown
    assert (second["amount_usd"], second["device_unknown"], second["cust_txn_24h"]) == (0.0, 1.0, 0.0)
    assert (second["country_is_usual"], second["km_from_usual"], second["has_profile"]) == (0.0, 0.0, 0.0)
    assert not got.isna().to_numpy().any()
    assert (second["amount_vs_cust_avg_30d"], second["new_ip_for_customer"]) == (1.0, 1.0)


def test_the_frame_path_and_the_record_path_agree_exactly() -> None:
    rows = [_row(cust_txn_1h=1, card_merchants_7d=3, merchant_dispute_rate_30d=0.25, usual_country="DE",
                 usual_lat=50.0, usual_lon=8.0), _row(ip_lat=None, ip_lon=None, terminal_disputes_30d=2)]
    frame = model_inputs(pd.DataFrame(rows)).to_numpy()
    assert np.array_equal(frame, records_inputs(rows), equal_nan=True)


def test_haversine_of_one_degree_of_latitude() -> None:
    km = haversine_km(np.array([0.0]), np.array([0.0]), np.array([1.0]), np.array([0.0]))
    assert km[0] == pytest.approx(111.195, abs=0.01)


def test_the_threshold_minimizes_the_expected_cost() -> None:
    labels = np.array([True, False, True, False, False])
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    # declining the top 3 costs one false decline (5); the top 1: one missed fraud (100); none: 200
    assert cost_threshold(labels, scores, 100.0, 5.0) == 0.7
    assert expected_cost(labels, scores, 0.7, 100.0, 5.0) == 5.0
    # a fraud costs 1, a false decline 5: declining the top 1 (a fraud) costs 1, nothing 2, the top 3 5
    assert cost_threshold(labels, scores, 1.0, 5.0) == 0.9
    # no fraud at all: declining nothing is best, the threshold is above every score
    assert cost_threshold(np.zeros(5, dtype=bool), scores, 100.0, 5.0) > 0.9


def test_ties_are_cut_together() -> None:
    labels = np.array([True, False, False])
    scores = np.array([0.5, 0.5, 0.1])
    # the two 0.5s are declined together or not at all: together costs 1 x 5 < a missed fraud (100)
    assert cost_threshold(labels, scores, 100.0, 5.0) == 0.5


def test_card_precision_at_k_per_day() -> None:
    days = ["d1", "d1", "d1", "d2", "d2"]
    cards = [1, 1, 2, 3, 4]
    labels = [False, True, False, False, True]
    scores = [0.9, 0.1, 0.8, 0.7, 0.2]
    # d1: card 1 (max 0.9, had a fraud) is the top 1 -> 1.0; d2: card 3 is the top 1, genuine -> 0.0
    assert card_precision_at_k(days, cards, labels, scores, k=1) == 0.5
    assert card_precision_at_k(days, cards, labels, scores, k=2) == 0.5   # d1: 1 of 2, d2: 1 of 2


def test_evaluation_at_a_threshold() -> None:
    labels = np.array([True, False, True, False])
    scores = np.array([0.9, 0.6, 0.4, 0.1])
    ev = evaluate(labels, scores, 0.5, 100.0, 5.0, ["d"] * 4, [1, 2, 3, 4])
    assert (ev.declined, ev.precision, ev.recall, ev.expected_cost) == (2, 0.5, 0.5, 105.0)
    assert ev.roc_auc == 0.75
