"""The expectation suite of every silver table, keyed by silver table name (`SUITES`).

Silver tables are named after the OLTP tables (migrations V001-V003): `payments.<t>` -> `<t>`,
`ref.<t>` -> `ref_<t>`, `labels.fraud_ground_truth` -> `fraud_ground_truth`. The rules restate the
database's own constraints (NOT NULL keys, CHECK lists and ranges, row-level CHECKs between two
columns), so in practice they catch what the path from PostgreSQL to silver could break: a type
conversion, a column mapping, a replay of something malformed. Plaintext PII columns never reach
silver (customers.email / full_name / phone and charges.ip_address arrive encrypted and
pseudonymised), so no check names them.

Severity `error` quarantines the failing rows; `warn` only records the count in `silver.dq_results`.
The cross-table checks (a referenced party exists, a refund is within its charge's captured amount)
are `warn`: bronze writes its tables in parallel, so a child row can reach silver one micro-batch
before its parent and a missing parent is not yet bad data (docs/quality.md).
"""

from __future__ import annotations

from lakehouse.quality.checks import (
    CURRENCIES,
    WARN,
    Check,
    Lookup,
    Suite,
    between,
    greater_than_column,
    in_set,
    matches,
    not_null,
    reference_exists,
)
from lakehouse.silver.tables import silver_name

# The CHECK lists of the migrations.
CHARGE_STATUSES = ("pending", "authorized", "captured", "failed", "canceled")
REFUND_STATUSES = ("pending", "succeeded", "failed")
REFUND_REASONS = ("requested_by_customer", "duplicate", "fraudulent", "other")
DISPUTE_STATUSES = ("needs_response", "under_review", "won", "lost")
DISPUTE_REASONS = ("fraudulent", "product_not_received", "duplicate", "subscription_canceled", "unrecognized", "other")
SUBSCRIPTION_STATUSES = ("active", "past_due", "canceled")
INVOICE_STATUSES = ("open", "paid", "void", "uncollectible")
MERCHANT_STATUSES = ("active", "suspended", "closed")
PAYMENT_METHOD_STATUSES = ("active", "detached", "expired")
PAYMENT_METHOD_KINDS = ("card", "wallet", "bank_debit")
DEVICE_TYPES = ("mobile", "desktop", "tablet", "pos", "unknown")
TERMINAL_KINDS = ("pos", "ecommerce", "in_app")
CARD_BRANDS = ("visa", "mastercard", "amex", "discover", "jcb", "unionpay", "other")
WALLET_PROVIDERS = ("apple_pay", "google_pay", "paypal")
DEBIT_SCHEMES = ("sepa", "ach", "bacs")
BILLING_INTERVALS = ("month", "year")
LEDGER_KINDS = ("charge", "refund", "dispute", "dispute_won")
RISK_LEVELS = ("low", "medium", "high")
FRAUD_SCENARIOS = ("card_testing", "account_takeover", "compromised_terminal", "friendly_fraud", "imported")
LABEL_SOURCES = ("simulator", "import")
IMPORT_FORMATS = ("csv", "parquet")

_POSITIVE = "CHECK (x > 0) in the migration"
_CURRENCY = "REFERENCES ref.currencies"

# Lookups into parent tables (the caller passes the parent rows; see validate.QualityParams.parents).
CHARGE_MERCHANT = Lookup("merchants", (("merchant_id", "merchant_id"),))
CHARGE_CUSTOMER = Lookup("customers", (("customer_id", "customer_id"),))
CHARGE_METHOD = Lookup("payment_methods", (("payment_method_id", "payment_method_id"),))
CHARGE_OF = Lookup("charges", (("charge_id", "charge_id"), ("charge_created_at", "created_at")),
                   values=("captured_amount_minor",))


def _within_captured(what: str) -> Check:
    label = f"expect_{what}_within_captured_amount(amount_minor <= charges.captured_amount_minor)"
    return greater_than_column(CHARGE_OF.value_column("captured_amount_minor"), "amount_minor", or_equal=True,
                               severity=WARN, label=label,
                               why="the charge may arrive later; checked only when it is there")


