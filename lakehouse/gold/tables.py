"""Tables of the `gold` layer: the star schema (dimensions, facts) and the pre-aggregated tables.

Every table's comment states its grain. Keys:

- SCD2 dimensions (merchant, customer) have a surrogate key (`<x>_sk`), a hash of the natural key and
  the version's source sequence: the same silver history gives the same keys, so a rebuild from
  scratch and an incremental refresh agree row for row. A fact points at the version in effect at its
  event time.
- The other dimensions are keyed by their natural key (`payment_method_id`, `country_code`, ...).
- Every dimension has an "unknown" member (key `UNKNOWN_SK` = -1, country `UNKNOWN_COUNTRY` = "ZZ")
  that a fact points to while its member has not arrived in silver yet; the next refresh repoints it.
- Facts keep the natural keys too (degenerate dimensions), so the fix-up needs no other lookup.

Physical design (docs/olap/README.md): facts and the daily aggregates are liquid-clustered by date
then merchant, the columns almost every query filters on; the small dimensions are neither
partitioned nor clustered (one file each).
"""

from __future__ import annotations

from lakehouse.common.tables import TableSpec, columns, register

LAYER = "gold"
UNKNOWN_SK = -1
UNKNOWN_COUNTRY = "ZZ"
_CDF = {"delta.enableChangeDataFeed": "true"}
# Deletion vectors: a MERGE, DELETE or replaceWhere that changes a few rows of a file marks them deleted
# instead of rewriting the file, so an incremental refresh writes what changed, not the files it touches.
_DV = {"delta.enableDeletionVectors": "true"}

_MONEY = "decimal(23,4)"      # an amount in its own currency (silver's conformed DECIMAL)
_USD = "decimal(25,2)"        # one amount in USD
_USD_SUM = "decimal(38,2)"    # a sum of USD amounts


def _money(*names: str) -> str:
    return ", ".join(f"{n} {_MONEY}, {n}_usd {_USD}" for n in names)


DIM_DATE = TableSpec(LAYER, "dim_date", columns(
    "date_key int not null, date date not null, year int, quarter int, month int, month_name string, "
    "week_start date, iso_week int, day_of_month int, day_of_week int, day_name string, is_weekend boolean, "
    "month_start date"),
    "Calendar. Grain: one row per day from the first to the last day any fact has. `date_key` is yyyymmdd; "
    "weeks start on Monday (ISO).")

DIM_TIME = TableSpec(LAYER, "dim_time", columns(
    "time_key int not null, hour int, minute int, day_part string"),
    "Time of day. Grain: one row per minute of the day (1,440 rows); `time_key` is hhmm (UTC).")

DIM_MERCHANT = TableSpec(LAYER, "dim_merchant", columns(
    "merchant_sk bigint not null, merchant_id bigint, name string, status string, country_code string, "
    "region_code string, mcc string, mcc_description string, mcc_risk_level string, default_currency string, "
    "created_at timestamp, effective_from timestamp, effective_to timestamp, is_current boolean"),
    "Merchants, SCD type 2. Grain: one row per version of a merchant (silver.merchants' history) plus the "
    "unknown member (merchant_sk -1). A version is in effect in [effective_from, effective_to); the first "
    "version of a merchant reaches back to 1900-01-01, so that history loaded before its first capture "
    "finds it.")

DIM_CUSTOMER = TableSpec(LAYER, "dim_customer", columns(
    "customer_sk bigint not null, customer_id bigint, email_pseudo string, country_code string, "
    "region_code string, created_at timestamp, effective_from timestamp, effective_to timestamp, "
    "is_current boolean"),
    "Customers, SCD type 2, pseudonymized: no name, e-mail or phone, only the keyed-hash pseudonym of the "
    "e-mail (count and join people without seeing them). Grain: one row per version plus the unknown member "
    "(customer_sk -1); effective ranges as in dim_merchant.")

