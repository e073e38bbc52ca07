"""Reading features the way the models see them, online (Redis) and offline (point in time).

One payment's entity keys (`entity_keys`) name its customer, card, merchant, terminal, device type and
IP pseudonym; a missing terminal or IP gets a sentinel that matches no row, so both stores answer
"nothing" for it. Online, Redis keeps a view's latest value whatever its age; `online_features` drops a
value older than its view's TTL at the payment's time, as Feast's point-in-time join does offline, so
the two agree (the skew check measures that they do).
"""

from __future__ import annotations

import datetime as dt
import functools
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from lakehouse.features.store import FEATURE_SERVICE, feast_call, feature_views

NO_TERMINAL = -1
NO_IP = "none"
KEY_COLUMNS = ("customer_id", "payment_method_id", "merchant_id", "terminal_id", "device_type", "ip_pseudo")


def entity_keys(payment: Mapping[str, Any]) -> dict[str, Any]:
    """The Feast join keys of a payment (`customer_id`, `payment_method_id`, `merchant_id`, `terminal_id`,
    `device_type`, `ip_pseudo`), sentinels for a missing terminal or IP."""
    return {"customer_id": int(payment["customer_id"]), "payment_method_id": int(payment["payment_method_id"]),
            "merchant_id": int(payment["merchant_id"]),
            "terminal_id": NO_TERMINAL if payment.get("terminal_id") is None else int(payment["terminal_id"]),
            "device_type": payment.get("device_type") or "unknown",
            "ip_pseudo": payment.get("ip_pseudo") or NO_IP}


@functools.cache
def feature_ttls() -> dict[str, float]:
    """Feature name -> its view's TTL in seconds (feature names are unique across the repo's views)."""
    out: dict[str, float] = {}
    for view in feature_views():
        for f in view.features:
            if f.name in out:
                raise ValueError(f"feature {f.name} is defined by two views; names must be unique")
            out[f.name] = view.ttl.total_seconds()
    return out


def service_features(store: Any, service: str = FEATURE_SERVICE) -> list[str]:
    """The feature names of a feature service, in its views' order."""
    with feast_call():
        fs = store.get_feature_service(service)
    return [f.name for projection in fs.feature_view_projections for f in projection.features]


def online_features(store: Any, payments: Sequence[Mapping[str, Any]], at: Sequence[dt.datetime],
                    service: Any = FEATURE_SERVICE) -> list[dict[str, Any]]:
    """The service's features (a name, or the FeatureService object a caller holds) of each payment from
    the online store, as of `at[i]` (UTC): a value older than its view's TTL at that time, or missing, is None."""
    ttls = feature_ttls()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        features = store.get_feature_service(service) if isinstance(service, str) else service
        response = store.get_online_features(features=features, entity_rows=[entity_keys(p) for p in payments])
    values = response.to_dict(include_event_timestamps=True)
    names = [n for n in values if n in ttls]
    out = []
    for i, when in enumerate(at):
        epoch = when.replace(tzinfo=dt.UTC).timestamp() if when.tzinfo is None else when.timestamp()
        row: dict[str, Any] = {}
        for name in names:
            ts = values[f"{name}__ts"][i]
            fresh = ts and 0 <= epoch - ts <= ttls[name]
            row[name] = values[name][i] if fresh else None
        out.append(row)
    return out
