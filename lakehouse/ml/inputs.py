"""What a fraud model is fed (pure, pandas): a payment's own fields and its Feast features -> the model's
numeric input columns, in a fixed order.

Every scoring path (batch through `spark_udf`, streaming, online) hands the model the same raw columns
(`RAW_COLUMNS`) and the model derives its inputs with `model_inputs` inside its `predict`, so the
derivation cannot differ between training and any path. Missing window counts mean "no payment in the
window" (0); a payment whose customer has no profile yet (or whose IP has no location) gets 0 for
`country_is_usual` and `km_from_usual`, and `has_profile` says which: no input is ever NaN (a column that
is missing on every training row, as on the first day of a history, would break the tree model's binning).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

# The payment's own fields, known when it is made (the OLTP's charge row as inserted).
REQUEST_COLUMNS = ("amount_usd", "created_at", "device_type", "ip_country", "ip_lat", "ip_lon", "has_terminal")
DEVICE_TYPES = ("mobile", "desktop", "tablet", "pos", "unknown")
COUNT_FEATURES = (
    "cust_txn_1h", "cust_txn_24h", "cust_txn_7d", "cust_txn_30d",
    "card_txn_1h", "card_txn_24h", "card_declines_24h", "card_merchants_24h", "card_txn_7d", "card_merchants_7d",
    "ip_txn_24h", "ip_customers_24h", "ip_cards_24h", "cust_ip_txn_30d", "cust_device_txn_30d",
    "merchant_txn_30d", "merchant_disputes_30d", "terminal_txn_30d", "terminal_cards_30d", "terminal_disputes_30d",
    "profile_payments", "card_txn_5m", "cust_txn_5m")
AMOUNT_FEATURES = ("cust_amount_usd_1h", "cust_amount_usd_24h", "cust_amount_usd_7d", "cust_amount_usd_30d",
                   "card_amount_usd_1h", "card_amount_usd_24h", "merchant_amount_usd_30d", "card_amount_usd_5m",
                   "cust_amount_usd_5m")
RATE_FEATURES = ("merchant_refund_rate_30d", "merchant_dispute_rate_30d", "terminal_dispute_rate_30d")
PROFILE_FEATURES = ("usual_country", "usual_lat", "usual_lon")
FEAST_FEATURES = COUNT_FEATURES + AMOUNT_FEATURES + RATE_FEATURES + PROFILE_FEATURES
RAW_COLUMNS = REQUEST_COLUMNS + FEAST_FEATURES
STRING_COLUMNS = ("device_type", "ip_country", "usual_country")

INPUT_COLUMNS = (
    "amount_usd", "log_amount_usd", "hour_utc", "is_weekend", *[f"device_{d}" for d in DEVICE_TYPES], "has_terminal",
    *COUNT_FEATURES, *AMOUNT_FEATURES, *RATE_FEATURES,
    "amount_vs_cust_avg_30d", "new_ip_for_customer", "new_device_for_customer", "country_is_usual",
    "km_from_usual", "has_profile")

EARTH_KM = 6371.0088


def haversine_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    """Great-circle distance in km (NaN when any coordinate is missing)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2
    result: np.ndarray = 2 * EARTH_KM * np.arcsin(np.sqrt(np.clip(a, 0, 1)))
    return result


def _numbers(values: Any, n: int) -> np.ndarray:
    """float64 array of `values` (None / missing -> NaN); a missing column is all NaN."""
    if values is None:
        return np.full(n, np.nan)
    if isinstance(values, np.ndarray) and values.dtype != object:
        return values.astype("float64")
    return np.array([np.nan if v is None else float(v) for v in values], dtype="float64")


def _strings(values: Any, n: int) -> np.ndarray:
    """object array of `values`, every missing value (None, NaN, pandas NA) as None."""
    if values is None:
        return np.full(n, None, dtype=object)
    return np.array([None if v is None or (not isinstance(v, str) and pd.isna(v)) else v for v in values],
                    dtype=object)


