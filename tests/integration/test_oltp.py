"""The OLTP invariants, proved against the real PostgreSQL."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from lakehouse.common.config import Settings
from lakehouse.oltp.db import admin_connect, connect, make_pool
from lakehouse.oltp.pan_scan import scan_for_pans
from lakehouse.oltp.reference import ensure_reference_data
from lakehouse.oltp.service import ChargeRef, PaymentError, PaymentsService, run_in_tx
from lakehouse.oltp.simulator import SimConfig, backfill
from lakehouse.oltp.vault import CardError, load_vault_key, reveal_pan
from tests.integration.helpers import fresh_database

PAN = "4242424242424242"


@pytest.fixture(scope="module")
def svc(oltp: Settings) -> Iterator[PaymentsService]:
    with connect(oltp) as conn:
        ensure_reference_data(conn, dt.date(2026, 1, 1), dt.date(2026, 1, 31))
        conn.commit()
    with make_pool(oltp, min_size=2, max_size=32) as pool:
        yield PaymentsService(pool, load_vault_key(oltp))


@pytest.fixture(scope="module")
def party(svc: PaymentsService) -> dict[str, int]:
    merchant = svc.create_merchant("Test Shop", "US", "5411", "USD")
    customer = svc.create_customer("t@example.com", "Test Person", "US", phone="+15550100")
    method, _ = svc.add_card(customer, PAN, 12, 2030, "US")
    return {"merchant_id": merchant, "customer_id": customer, "payment_method_id": method}


def captured(svc: PaymentsService, party: dict[str, int], amount: int = 10_000) -> ChargeRef:
    return svc.pay(**party, amount_minor=amount, currency_code="USD", device_type="desktop", ip_address="44.10.3.4",
                   risk_score=0.25)


def one(conn: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0] if len(row) == 1 else row


def test_concurrent_refunds_never_exceed_the_captured_amount(svc: PaymentsService, party: dict[str, int],
                                                             oltp: Settings) -> None:
    ref = captured(svc, party, 10_000)
    barrier = threading.Barrier(24)
    outcomes: list[str] = []

    def refund() -> None:
        barrier.wait()
        try:
            svc.refund(ref, 1_000)
            outcomes.append("ok")
        except PaymentError as e:
            assert "would exceed the captured amount" in str(e)
            outcomes.append("rejected")

    threads = [threading.Thread(target=refund) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes).count("ok") == 10 and outcomes.count("rejected") == 14
    with connect(oltp) as conn:
        key = (ref.charge_id, ref.created_at)
        assert one(conn, "SELECT sum(amount_minor) FROM payments.refunds "
                         "WHERE charge_id = %s AND charge_created_at = %s", *key) == 10_000
        assert one(conn, "SELECT refunded_amount_minor FROM payments.charges WHERE charge_id = %s AND created_at = %s",
                   *key) == 10_000
        assert one(conn, "SELECT sum(amount_minor) FROM payments.balance_transactions WHERE kind = 'refund' "
                         "AND charge_id = %s", ref.charge_id) == -10_000


def test_idempotent_replay_returns_the_same_charge(svc: PaymentsService, party: dict[str, int], oltp: Settings) -> None:
    args = dict(**party, amount_minor=777, currency_code="USD", device_type="mobile", description="idem-1")
    first = svc.create_charge(**args, idempotency_key="order-1")
    again = svc.create_charge(**args, idempotency_key="order-1")
    assert (again.ref, again.replayed, first.replayed) == (first.ref, True, False)

    # the same key from many clients at once: one charge
    barrier = threading.Barrier(8)
    refs: list[ChargeRef] = []

    def racer() -> None:
        barrier.wait()
        refs.append(svc.create_charge(**{**args, "description": "idem-2"}, idempotency_key="order-2").ref)

    threads = [threading.Thread(target=racer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(refs)) == 1 and len(refs) == 8
    with connect(oltp) as conn:
        assert one(conn, "SELECT count(*) FROM payments.charges WHERE description = 'idem-1'") == 1
        assert one(conn, "SELECT count(*) FROM payments.charges WHERE description = 'idem-2'") == 1
    with pytest.raises(PaymentError, match="was used with different parameters"):
        svc.create_charge(**{**args, "amount_minor": 778}, idempotency_key="order-1")


@pytest.mark.parametrize(("statement", "message"), [
    ("UPDATE payments.charges SET status = 'pending' WHERE charge_id = %s AND created_at = %s",
     "status transition captured -> pending is not allowed"),
    ("UPDATE payments.charges SET status = 'failed', failure_code = 'x' WHERE charge_id = %s AND created_at = %s",
     "status transition captured -> failed is not allowed"),
    ("UPDATE payments.charges SET amount_minor = 1 WHERE charge_id = %s AND created_at = %s",
     "amount, currency, parties and created_at are immutable"),
    ("INSERT INTO payments.refunds (charge_id, charge_created_at, amount_minor, currency_code, reason) "
     "VALUES (%s, %s, 5001, 'USD', 'other')", "would exceed the captured amount"),
    ("UPDATE payments.balance_transactions SET amount_minor = 0 WHERE charge_id = %s AND charge_created_at = %s",
     r"payments\.balance_transactions_\d{4}_\d{2} is append-only"),
])
def test_the_database_itself_rejects_forbidden_changes(svc: PaymentsService, party: dict[str, int], oltp: Settings,
                                                       statement: str, message: str) -> None:
    ref = captured(svc, party, 5_000)
    with connect(oltp) as conn, pytest.raises(psycopg.IntegrityError, match=message):
        conn.execute(statement, (ref.charge_id, ref.created_at))  # type: ignore[arg-type]


def test_lifecycle_is_pending_authorized_captured(svc: PaymentsService, party: dict[str, int], oltp: Settings) -> None:
    charge = svc.create_charge(**party, amount_minor=4_200, currency_code="USD", device_type="tablet")
    with pytest.raises(PaymentError, match="pending -> captured is not allowed"):
        svc.capture(charge.ref)
    svc.authorize(charge.ref, risk_score=0.12)
    svc.capture(charge.ref, amount_minor=4_000)
    with connect(oltp) as conn:
        row = one(conn, "SELECT status, captured_amount_minor, authorized_at <= captured_at, risk_score::text, "
                        "tableoid::regclass::text FROM payments.charges WHERE charge_id = %s", charge.ref.charge_id)
        ledger = one(conn, "SELECT amount_minor, fee_minor, net_minor FROM payments.balance_transactions "
                           "WHERE charge_id = %s", charge.ref.charge_id)
    month = charge.ref.created_at.strftime("%Y_%m")
    assert row == ("captured", 4_000, True, "0.1200", f"payments.charges_{month}")   # in its month's partition
    assert ledger == (4_000, 146, 3_854)


def test_disputes_and_the_ledger(svc: PaymentsService, party: dict[str, int], oltp: Settings) -> None:
    ref = captured(svc, party, 8_000)
    won = svc.open_dispute(ref, 8_000, "fraudulent")
    svc.resolve_dispute(won, won=True)
    with connect(oltp) as conn:
        moves = conn.execute("SELECT kind, amount_minor, net_minor FROM payments.balance_transactions "
                             "WHERE charge_id = %s ORDER BY txn_id", (ref.charge_id,)).fetchall()
    assert moves == [("charge", 8_000, 7_738), ("dispute", -8_000, -8_000), ("dispute_won", 8_000, 8_000)]
    declined = svc.create_charge(**party, amount_minor=100, currency_code="USD", device_type="mobile")
    svc.fail(declined.ref, "card_declined")
    with pytest.raises(PaymentError, match="is not captured"):
        svc.open_dispute(declined.ref, 100, "fraudulent")


def test_subscription_renewals_bill_each_period_once(svc: PaymentsService, party: dict[str, int],
                                                     oltp: Settings) -> None:
    with connect(oltp) as conn:
        product = one(conn, "INSERT INTO payments.products (merchant_id, name, category) VALUES (%s, 'Pro', 'saas') "
                            "RETURNING product_id", party["merchant_id"])
        plan = one(conn, "INSERT INTO payments.plans (product_id, name, amount_minor, currency_code, billing_interval)"
                         " VALUES (%s, 'monthly', 1500, 'USD', 'month') RETURNING plan_id", product)
        conn.commit()
    start = dt.datetime(2026, 1, 10, tzinfo=dt.UTC)
    sub = svc.create_subscription(party["customer_id"], plan, party["payment_method_id"], start=start)
    svc.renew_subscription(sub)
    svc.renew_subscription(sub)
    with connect(oltp) as conn:
        invoices = conn.execute("SELECT period_start, period_end, amount_minor, status FROM payments.invoices "
                                "WHERE subscription_id = %s ORDER BY period_start", (sub,)).fetchall()
        with pytest.raises(errors.UniqueViolation):
            conn.execute("INSERT INTO payments.invoices (subscription_id, period_start, period_end, amount_minor, "
                         "currency_code) VALUES (%s, %s, %s, 1500, 'USD')", (sub, invoices[0][0], invoices[0][1]))
    # creating bills nothing; each renewal bills the period that follows the current one
    feb, mar, apr = (dt.datetime(2026, m, 10, tzinfo=dt.UTC) for m in (2, 3, 4))
    assert [(i[0], i[1], i[2], i[3]) for i in invoices] == [(feb, mar, 1500, "paid"), (mar, apr, 1500, "paid")]
    svc.cancel_subscription(sub)
    with pytest.raises(PaymentError, match="is canceled"):
        svc.renew_subscription(sub)


def test_deadlocks_are_retried(svc: PaymentsService, party: dict[str, int], oltp: Settings) -> None:
    a, b = captured(svc, party, 100), captured(svc, party, 200)
    barrier = threading.Barrier(2)
    attempts: list[int] = []

    def crossing(first: ChargeRef, second: ChargeRef) -> None:
        def tx(conn: psycopg.Connection[Any]) -> None:
            attempts.append(1)
            conn.execute("SELECT 1 FROM payments.charges WHERE charge_id = %s FOR UPDATE", (first.charge_id,))
            if len(attempts) <= 2:
                barrier.wait(timeout=10)
            conn.execute("SELECT 1 FROM payments.charges WHERE charge_id = %s FOR UPDATE", (second.charge_id,))
        run_in_tx(svc.pool, tx)

    threads = [threading.Thread(target=crossing, args=(a, b)), threading.Thread(target=crossing, args=(b, a))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(attempts) == 3   # two crossed, PostgreSQL broke the deadlock, the victim ran again and succeeded


def test_a_rejected_card_number_is_not_stored_or_echoed(svc: PaymentsService, party: dict[str, int]) -> None:
    with pytest.raises(CardError) as err:
        svc.add_card(party["customer_id"], "4242424242424241", 1, 2031, "US")
    assert "4242" not in str(err.value)


def test_only_the_vault_role_reads_card_numbers(svc: PaymentsService, party: dict[str, int], oltp: Settings) -> None:
    with connect(oltp) as conn:
        token = one(conn, "SELECT token FROM payments.cards WHERE payment_method_id = %s", party["payment_method_id"])
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT pan_encrypted FROM vault.card_pans")
    with admin_connect(oltp) as admin:
        admin.execute("DROP ROLE IF EXISTS vault_auditor")
        admin.execute("CREATE ROLE vault_auditor LOGIN PASSWORD 'auditor-pw' IN ROLE vault_reader")
        admin.commit()
    pg = oltp.services.postgres
    with psycopg.connect(host=oltp.services.host, port=pg.port, dbname=pg.database, user="vault_auditor",
                         password="auditor-pw") as auditor:
        assert reveal_pan(auditor, load_vault_key(oltp), token) == PAN


TABLES = ("payments.merchants", "payments.terminals", "payments.customers", "payments.payment_methods",
          "payments.cards", "payments.charges", "payments.refunds", "payments.disputes", "payments.subscriptions",
          "payments.invoices", "payments.balance_transactions", "labels.fraud_ground_truth", "ref.fx_rates")


def checksums(settings: Settings) -> dict[str, tuple[int, str]]:
    with connect(settings) as conn:
        return {t: one(conn, f"SELECT count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) "
                             f"FROM {t} x") for t in TABLES}


def test_the_same_seed_gives_identical_data_and_no_pan_escapes_the_vault(oltp: Settings) -> None:
    cfg = SimConfig(seed=7, days=6, end=dt.date(2026, 3, 1), merchants=12, customers=300,
                    card_testing_bursts_per_day=2, account_takeovers_per_day=3)
    sums = []
    for name in ("sim_a", "sim_b", "sim_c"):
        db = fresh_database(oltp, name)
        with admin_connect(db) as conn:
            counts = backfill(conn, dataclasses.replace(cfg, seed=8) if name == "sim_c" else cfg,
                              load_vault_key(db), progress=False)
        sums.append(checksums(db))
        if name == "sim_a":
            with admin_connect(db) as admin:   # the scan reads every table, as an auditor would
                assert scan_for_pans(admin) == []
            with connect(db) as conn:
                assert one(conn, "SELECT count(*) FROM payments.charges") == counts["payments.charges"]
                scenarios = dict(conn.execute("SELECT coalesce(scenario, 'genuine'), count(*) "
                                              "FROM labels.fraud_ground_truth GROUP BY 1").fetchall())
                assert set(scenarios) >= {"genuine", "card_testing", "account_takeover", "compromised_terminal"}
                # the ledger nets to captured - fees - refunds - disputes (+ won), exactly
                assert one(conn, "SELECT sum(net_minor) FROM payments.balance_transactions") == one(
                    conn, "SELECT (SELECT sum(captured_amount_minor) FROM payments.charges)"
                          " - (SELECT sum(fee_minor) FROM payments.balance_transactions)"
                          " - (SELECT sum(amount_minor) FROM payments.refunds)"
                          " - (SELECT coalesce(sum(amount_minor), 0) FROM payments.disputes)"
                          " + (SELECT coalesce(sum(amount_minor), 0) FROM payments.disputes WHERE status = 'won')")
                vault_rows = one(conn, "SELECT count(*) FROM payments.cards")
            assert counts["vault.card_pans"] == vault_rows
    assert sums[0] == sums[1]
    assert sums[0]["payments.charges"][0] > 1000
    assert sums[2]["payments.charges"] != sums[0]["payments.charges"]   # another seed, other data


def test_no_card_number_outside_the_vault_after_service_traffic(svc: PaymentsService, party: dict[str, int],
                                                               oltp: Settings) -> None:
    captured(svc, party, 1_234)
    with admin_connect(oltp) as conn:
        assert scan_for_pans(conn) == []
        # and the scanner does find one where it should not be
        conn.execute("CREATE TEMP TABLE leak (note text)")
        conn.execute("INSERT INTO leak VALUES ('customer wrote 4242 4242 4242 4242 in a note')")
        assert [f.column for f in scan_for_pans(conn) if f.table.endswith(".leak")] == ["note"]


def test_the_fee_rule_is_the_same_in_sql_and_python(oltp: Settings) -> None:
    from lakehouse.oltp.service import platform_fee

    amounts = [1, 2, 17, 99, 100, 2500, 9999, 10_000, 123_457, 10**12]
    with connect(oltp) as conn:
        in_sql = [one(conn, "SELECT payments.platform_fee(%s)", a) for a in amounts]
    assert in_sql == [platform_fee(a) for a in amounts]


def test_bulk_loads_verify_foreign_keys_set_wise(oltp: Settings) -> None:
    from lakehouse.oltp.simulator import foreign_key_violations

    with admin_connect(oltp) as admin:
        assert foreign_key_violations(admin, "labels.fraud_ground_truth") == {
            "fraud_ground_truth_charge_id_charge_created_at_fkey": 0}
        admin.execute("SET LOCAL session_replication_role = replica")
        admin.execute("INSERT INTO labels.fraud_ground_truth VALUES (999999, '2026-01-01', false, NULL, 'simulator')")
        admin.execute("SET LOCAL session_replication_role = origin")
        assert foreign_key_violations(admin, "labels.fraud_ground_truth") == {
            "fraud_ground_truth_charge_id_charge_created_at_fkey": 1}
        ledger = foreign_key_violations(admin, "payments.balance_transactions")
        admin.rollback()
    assert set(ledger) == {"balance_transactions_merchant_id_fkey", "balance_transactions_refund_id_fkey",
                           "balance_transactions_dispute_id_fkey", "balance_transactions_currency_code_fkey",
                           "balance_transactions_charge_id_charge_created_at_fkey"}
    assert set(ledger.values()) == {0}
