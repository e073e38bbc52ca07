"""Feature tables: the Feast offline store's sources, Delta tables of the `gold` layer (`gold.feat_*`).

Every row carries `event_ts` (when the values became true) and `created_ts` (when they became known):
Feast's point-in-time join takes, per entity, the latest row with `event_ts <= ` the entity's time and
within the feature view's TTL. Values are DOUBLE or BIGINT (Feast's types; money features are sums of
DECIMAL USD amounts cast once, at the end).

- `feat_payment_windows`: one row per payment, the state of its customer, card, IP, customer x IP and
  customer x device right after it (sliding windows ending at the payment, the payment included).
- `feat_customer_profile`: per customer and day with payments, the usual IP country and location from
  every payment up to the end of that day; known from the next midnight.
- `feat_merchant_daily` / `feat_terminal_daily`: per merchant (terminal) and day, volumes and the
  dispute rate over the 30 days before that midnight, counting only chargebacks opened by then (the
  label delay: a dispute is known when it is opened, not when the fraud happened).
- `feat_card_stream` / `feat_customer_stream`: the streaming features' offline history (what the
  streaming job pushed to the online store, appended here too).
"""

from __future__ import annotations

from lakehouse.common.tables import TableSpec, columns, register

LAYER = "gold"
_TS = "event_ts timestamp not null, created_ts timestamp not null"

PAYMENT_WINDOWS = TableSpec(LAYER, "feat_payment_windows", columns(
    f"charge_id bigint not null, {_TS}, customer_id bigint not null, payment_method_id bigint not null, "
    "merchant_id bigint not null, ip_pseudo string, device_type string, "
    "cust_txn_1h bigint, cust_amount_usd_1h double, cust_txn_24h bigint, cust_amount_usd_24h double, "
    "cust_txn_7d bigint, cust_amount_usd_7d double, cust_txn_30d bigint, cust_amount_usd_30d double, "
    "card_txn_1h bigint, card_amount_usd_1h double, card_txn_24h bigint, card_amount_usd_24h double, "
    "card_declines_24h bigint, card_merchants_24h bigint, card_txn_7d bigint, card_merchants_7d bigint, "
    "ip_txn_24h bigint, ip_customers_24h bigint, ip_cards_24h bigint, "
    "cust_ip_txn_30d bigint, cust_device_txn_30d bigint"),
    "Sliding-window features per payment: the customer's, card's, IP's, customer x IP's and customer x "
    "device's payments (and USD amounts) in the window ending at the payment, the payment included. "
    "Grain: one row per payment attempt; event_ts = created_ts = the payment's time.")

CUSTOMER_PROFILE = TableSpec(LAYER, "feat_customer_profile", columns(
    f"customer_id bigint not null, {_TS}, usual_country string, usual_lat double, usual_lon double, "
    "profile_payments bigint"),
    "The customer's usual IP country (the most frequent; ties to the smaller code) and mean IP location "
    "over every payment up to the end of a day. Grain: one row per customer and day with payments; "
    "event_ts = the next midnight (UTC).")

MERCHANT_DAILY = TableSpec(LAYER, "feat_merchant_daily", columns(
    f"merchant_id bigint not null, {_TS}, merchant_txn_30d bigint, merchant_amount_usd_30d double, "
    "merchant_refund_rate_30d double, merchant_disputes_30d bigint, merchant_dispute_rate_30d double"),
    "Merchant risk as known at a midnight: payments, refunds and chargebacks opened in the 30 days before "
    "it (a chargeback counts from the day it was opened: the label delay). Grain: one row per merchant "
    "and day from its first payment to the day after the last; event_ts = that midnight (UTC).")

TERMINAL_DAILY = TableSpec(LAYER, "feat_terminal_daily", columns(
    f"terminal_id bigint not null, {_TS}, terminal_txn_30d bigint, terminal_cards_30d bigint, "
    "terminal_disputes_30d bigint, terminal_dispute_rate_30d double"),
    "Terminal risk as known at a midnight: payments, distinct cards and chargebacks opened in the 30 days "
    "before it. Grain: one row per terminal and day from its first payment to the day after the last.")

CARD_STREAM = TableSpec(LAYER, "feat_card_stream", columns(
    f"payment_method_id bigint not null, {_TS}, card_txn_5m bigint, card_amount_usd_5m double"),
    "Streaming card features as pushed to the online store: payments and USD amount in the 5 minutes up "
    "to the card's latest payment of a micro-batch. Grain: one row per card and micro-batch.")

CUSTOMER_STREAM = TableSpec(LAYER, "feat_customer_stream", columns(
    f"customer_id bigint not null, {_TS}, cust_txn_5m bigint, cust_amount_usd_5m double"),
    "Streaming customer features as pushed to the online store (5-minute window). Grain: one row per "
    "customer and micro-batch.")

BATCH_FEATURE_TABLES = (PAYMENT_WINDOWS, CUSTOMER_PROFILE, MERCHANT_DAILY, TERMINAL_DAILY)
STREAM_FEATURE_TABLES = (CARD_STREAM, CUSTOMER_STREAM)
FEATURE_TABLES = BATCH_FEATURE_TABLES + STREAM_FEATURE_TABLES

register(*FEATURE_TABLES)