DIM_PAYMENT_METHOD = TableSpec(LAYER, "dim_payment_method", columns(
    "payment_method_id bigint not null, customer_id bigint, kind string, status string, card_brand string, "
    "card_bin string, card_last4 string, bin_country string, created_at timestamp"),
    "Payment methods, current state (type 1), cards with brand, BIN, last 4 and the BIN's issuing country "
    "(never the card number). Grain: one row per payment method plus the unknown member (-1).")

DIM_GEOGRAPHY = TableSpec(LAYER, "dim_geography", columns(
    "country_code string not null, country_name string, alpha3 string, region_code string, region_name string, "
    "currency_code string"),
    "Countries with their region. Grain: one row per country plus the unknown member (ZZ).")

DIM_CURRENCY = TableSpec(LAYER, "dim_currency", columns(
    "currency_code string not null, name string, minor_unit int"),
    "Currencies (ISO 4217). Grain: one row per currency.")

DIM_DEVICE = TableSpec(LAYER, "dim_device", columns(
    "device_type string not null, channel string"),
    "Device types of payments (the OLTP's closed list) and their channel (online / in person). Grain: one "
    "row per device type.")

DIM_PLAN = TableSpec(LAYER, "dim_plan", columns(
    "plan_id bigint not null, plan_name string, billing_interval string, amount decimal(23,4), "
    "currency_code string, monthly_amount decimal(23,4), active boolean, product_id bigint, product_name string, "
    "product_category string, merchant_id bigint"),
    "Subscription plans with their product. `monthly_amount` is the plan's price per month (a yearly "
    "price / 12). Grain: one row per plan plus the unknown member (-1).")

FACT_PAYMENTS = TableSpec(LAYER, "fact_payments", columns(
    "charge_id bigint not null, created_at timestamp not null, date_key int not null, time_key int not null, "
    "merchant_id bigint, merchant_sk bigint not null, customer_id bigint, customer_sk bigint not null, "
    "payment_method_id bigint, payment_method_key bigint not null, payment_method_kind string, "
    "card_brand string, bin_country string, country_code string not null, device_type string, "
    "currency_code string, status string, failure_code string, "
    f"{_money('amount', 'captured_amount', 'refunded_amount')}, risk_score decimal(5,4), "
    "is_fraud boolean, fraud_scenario string, disputed boolean, updated_at timestamp"),
    "Payments. Grain: one row per payment attempt (OLTP charge), in its current state. Amounts in the "
    "original currency and in USD at the FX rate of the payment's day. `country_code` is the payer's IP "
    "country (ZZ when unknown). `is_fraud` is the fraud label when one is known (NULL: no label yet). "
    "`disputed`: a chargeback was opened.",
    properties={**_CDF, **_DV}, cluster_by=("date_key", "merchant_id"))

FACT_REFUNDS = TableSpec(LAYER, "fact_refunds", columns(
    "refund_id bigint not null, charge_id bigint, created_at timestamp not null, date_key int not null, "
    "merchant_id bigint, merchant_sk bigint not null, currency_code string, "
    f"{_money('amount')}, reason string, status string"),
    "Refunds. Grain: one row per refund, in its current state; the merchant is the refunded payment's.",
    properties={**_CDF, **_DV}, cluster_by=("date_key", "merchant_id"))

FACT_DISPUTES = TableSpec(LAYER, "fact_disputes", columns(
    "dispute_id bigint not null, charge_id bigint, opened_at timestamp not null, date_key int not null, "
    "closed_at timestamp, merchant_id bigint, merchant_sk bigint not null, currency_code string, "
    f"{_money('amount')}, reason string, status string"),
    "Disputes (chargebacks). Grain: one row per dispute, in its current state, dated by when it was opened.",
    properties={**_CDF, **_DV}, cluster_by=("date_key", "merchant_id"))

FACT_BALANCE = TableSpec(LAYER, "fact_balance_movements", columns(
    "txn_id bigint not null, created_at timestamp not null, date_key int not null, merchant_id bigint, "
    "merchant_sk bigint not null, kind string, charge_id bigint, refund_id bigint, dispute_id bigint, "
    f"currency_code string, {_money('amount', 'fee', 'net')}"),
    "The merchants' ledger. Grain: one row per balance transaction (charge, refund, dispute, dispute_won); "
    "amounts are signed as in the OLTP ledger (debits negative), net = amount - fee.",
    properties={**_CDF, **_DV}, cluster_by=("date_key", "merchant_id"))

