"""ACID payment operations on PostgreSQL (psycopg 3, a connection pool).

Every operation is one transaction, retried on serialization failures and deadlocks. The database
enforces the business rules itself (constraints and triggers, see the migrations): Python checks
only to give friendlier errors earlier. Money is integer minor units throughout.

Fees follow one rule (`platform_fee`): 2.9 % of the amount, rounded half-up, plus 30 minor units.
The database has the same rule (`payments.platform_fee`, used by `payments.capture_charge`); a test
checks that the two agree.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import errors
from psycopg_pool import ConnectionPool

from lakehouse.oltp import vault

T = TypeVar("T")
RETRYABLE = (errors.SerializationFailure, errors.DeadlockDetected)
RULE_VIOLATIONS = (psycopg.IntegrityError, errors.RaiseException, errors.NoDataFound)


class PaymentError(RuntimeError):
    """An operation the business rules reject (the database said no); the message says why."""


@dataclass(frozen=True)
class ChargeRef:
    """A charge's primary key (the table is partitioned by created_at, which is part of the key)."""

    charge_id: int
    created_at: dt.datetime


@dataclass(frozen=True)
class Charge:
    ref: ChargeRef
    status: str
    amount_minor: int
    currency_code: str
    replayed: bool = False     # True when an idempotency key returned an earlier charge


def platform_fee(amount_minor: int) -> int:
    """2.9 % + 30 minor units, in integer arithmetic (half-up)."""
    return (amount_minor * 29 + 500) // 1000 + 30


def run_in_tx(pool: ConnectionPool, fn: Callable[[psycopg.Connection[Any]], T], retries: int = 8) -> T:
    """Runs `fn(conn)` in one transaction, retrying on serialization failure / deadlock with backoff.

    Rule violations raised by the database become `PaymentError`.
    """
    for attempt in range(retries + 1):
        try:
            with pool.connection() as conn, conn.transaction():
                return fn(conn)
        except RETRYABLE:
            if attempt == retries:
                raise
            time.sleep(min(0.2, 0.002 * 2 ** attempt) * (0.5 + random.random()))
        except RULE_VIOLATIONS as e:
            raise PaymentError(e.diag.message_primary or str(e)) from e
    raise AssertionError("unreachable")


def run_statement(pool: ConnectionPool, query: str, params: Sequence[Any], retries: int = 8) -> tuple[Any, ...]:
    """One statement as its own transaction (autocommit: one round trip), retried like `run_in_tx`;
    returns its first row. For server-side operations that are a single function call."""
    for attempt in range(retries + 1):
        try:
            with pool.connection() as conn:
                conn.autocommit = True
                try:
                    row = conn.execute(query, params).fetchone()
                finally:
                    conn.autocommit = False
            assert row is not None
            return tuple(row)
        except RETRYABLE:
            if attempt == retries:
                raise
            time.sleep(min(0.2, 0.002 * 2 ** attempt) * (0.5 + random.random()))
        except RULE_VIOLATIONS as e:
            raise PaymentError(e.diag.message_primary or str(e)) from e
    raise AssertionError("unreachable")