_SUITES = (
    # ---------------------------------------------------------------- reference data
    Suite("ref_regions", "ref.regions", ("region_code",), (
        *not_null("region_code", "name"),
        matches("region_code", r"^[A-Z]{2,6}$"))),
    Suite("ref_currencies", "ref.currencies", ("currency_code",), (
        *not_null("currency_code", "name", "minor_unit"),
        matches("currency_code", r"^[A-Z]{3}$", why="ISO 4217"),
        between("minor_unit", 0, 4))),
    Suite("ref_countries", "ref.countries", ("country_code",), (
        *not_null("country_code", "alpha3", "name", "region_code", "currency_code"),
        matches("country_code", r"^[A-Z]{2}$", why="ISO 3166-1 alpha-2"),
        matches("alpha3", r"^[A-Z]{3}$"),
        in_set("currency_code", CURRENCIES, why=_CURRENCY))),
    Suite("ref_fx_rates", "ref.fx_rates", ("currency_code", "rate_date"), (
        *not_null("currency_code", "rate_date", "usd_per_unit"),
        in_set("currency_code", CURRENCIES, why=_CURRENCY),
        between("usd_per_unit", 0, strict_min=True, why=_POSITIVE))),
    Suite("ref_merchant_categories", "ref.merchant_categories", ("mcc",), (
        *not_null("mcc", "description", "risk_level"),
        matches("mcc", r"^[0-9]{4}$", why="ISO 18245"),
        in_set("risk_level", RISK_LEVELS))),
    Suite("ref_ip_networks", "ref.ip_networks", ("network",), (
        *not_null("network", "country_code", "latitude", "longitude"),
        between("latitude", -90, 90),
        between("longitude", -180, 180))),
    # ---------------------------------------------------------------- parties
    Suite("merchants", "payments.merchants", ("merchant_id",), (
        *not_null("merchant_id", "name", "country_code", "mcc", "default_currency", "status", "created_at"),
        in_set("default_currency", CURRENCIES, why=_CURRENCY),
        in_set("status", MERCHANT_STATUSES))),
    Suite("terminals", "payments.terminals", ("terminal_id",), (
        *not_null("terminal_id", "merchant_id", "kind"),
        in_set("kind", TERMINAL_KINDS))),
    Suite("customers", "payments.customers", ("customer_id",), (
        *not_null("customer_id", "country_code", "created_at"),)),
    Suite("products", "payments.products", ("product_id",), (
        *not_null("product_id", "merchant_id", "name"),)),
    Suite("plans", "payments.plans", ("plan_id",), (
        *not_null("plan_id", "product_id", "amount_minor", "currency_code", "billing_interval"),
        between("amount_minor", 0, strict_min=True, why=_POSITIVE),
        in_set("currency_code", CURRENCIES, why=_CURRENCY),
        in_set("billing_interval", BILLING_INTERVALS))),
    Suite("payment_methods", "payments.payment_methods", ("payment_method_id",), (
        *not_null("payment_method_id", "customer_id", "kind", "status"),
        in_set("kind", PAYMENT_METHOD_KINDS),
        in_set("status", PAYMENT_METHOD_STATUSES))),
    Suite("cards", "payments.cards", ("payment_method_id",), (
        *not_null("payment_method_id", "token", "brand", "bin", "last4", "fingerprint"),
        matches("token", r"^tok_[A-Za-z0-9]{24}$", why="a token, never a card number"),
        in_set("brand", CARD_BRANDS),
        matches("bin", r"^[0-9]{6}$"),
        matches("last4", r"^[0-9]{4}$"),
        # no expiry checks: silver never holds exp_month / exp_year (PCI, dropped; lakehouse.security)
        matches("fingerprint", r"^[a-p]{32}$"))),
    Suite("wallets", "payments.wallets", ("payment_method_id",), (
        *not_null("payment_method_id", "provider"),
        in_set("provider", WALLET_PROVIDERS))),
    Suite("bank_debits", "payments.bank_debits", ("payment_method_id",), (
        *not_null("payment_method_id", "scheme", "account_last4"),
        in_set("scheme", DEBIT_SCHEMES),
        matches("account_last4", r"^[0-9]{4}$"))),
    # ---------------------------------------------------------------- payments
    Suite("charges", "payments.charges", ("charge_id", "created_at"), (
        *not_null("charge_id", "created_at", "merchant_id", "customer_id", "payment_method_id", "amount_minor",
                  "currency_code", "status", "captured_amount_minor", "refunded_amount_minor"),
        between("amount_minor", 0, strict_min=True, why=_POSITIVE),
        in_set("currency_code", CURRENCIES, why=_CURRENCY),
        in_set("status", CHARGE_STATUSES),
        between("captured_amount_minor", 0),
        between("refunded_amount_minor", 0),
        greater_than_column("amount_minor", "captured_amount_minor", or_equal=True,
                         why="CHECK (captured_amount_minor BETWEEN 0 AND amount_minor)"),
        greater_than_column("captured_amount_minor", "refunded_amount_minor", or_equal=True,
                         why="refunds never exceed the capture (the running total lives on the charge)"),
        in_set("device_type", DEVICE_TYPES),
        between("risk_score", 0, 1),
        between("anomaly_score", 0),
        reference_exists(CHARGE_MERCHANT),
        reference_exists(CHARGE_CUSTOMER),
        reference_exists(CHARGE_METHOD)),
        lookups=(CHARGE_MERCHANT, CHARGE_CUSTOMER, CHARGE_METHOD)),
    Suite("refunds", "payments.refunds", ("refund_id",), (
        *not_null("refund_id", "charge_id", "charge_created_at", "amount_minor", "currency_code", "status"),
        between("amount_minor", 0, strict_min=True, why=_POSITIVE),
        in_set("currency_code", CURRENCIES, why=_CURRENCY),
        in_set("reason", REFUND_REASONS),
        in_set("status", REFUND_STATUSES),
        reference_exists(CHARGE_OF),
        _within_captured("refund")),
        lookups=(CHARGE_OF,)),
    Suite("disputes", "payments.disputes", ("dispute_id",), (
        *not_null("dispute_id", "charge_id", "charge_created_at", "amount_minor", "currency_code", "status"),
        between("amount_minor", 0, strict_min=True, why=_POSITIVE),
        in_set("currency_code", CURRENCIES, why=_CURRENCY),
        in_set("reason", DISPUTE_REASONS),
        in_set("status", DISPUTE_STATUSES),
        greater_than_column("closed_at", "opened_at", or_equal=True, why="CHECK (closed_at >= opened_at)"),
        reference_exists(CHARGE_OF),
        _within_captured("dispute")),
        lookups=(CHARGE_OF,)),
    Suite("subscriptions", "payments.subscriptions", ("subscription_id",), (
        *not_null("subscription_id", "customer_id", "plan_id", "payment_method_id", "status",
                  "current_period_start", "current_period_end"),
        in_set("status", SUBSCRIPTION_STATUSES),
        greater_than_column("current_period_end", "current_period_start", or_equal=False))),
    Suite("invoices", "payments.invoices", ("invoice_id",), (
        *not_null("invoice_id", "subscription_id", "period_start", "period_end", "amount_minor", "currency_code",
                  "status"),
        between("amount_minor", 0, strict_min=True, why=_POSITIVE),
        in_set("currency_code", CURRENCIES, why=_CURRENCY),
        in_set("status", INVOICE_STATUSES),
        greater_than_column("period_end", "period_start", or_equal=False))),
    Suite("balance_transactions", "payments.balance_transactions", ("txn_id", "created_at"), (
        *not_null("txn_id", "created_at", "merchant_id", "kind", "charge_id", "charge_created_at", "amount_minor",
                  "fee_minor", "net_minor", "currency_code"),
        in_set("kind", LEDGER_KINDS),
        between("fee_minor", 0),
        in_set("currency_code", CURRENCIES, why=_CURRENCY))),
    Suite("idempotency_keys", "payments.idempotency_keys", ("merchant_id", "idempotency_key"), (
        *not_null("merchant_id", "idempotency_key", "request_hash", "charge_id", "charge_created_at"),)),
    Suite("import_batches", "payments.import_batches", ("batch_id",), (
        *not_null("batch_id", "source_file", "source_format", "rows_read", "charges_created", "rows_skipped"),
        in_set("source_format", IMPORT_FORMATS),
        between("rows_read", 0),
        between("charges_created", 0),
        between("rows_skipped", 0))),
    Suite("imported_charges", "payments.imported_charges", ("source_ref",), (
        *not_null("source_ref", "charge_id", "charge_created_at", "batch_id", "source_line"),
        between("source_line", 1))),
    # ---------------------------------------------------------------- labels
    Suite("fraud_ground_truth", "labels.fraud_ground_truth", ("charge_id", "charge_created_at"), (
        *not_null("charge_id", "charge_created_at", "is_fraud", "source"),
        in_set("scenario", FRAUD_SCENARIOS),
        in_set("source", LABEL_SOURCES))),
)

SUITES: dict[str, Suite] = {s.table: s for s in _SUITES}


def suite(table: str) -> Suite:
    """The suite of silver table `table` (e.g. `charges`, `ref_currencies`)."""
    try:
        return SUITES[table]
    except KeyError:
        raise KeyError(f"no quality suite for silver table {table!r}; known: {', '.join(sorted(SUITES))}") from None


def silver_table_name(source: str) -> str:
    """The silver table of an OLTP table: `payments.charges` -> `charges`, `ref.currencies` -> `ref_currencies`,
    `labels.fraud_ground_truth` -> `fraud_ground_truth`."""
    schema, _, table = source.partition(".")
    if not table:
        raise ValueError(f"{source!r} is not a <schema>.<table> name")
    return silver_name(schema, table)