FACT_SUBSCRIPTION_EVENTS = TableSpec(LAYER, "fact_subscription_events", columns(
    "subscription_id bigint not null, event_type string not null, event_at timestamp not null, "
    "date_key int not null, customer_id bigint, customer_sk bigint not null, plan_id bigint, merchant_id bigint, "
    f"invoice_id bigint, currency_code string, {_money('amount')}"),
    "Subscription lifecycle. Grain: one row per event of a subscription: `started` (created), "
    "`invoice_paid` (with the invoice's amount), `canceled`.",
    properties={**_CDF, **_DV}, cluster_by=("date_key",))

_REVENUE = (f"payments bigint, gross_usd {_USD_SUM}, refunds_usd {_USD_SUM}, disputes_usd {_USD_SUM}, "
            f"fees_usd {_USD_SUM}, net_usd {_USD_SUM}, net decimal(38,4)")
_REVENUE_DIMS = ("merchant_id bigint not null, country_code string not null, currency_code string not null, "
                 "payment_method_kind string not null")
_REVENUE_DOC = ("Revenue from the ledger: gross (charges), refunds, disputes (net of disputes won), fees and "
                "net, in USD (each entry converted at its own day's rate), and net in the original currency. "
                "`country_code` is the merchant's; `payments` counts charge entries. Grain: one row per {grain} "
                "x merchant x country x currency x payment method kind.")

AGG_REVENUE_DAILY = TableSpec(LAYER, "agg_revenue_daily", columns(
    f"date date not null, {_REVENUE_DIMS}, {_REVENUE}"), _REVENUE_DOC.format(grain="day"),
    properties=_DV, cluster_by=("date", "merchant_id"))
AGG_REVENUE_WEEKLY = TableSpec(LAYER, "agg_revenue_weekly", columns(
    f"week_start date not null, {_REVENUE_DIMS}, {_REVENUE}"), _REVENUE_DOC.format(grain="ISO week"))
AGG_REVENUE_MONTHLY = TableSpec(LAYER, "agg_revenue_monthly", columns(
    f"month_start date not null, {_REVENUE_DIMS}, {_REVENUE}"), _REVENUE_DOC.format(grain="month"))

AGG_FRAUD_DAILY = TableSpec(LAYER, "agg_fraud_daily", columns(
    "date date not null, hour int not null, merchant_id bigint not null, mcc string not null, "
    "country_code string not null, device_type string not null, bin_country string not null, "
    f"payments bigint, amount_usd {_USD_SUM}, fraud_payments bigint, fraud_amount_usd {_USD_SUM}, "
    f"disputed_payments bigint, disputed_amount_usd {_USD_SUM}"),
    "Fraud and disputes by payment day x hour x merchant x MCC x payer country x device x BIN country: "
    "payments, labelled fraud and disputed payments (counts and USD amounts). Rates are ratios of these "
    "sums (queries/fraud_rates.sql).", properties=_DV, cluster_by=("date", "merchant_id"))

FRAUD_DIMENSIONS = ("device", "country", "hour", "bin_country", "merchant", "mcc")
AGG_FRAUD_DIMENSION_DAILY = TableSpec(LAYER, "agg_fraud_dimension_daily", columns(
    "date date not null, dimension string not null, value string not null, "
    f"payments bigint, amount_usd {_USD_SUM}, fraud_payments bigint, fraud_amount_usd {_USD_SUM}, "
    f"disputed_payments bigint, disputed_amount_usd {_USD_SUM}"),
    "agg_fraud_daily rolled up to one dimension at a time: `dimension` is device, country (payer IP), hour "
    "(two digits), bin_country, merchant (its id) or mcc, `value` its value. Grain: one row per day x "
    "dimension x value; a few hundred rows a day, so a rate by one dimension reads no more.",
    properties=_DV, cluster_by=("dimension", "date"))