class PaymentsService:
    """The OLTP operations. Thread-safe: each call takes its own pooled connection."""

    def __init__(self, pool: ConnectionPool, key: vault.VaultKey) -> None:
        self.pool = pool
        self.key = key

    # ---------------------------------------------------------------- parties
    def create_customer(self, email: str, full_name: str, country_code: str, phone: str | None = None,
                        external_ref: str | None = None) -> int:
        def tx(conn: psycopg.Connection[Any]) -> int:
            row = conn.execute(
                "INSERT INTO payments.customers (email, full_name, phone, country_code, external_ref) "
                "VALUES (%s, %s, %s, %s, %s) RETURNING customer_id",
                (email, full_name, phone, country_code, external_ref)).fetchone()
            assert row is not None
            return int(row[0])
        return run_in_tx(self.pool, tx)

    def create_merchant(self, name: str, country_code: str, mcc: str, currency: str,
                        external_ref: str | None = None) -> int:
        def tx(conn: psycopg.Connection[Any]) -> int:
            row = conn.execute(
                "INSERT INTO payments.merchants (name, country_code, mcc, default_currency, external_ref) "
                "VALUES (%s, %s, %s, %s, %s) RETURNING merchant_id",
                (name, country_code, mcc, currency, external_ref)).fetchone()
            assert row is not None
            return int(row[0])
        return run_in_tx(self.pool, tx)

    def add_card(self, customer_id: int, pan: str, exp_month: int, exp_year: int,
                 issuing_country: str) -> tuple[int, str]:
        """Tokenizes the PAN (Luhn-validated), stores it encrypted in the vault; returns (payment_method_id, token).

        The PAN never leaves this call: not in logs, errors, or any table outside the vault."""
        card = vault.tokenize(self.key, pan)

        def tx(conn: psycopg.Connection[Any]) -> tuple[int, str]:
            row = conn.execute("INSERT INTO payments.payment_methods (customer_id, kind) VALUES (%s, 'card') "
                               "RETURNING payment_method_id", (customer_id,)).fetchone()
            assert row is not None
            pm_id = int(row[0])
            conn.execute(
                "INSERT INTO payments.cards (payment_method_id, token, brand, bin, last4, exp_month, exp_year, "
                "fingerprint, issuing_country) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (pm_id, card.token, card.brand, card.bin, card.last4, exp_month, exp_year, card.fingerprint,
                 issuing_country))
            vault.store_pan(conn, self.key, card.token, pan)
            return pm_id, card.token
        return run_in_tx(self.pool, tx)

    # ---------------------------------------------------------------- charges
    def create_charge(self, merchant_id: int, customer_id: int, payment_method_id: int, amount_minor: int,
                      currency_code: str, device_type: str, ip_address: str | None = None,
                      idempotency_key: str | None = None, terminal_id: int | None = None,
                      risk_score: float | None = None, description: str | None = None) -> Charge:
        """A pending charge. With `idempotency_key`, a repeated request returns the original charge
        (`replayed=True`) and never creates a second one; the same key with different parameters fails."""
        request = [merchant_id, customer_id, payment_method_id, amount_minor, currency_code, device_type,
                   ip_address, terminal_id, description]
        request_hash = vault.letters_hex(hashlib.sha256(json.dumps(request).encode()).hexdigest())

        def existing(conn: psycopg.Connection[Any]) -> Charge | None:
            row = conn.execute(
                "SELECT k.request_hash, c.charge_id, c.created_at, c.status, c.amount_minor, c.currency_code "
                "FROM payments.idempotency_keys k JOIN payments.charges c "
                "ON c.charge_id = k.charge_id AND c.created_at = k.charge_created_at "
                "WHERE k.merchant_id = %s AND k.idempotency_key = %s", (merchant_id, idempotency_key)).fetchone()
            if row is None:
                return None
            if row[0] != request_hash:
                raise PaymentError(f"idempotency key {idempotency_key!r} was used with different parameters")
            return Charge(ChargeRef(row[1], row[2]), row[3], row[4], row[5].strip(), replayed=True)

        def tx(conn: psycopg.Connection[Any]) -> Charge:
            if idempotency_key is not None:
                found = existing(conn)
                if found:
                    return found
            row = conn.execute(
                "INSERT INTO payments.charges (merchant_id, terminal_id, customer_id, payment_method_id, amount_minor,"
                " currency_code, device_type, ip_address, risk_score, description) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING charge_id, created_at",
                (merchant_id, terminal_id, customer_id, payment_method_id, amount_minor, currency_code, device_type,
                 ip_address, risk_score, description)).fetchone()
            assert row is not None
            ref = ChargeRef(row[0], row[1])
            if idempotency_key is not None:
                # A concurrent request with the same key waits here for the other to commit, then gets
                # no row back: this transaction is rolled back and the winner's charge returned.
                won = conn.execute(
                    "INSERT INTO payments.idempotency_keys (merchant_id, idempotency_key, request_hash, charge_id,"
                    " charge_created_at) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
                    (merchant_id, idempotency_key, request_hash, ref.charge_id, ref.created_at)).fetchone()
                if won is None:
                    raise _LostIdempotencyRace()
            return Charge(ref, "pending", amount_minor, currency_code)

        try:
            return run_in_tx(self.pool, tx)
        except _LostIdempotencyRace:
            found = run_in_tx(self.pool, existing)
            assert found is not None
            return found

    def authorize(self, ref: ChargeRef, risk_score: float | None = None) -> None:
        self._set_status(ref, "authorized", extra="risk_score = coalesce(%s, risk_score)", params=(risk_score,))

    def capture(self, ref: ChargeRef, amount_minor: int | None = None) -> None:
        """Captures an authorized charge (fully, or a smaller amount) and books it in the ledger."""
        run_statement(self.pool, "SELECT payments.capture_charge(%s, %s, %s)",
                      (ref.charge_id, ref.created_at, amount_minor))

    def pay(self, merchant_id: int, customer_id: int, payment_method_id: int, amount_minor: int,
            currency_code: str, device_type: str, ip_address: str | None = None, terminal_id: int | None = None,
            risk_score: float | None = None) -> ChargeRef:
        """Create, authorize and capture in ONE transaction (the common card-not-present flow):
        one call of `payments.pay`, whose statements pass through the same triggers as the others."""
        row = run_statement(self.pool, "SELECT * FROM payments.pay(%s, %s, %s, %s, %s, %s, %s, %s, %s::numeric)",
                            (merchant_id, customer_id, payment_method_id, amount_minor, currency_code, device_type,
                             ip_address, terminal_id, risk_score))
        return ChargeRef(row[0], row[1])

    def fail(self, ref: ChargeRef, failure_code: str) -> None:
        self._set_status(ref, "failed", extra="failure_code = %s", params=(failure_code,))

    def cancel(self, ref: ChargeRef) -> None:
        self._set_status(ref, "canceled")

    def _set_status(self, ref: ChargeRef, status: str, extra: str = "", params: tuple[Any, ...] = ()) -> None:
        sets = "status = %s" + (f", {extra}" if extra else "")

        def tx(conn: psycopg.Connection[Any]) -> None:
            query = f"UPDATE payments.charges SET {sets} WHERE charge_id = %s AND created_at = %s"
            cur = conn.execute(query, (status, *params, ref.charge_id, ref.created_at))
            if cur.rowcount != 1:
                raise PaymentError(f"charge {ref.charge_id} does not exist")
        run_in_tx(self.pool, tx)

    @staticmethod
    def _capture_in(conn: psycopg.Connection[Any], ref: ChargeRef, amount_minor: int | None) -> None:
        conn.execute("SELECT payments.capture_charge(%s, %s, %s)", (ref.charge_id, ref.created_at, amount_minor))

    # ---------------------------------------------------------------- refunds and disputes
    def refund(self, ref: ChargeRef, amount_minor: int, reason: str = "requested_by_customer") -> int:
        """A (partial) refund. The database rejects it when the refunds would exceed the captured amount,
        also under concurrent requests for the same charge (they serialize on the charge's row)."""
        def tx(conn: psycopg.Connection[Any]) -> int:
            row = conn.execute(
                "INSERT INTO payments.refunds (charge_id, charge_created_at, amount_minor, currency_code, reason) "
                "SELECT charge_id, created_at, %s, currency_code, %s FROM payments.charges "
                "WHERE charge_id = %s AND created_at = %s RETURNING refund_id, currency_code",
                (amount_minor, reason, ref.charge_id, ref.created_at)).fetchone()
            if row is None:
                raise PaymentError(f"charge {ref.charge_id} does not exist")
            refund_id, currency = row
            merchant = conn.execute("SELECT merchant_id FROM payments.charges WHERE charge_id = %s AND created_at = %s",
                                    (ref.charge_id, ref.created_at)).fetchone()
            assert merchant is not None
            conn.execute(
                "INSERT INTO payments.balance_transactions (merchant_id, kind, charge_id, charge_created_at, refund_id,"
                " amount_minor, fee_minor, net_minor, currency_code) VALUES (%s, 'refund', %s, %s, %s, %s, 0, %s, %s)",
                (merchant[0], ref.charge_id, ref.created_at, refund_id, -amount_minor, -amount_minor, currency))
            return int(refund_id)
        return run_in_tx(self.pool, tx)

    def open_dispute(self, ref: ChargeRef, amount_minor: int, reason: str) -> int:
        """A chargeback: the disputed amount is withdrawn from the merchant's balance at once."""
        def tx(conn: psycopg.Connection[Any]) -> int:
            row = conn.execute(
                "INSERT INTO payments.disputes (charge_id, charge_created_at, amount_minor, currency_code, reason) "
                "SELECT charge_id, created_at, %s, currency_code, %s FROM payments.charges "
                "WHERE charge_id = %s AND created_at = %s RETURNING dispute_id, currency_code",
                (amount_minor, reason, ref.charge_id, ref.created_at)).fetchone()
            if row is None:
                raise PaymentError(f"charge {ref.charge_id} does not exist")
            self._book_dispute(conn, ref, int(row[0]), "dispute", -amount_minor, row[1])
            return int(row[0])
        return run_in_tx(self.pool, tx)

    def resolve_dispute(self, dispute_id: int, won: bool) -> None:
        """Closes a dispute; a won dispute returns the funds to the merchant."""
        def tx(conn: psycopg.Connection[Any]) -> None:
            row = conn.execute(
                "UPDATE payments.disputes SET status = %s, closed_at = greatest(now(), opened_at) "
                "WHERE dispute_id = %s "
                "RETURNING charge_id, charge_created_at, amount_minor, currency_code",
                ("won" if won else "lost", dispute_id)).fetchone()
            if row is None:
                raise PaymentError(f"dispute {dispute_id} does not exist")
            if won:
                self._book_dispute(conn, ChargeRef(row[0], row[1]), dispute_id, "dispute_won", row[2], row[3])
        run_in_tx(self.pool, tx)

    @staticmethod
    def _book_dispute(conn: psycopg.Connection[Any], ref: ChargeRef, dispute_id: int, kind: str, amount: int,
                      currency: str) -> None:
        conn.execute(
            "INSERT INTO payments.balance_transactions (merchant_id, kind, charge_id, charge_created_at, dispute_id,"
            " amount_minor, fee_minor, net_minor, currency_code) "
            "SELECT merchant_id, %s, charge_id, created_at, %s, %s, 0, %s, %s FROM payments.charges "
            "WHERE charge_id = %s AND created_at = %s",
            (kind, dispute_id, amount, amount, currency, ref.charge_id, ref.created_at))

    # ---------------------------------------------------------------- subscriptions
    def create_subscription(self, customer_id: int, plan_id: int, payment_method_id: int,
                            start: dt.datetime | None = None) -> int:
        def tx(conn: psycopg.Connection[Any]) -> int:
            row = conn.execute(
                "INSERT INTO payments.subscriptions (customer_id, plan_id, payment_method_id, current_period_start,"
                " current_period_end) SELECT %s, plan_id, %s, s, s + ('1 ' || billing_interval)::interval "
                "FROM payments.plans, (SELECT coalesce(%s, now()) AS s) t WHERE plan_id = %s RETURNING subscription_id",
                (customer_id, payment_method_id, start, plan_id)).fetchone()
            if row is None:
                raise PaymentError(f"plan {plan_id} does not exist")
            return int(row[0])
        return run_in_tx(self.pool, tx)

    def renew_subscription(self, subscription_id: int, device_type: str = "unknown") -> tuple[int, ChargeRef]:
        """Bills the next period: an invoice, a captured charge, the period advanced — one transaction.
        Renewing the same period twice is impossible (one invoice per period)."""
        def tx(conn: psycopg.Connection[Any]) -> tuple[int, ChargeRef]:
            sub = conn.execute(
                "SELECT s.customer_id, s.payment_method_id, s.current_period_end, p.amount_minor, p.currency_code,"
                " p.billing_interval, pr.merchant_id, s.status FROM payments.subscriptions s "
                "JOIN payments.plans p USING (plan_id) JOIN payments.products pr USING (product_id) "
                "WHERE s.subscription_id = %s FOR UPDATE OF s", (subscription_id,)).fetchone()
            if sub is None:
                raise PaymentError(f"subscription {subscription_id} does not exist")
            customer, method, period_start, amount, currency, interval, merchant, status = sub
            if status == "canceled":
                raise PaymentError(f"subscription {subscription_id} is canceled")
            row = conn.execute(
                "INSERT INTO payments.charges (merchant_id, customer_id, payment_method_id, amount_minor,"
                " currency_code, device_type, status, description) VALUES (%s, %s, %s, %s, %s, %s, 'pending', %s) "
                "RETURNING charge_id, created_at",
                (merchant, customer, method, amount, currency, device_type, f"subscription {subscription_id}")
            ).fetchone()
            assert row is not None
            ref = ChargeRef(row[0], row[1])
            conn.execute("UPDATE payments.charges SET status = 'authorized' WHERE charge_id = %s AND created_at = %s",
                         (ref.charge_id, ref.created_at))
            self._capture_in(conn, ref, None)
            inv = conn.execute(
                "INSERT INTO payments.invoices (subscription_id, period_start, period_end, amount_minor, currency_code,"
                " status, charge_id, charge_created_at, paid_at) VALUES (%s, %s, %s + ('1 ' || %s)::interval, %s, %s,"
                " 'paid', %s, %s, now()) RETURNING invoice_id",
                (subscription_id, period_start, period_start, interval, amount, currency, ref.charge_id,
                 ref.created_at)).fetchone()
            assert inv is not None
            conn.execute(
                "UPDATE payments.subscriptions SET status = 'active', current_period_start = %s, "
                "current_period_end = %s + ('1 ' || %s)::interval WHERE subscription_id = %s",
                (period_start, period_start, interval, subscription_id))
            return int(inv[0]), ref
        return run_in_tx(self.pool, tx)

    def cancel_subscription(self, subscription_id: int) -> None:
        def tx(conn: psycopg.Connection[Any]) -> None:
            cur = conn.execute("UPDATE payments.subscriptions SET status = 'canceled', canceled_at = now() "
                               "WHERE subscription_id = %s", (subscription_id,))
            if cur.rowcount != 1:
                raise PaymentError(f"subscription {subscription_id} does not exist")
        run_in_tx(self.pool, tx)


class _LostIdempotencyRace(Exception):
    """Another request with the same idempotency key committed first."""
