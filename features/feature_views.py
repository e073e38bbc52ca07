"""Feature views: which columns of which source describe which entity, and for how long a value holds.

A view's TTL is its window: a customer's 1-hour count from a payment 3 hours ago is no 1-hour count now,
so the view gives nothing (read as 0) once its row is older than the window. lakehouse.features.online
applies the same TTL to online reads (Redis keeps the latest value whatever its age).
"""

from datetime import timedelta

from feast import FeatureView, Field
from feast.types import Float64, Int64, String

from features.data_sources import (
    card_stream_push,
    customer_profile_source,
    customer_stream_push,
    merchant_daily_source,
    payment_windows_source,
    terminal_daily_source,
)
from features.entities import card, customer, device, ip, merchant, terminal


def _view(name: str, entities: list, ttl: timedelta, source, fields: dict, description: str) -> FeatureView:
    return FeatureView(name=name, entities=entities, ttl=ttl, source=source, online=True,
                       schema=[Field(name=n, dtype=t) for n, t in fields.items()], description=description)


def _windowed(entity, prefix: str, window: str, ttl: timedelta, extra: dict | None = None) -> FeatureView:
    fields = {f"{prefix}_txn_{window}": Int64, f"{prefix}_amount_usd_{window}": Float64, **(extra or {})}
    return _view(f"{entity.name}_{window}_fv", [entity], ttl, payment_windows_source, fields,
                 f"The {entity.name}'s payments and USD amount in the {window} up to its latest payment.")


customer_1h_fv = _windowed(customer, "cust", "1h", timedelta(hours=1))
customer_24h_fv = _windowed(customer, "cust", "24h", timedelta(days=1))
customer_7d_fv = _windowed(customer, "cust", "7d", timedelta(days=7))
customer_30d_fv = _windowed(customer, "cust", "30d", timedelta(days=30))

card_1h_fv = _windowed(card, "card", "1h", timedelta(hours=1))
card_24h_fv = _windowed(card, "card", "24h", timedelta(days=1),
                        {"card_declines_24h": Int64, "card_merchants_24h": Int64})
card_7d_fv = _view("card_7d_fv", [card], timedelta(days=7), payment_windows_source,
                   {"card_txn_7d": Int64, "card_merchants_7d": Int64},
                   "The card's payments and distinct merchants in the 7 days up to its latest payment.")

ip_24h_fv = _view("ip_24h_fv", [ip], timedelta(days=1), payment_windows_source,
                  {"ip_txn_24h": Int64, "ip_customers_24h": Int64, "ip_cards_24h": Int64},
                  "Payments, distinct customers and distinct cards from the IP in the 24 h up to its latest payment.")
customer_ip_30d_fv = _view("customer_ip_30d_fv", [customer, ip], timedelta(days=30), payment_windows_source,
                           {"cust_ip_txn_30d": Int64},
                           "The customer's payments from this IP in 30 days: none means a new IP (novelty).")
customer_device_30d_fv = _view("customer_device_30d_fv", [customer, device], timedelta(days=30),
                               payment_windows_source, {"cust_device_txn_30d": Int64},
                               "The customer's payments from this device type in 30 days: none means new.")

customer_profile_fv = _view("customer_profile_fv", [customer], timedelta(days=400), customer_profile_source,
                            {"usual_country": String, "usual_lat": Float64, "usual_lon": Float64,
                             "profile_payments": Int64},
                            "The customer's usual IP country and location up to the last complete day.")
merchant_30d_fv = _view("merchant_30d_fv", [merchant], timedelta(days=2), merchant_daily_source,
                        {"merchant_txn_30d": Int64, "merchant_amount_usd_30d": Float64,
                         "merchant_refund_rate_30d": Float64, "merchant_disputes_30d": Int64,
                         "merchant_dispute_rate_30d": Float64},
                        "Merchant risk over the 30 days before midnight, chargebacks as known then (label delay).")
terminal_30d_fv = _view("terminal_30d_fv", [terminal], timedelta(days=2), terminal_daily_source,
                        {"terminal_txn_30d": Int64, "terminal_cards_30d": Int64, "terminal_disputes_30d": Int64,
                         "terminal_dispute_rate_30d": Float64},
                        "Terminal risk over the 30 days before midnight, chargebacks as known then (label delay).")

card_5m_stream_fv = _view("card_5m_stream_fv", [card], timedelta(minutes=5), card_stream_push,
                          {"card_txn_5m": Int64, "card_amount_usd_5m": Float64},
                          "Streaming: the card's payments and USD amount in the 5 minutes up to its latest payment.")
customer_5m_stream_fv = _view("customer_5m_stream_fv", [customer], timedelta(minutes=5), customer_stream_push,
                              {"cust_txn_5m": Int64, "cust_amount_usd_5m": Float64},
                              "Streaming: the customer's payments and USD amount in the last 5 minutes.")

BATCH_VIEWS = [customer_1h_fv, customer_24h_fv, customer_7d_fv, customer_30d_fv, card_1h_fv, card_24h_fv,
               card_7d_fv, ip_24h_fv, customer_ip_30d_fv, customer_device_30d_fv, customer_profile_fv,
               merchant_30d_fv, terminal_30d_fv]
STREAM_VIEWS = [card_5m_stream_fv, customer_5m_stream_fv]
