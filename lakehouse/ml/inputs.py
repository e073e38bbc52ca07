"""What a fraud model is fed (pure, pandas): a payment's own fields and its Feast features -> the model's
numeric input columns, in a fixed order.

Every scoring path (batch through `spark_udf`, streaming, online) hands the model the same raw columns
(`RAW_COLUMNS`) and the model derives its inputs with `model_inputs` inside its `predict`, so the
derivation cannot differ between training and any path. Missing window counts mean "no payment in the
window" (0); a missing usual country or location stays missing (NaN: the tree model routes it, the
logistic baseline imputes it).
"""

from __future__ import annotations

import math

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


def haversine_km(lat1: pd.Series, lon1: pd.Series, lat2: pd.Series, lon2: pd.Series) -> pd.Series:
    """Great-circle distance in km (NaN when any coordinate is missing)."""
    p1, p2 = np.radians(lat1.astype(float)), np.radians(lat2.astype(float))
    dlat = p2 - p1
    dlon = np.radians(lon2.astype(float) - lon1.astype(float))
    a = np.sin(dlat / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    return pd.Series(2 * EARTH_KM * np.arcsin(np.sqrt(a.clip(0, 1))), index=lat1.index)


def _number(frame: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(frame[name], errors="coerce").astype("float64") if name in frame else pd.Series(
        np.nan, index=frame.index, dtype="float64")


def model_inputs(raw: pd.DataFrame) -> pd.DataFrame:
    """RAW_COLUMNS (a column may be missing: a payment with no such feature) -> INPUT_COLUMNS, float64."""
    out = pd.DataFrame(index=raw.index)
    amount = _number(raw, "amount_usd").fillna(0.0)
    created = pd.to_datetime(raw["created_at"], utc=True)
    out["amount_usd"] = amount
    out["log_amount_usd"] = np.log1p(amount.clip(lower=0))
    out["hour_utc"] = created.dt.hour.astype("float64")
    out["is_weekend"] = (created.dt.dayofweek >= 5).astype("float64")
    device = raw["device_type"].fillna("unknown").astype(str)
    for d in DEVICE_TYPES:
        out[f"device_{d}"] = (device == d).astype("float64")
    out["has_terminal"] = _number(raw, "has_terminal").fillna(0.0)
    for name in COUNT_FEATURES + AMOUNT_FEATURES + RATE_FEATURES:
        out[name] = _number(raw, name).fillna(0.0)
    avg_30d = out["cust_amount_usd_30d"] / out["cust_txn_30d"].where(out["cust_txn_30d"] > 0)
    out["amount_vs_cust_avg_30d"] = (amount / avg_30d).fillna(1.0)
    # The windows include the latest earlier payment, not this one: none from this IP / device is "new".
    out["new_ip_for_customer"] = (out["cust_ip_txn_30d"] == 0).astype("float64")
    out["new_device_for_customer"] = (out["cust_device_txn_30d"] == 0).astype("float64")
    usual = raw["usual_country"] if "usual_country" in raw else pd.Series(None, index=raw.index, dtype=object)
    has_profile = usual.notna()
    out["country_is_usual"] = np.where(has_profile, (raw["ip_country"] == usual).astype("float64"), np.nan)
    out["km_from_usual"] = haversine_km(_number(raw, "ip_lat"), _number(raw, "ip_lon"),
                                        _number(raw, "usual_lat"), _number(raw, "usual_lon"))
    out["has_profile"] = has_profile.astype("float64")
    return out[list(INPUT_COLUMNS)].astype("float64")


def empty_raw_row() -> dict[str, object]:
    """A raw row with every column missing (a payment no feature knows anything about)."""
    return {c: (None if c in STRING_COLUMNS or c == "created_at" else math.nan) for c in RAW_COLUMNS}