def inputs_array(columns: Mapping[str, Any], n: int) -> np.ndarray:
    """The core of the derivation, on columns (name -> n values; a missing name is all missing): an
    (n, len(INPUT_COLUMNS)) float64 matrix. `model_inputs` (frames) and `records_inputs` (dicts) call it."""
    get = columns.get
    out = np.empty((n, len(INPUT_COLUMNS)), dtype="float64")
    col = {name: i for i, name in enumerate(INPUT_COLUMNS)}
    amount = np.nan_to_num(_numbers(get("amount_usd"), n), nan=0.0)
    out[:, col["amount_usd"]] = amount
    out[:, col["log_amount_usd"]] = np.log1p(np.clip(amount, 0, None))
    created = pd.DatetimeIndex(pd.to_datetime(np.asarray(get("created_at"), dtype=object), utc=True))
    out[:, col["hour_utc"]] = created.hour.to_numpy(dtype="float64")
    out[:, col["is_weekend"]] = (created.dayofweek.to_numpy() >= 5).astype("float64")
    device = _strings(get("device_type"), n)
    for d in DEVICE_TYPES:
        out[:, col[f"device_{d}"]] = (np.where(device == None, "unknown", device) == d)  # noqa: E711
    out[:, col["has_terminal"]] = np.nan_to_num(_numbers(get("has_terminal"), n), nan=0.0)
    for name in COUNT_FEATURES + AMOUNT_FEATURES + RATE_FEATURES:
        out[:, col[name]] = np.nan_to_num(_numbers(get(name), n), nan=0.0)
    txn_30d = out[:, col["cust_txn_30d"]]
    with np.errstate(divide="ignore", invalid="ignore"):
        avg_30d = np.where(txn_30d > 0, out[:, col["cust_amount_usd_30d"]] / txn_30d, np.nan)
        ratio = amount / avg_30d
    out[:, col["amount_vs_cust_avg_30d"]] = np.where(np.isfinite(ratio), ratio, 1.0)
    # The windows include the latest earlier payment, not this one: none from this IP / device is "new".
    out[:, col["new_ip_for_customer"]] = out[:, col["cust_ip_txn_30d"]] == 0
    out[:, col["new_device_for_customer"]] = out[:, col["cust_device_txn_30d"]] == 0
    usual = _strings(get("usual_country"), n)
    has_profile = usual != None  # noqa: E711
    same = _strings(get("ip_country"), n) == usual
    out[:, col["country_is_usual"]] = np.where(has_profile, same.astype("float64"), 0.0)
    km = haversine_km(_numbers(get("ip_lat"), n), _numbers(get("ip_lon"), n),
                      _numbers(get("usual_lat"), n), _numbers(get("usual_lon"), n))
    out[:, col["km_from_usual"]] = np.nan_to_num(km, nan=0.0)
    out[:, col["has_profile"]] = has_profile
    return out


def model_inputs(raw: pd.DataFrame) -> pd.DataFrame:
    """RAW_COLUMNS (a column may be missing: a payment with no such feature) -> INPUT_COLUMNS, float64."""
    columns = {c: raw[c].to_numpy() for c in RAW_COLUMNS if c in raw}
    return pd.DataFrame(inputs_array(columns, len(raw)), index=raw.index, columns=list(INPUT_COLUMNS))


def records_inputs(records: list[Mapping[str, Any]]) -> np.ndarray:
    """The same matrix from dicts of raw values (the online path: no DataFrame per call)."""
    columns = {c: [r.get(c) for r in records] for c in RAW_COLUMNS}
    return inputs_array(columns, len(records))


def empty_raw_row() -> dict[str, object]:
    """A raw row with every column missing (a payment no feature knows anything about)."""
    return {c: (None if c in STRING_COLUMNS or c == "created_at" else math.nan) for c in RAW_COLUMNS}