AGG_CUSTOMER_MONTHLY = TableSpec(LAYER, "agg_customer_monthly", columns(
    "month_start date not null, customer_id bigint not null, payments bigint, "
    f"amount_usd {_USD_SUM}, first_payment_date date, last_payment_date date"),
    "Captured payments per customer and month: count, captured amount in USD, first and last payment day. "
    "Grain: one row per month x customer with a captured payment. Cohorts (queries/cohort_retention.sql) "
    "and RFM (agg_customer_rfm) are computed from it.", properties=_DV, cluster_by=("month_start",))

SMALL_PAYMENT_MAX_USD = 10     # card testing probes with a few dollars (queries/card_testing.sql)
AGG_SMALL_PAYMENTS = TableSpec(LAYER, "agg_small_payments", columns(
    "date date not null, charge_id bigint not null, created_at timestamp not null, customer_id bigint, "
    f"merchant_id bigint, status string, amount_usd {_USD}"),
    f"The payments of at most {SMALL_PAYMENT_MAX_USD} USD (fact_payments' columns the card-testing pattern "
    "needs; about 1 payment in 10): a filtered projection, not a sum. Grain: one row per payment attempt of "
    f"amount_usd <= {SMALL_PAYMENT_MAX_USD}.", properties=_DV, cluster_by=("date",))

AGG_CUSTOMER_RFM = TableSpec(LAYER, "agg_customer_rfm", columns(
    "customer_id bigint not null, as_of date not null, last_payment_date date, recency_days int, "
    f"frequency bigint, monetary_usd {_USD_SUM}, r_score int, f_score int, m_score int, segment string"),
    "Customer segmentation (RFM) over captured payments as of the last day with payments: recency, "
    "frequency, monetary value in USD, 1-5 quintile scores (5 best) and the segment they give. Grain: one "
    "row per customer with at least one captured payment.")

AGG_PLAN_MONTHLY = TableSpec(LAYER, "agg_plan_monthly", columns(
    "month_start date not null, plan_id bigint not null, merchant_id bigint, active_start bigint, "
    f"new_subscriptions bigint, churned bigint, active_end bigint, mrr_usd {_USD_SUM}, "
    f"invoices_paid bigint, invoiced_usd {_USD_SUM}"),
    "Plan performance per month: subscriptions active at the start, new, churned (canceled in the month), "
    "active at the end, MRR in USD of those active at the end (plan price per month at the month's last "
    "FX rate) and the invoices paid. Grain: one row per month x plan.")

AGG_COMPLIANCE_DAILY = TableSpec(LAYER, "agg_compliance_daily", columns(
    "date date not null, table string not null, checks bigint, failed_checks bigint, rows_checked bigint, "
    "unexpected_rows bigint, quarantined_rows bigint"),
    "Data quality per day x silver table: expectation runs and failures (silver.dq_results) and rows "
    "quarantined (silver.quarantine_*). Grain: one row per day x table with any check or quarantine.")

DIMENSIONS = (DIM_DATE, DIM_TIME, DIM_MERCHANT, DIM_CUSTOMER, DIM_PAYMENT_METHOD, DIM_GEOGRAPHY, DIM_CURRENCY,
              DIM_DEVICE, DIM_PLAN)
FACTS = (FACT_PAYMENTS, FACT_REFUNDS, FACT_DISPUTES, FACT_BALANCE, FACT_SUBSCRIPTION_EVENTS)
AGGREGATES = (AGG_REVENUE_DAILY, AGG_REVENUE_WEEKLY, AGG_REVENUE_MONTHLY, AGG_FRAUD_DAILY, AGG_FRAUD_DIMENSION_DAILY,
              AGG_CUSTOMER_MONTHLY, AGG_SMALL_PAYMENTS, AGG_CUSTOMER_RFM, AGG_PLAN_MONTHLY, AGG_COMPLIANCE_DAILY)
GOLD_TABLES = DIMENSIONS + FACTS + AGGREGATES

register(*GOLD_TABLES)
