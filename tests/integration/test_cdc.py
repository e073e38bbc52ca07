"""CDC end to end against the real services: PostgreSQL -> Debezium on Kafka Connect -> Kafka.

The module works on its own database (`cdc_it`, migrated from scratch) with its own connector, slot,
publication and topic prefix, so every count is exact whatever other tests write elsewhere. The tests
run in file order and share the running connector: start and snapshot, changes, before-images and exact
values, heartbeats, stop and resume, stop --drop-slot.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import re
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from lakehouse.cdc import connector as cdc
from lakehouse.common.config import Settings, load_settings
from lakehouse.common.connections import kafka_bootstrap
from lakehouse.oltp.db import admin_connect, connect, make_pool
from lakehouse.oltp.pan_scan import contains_pan
from lakehouse.oltp.service import ChargeRef, PaymentsService
from lakehouse.oltp.simulator import SimConfig, backfill, build_world
from lakehouse.oltp.vault import load_vault_key
from tests.integration import helpers

DB = "cdc_it"
PREFIX = "cdcit"
OVERRIDES = {"services.postgres.database": DB, "cdc.connector": "cdc-it", "cdc.slot": "cdc_it",
             "cdc.publication": "cdc_it", "cdc.topic_prefix": PREFIX, "cdc.heartbeat_ms": "1000",
             "cdc.partitions": "2", "cdc.retention_hours": "5"}
CLI_SET = [arg for key, value in OVERRIDES.items() for arg in ("--set", f"{key}={value}")]
PAN = "4000056655665556"       # a valid test card number: it must never reach Kafka
IMMUTABLE = {"payments.balance_transactions", "payments.import_batches", "payments.imported_charges"}
SIM = SimConfig(seed=11, days=2, end=dt.datetime.now(dt.UTC).date(), merchants=6, customers=60)
# keyed digests, spelled with the letters a-p (vault.letters_hex) so that they never hold a digit run; they are
# checked to be digests, and every real card number is searched for exactly
DIGESTS = {"fingerprint": r"[a-p]{32}", "request_hash": r"[a-p]{64}"}

Counts = dict[str, dict[str, int]]   # topic -> op ("r", "c", "u", "d", "t", "tombstone") -> messages


def cli(*args: str) -> Any:
    return helpers.lakehouse(*CLI_SET, *args)


@pytest.fixture(scope="module")
def db(stack: Any, settings: Settings) -> Iterator[Settings]:
    """The module's database with a small simulated history, and its CDC settings; at the end the
    connector, its offsets, slot and publication are removed (a slot would block DROP DATABASE)."""
    helpers.fresh_database(settings, DB)
    own = load_settings("test", overrides=OVERRIDES)
    with admin_connect(own) as conn:
        backfill(conn, SIM, load_vault_key(own), progress=False)
    yield own
    try:
        cdc.stop(own, drop_slot=True, progress=None)
    except Exception as e:  # pragma: no cover - only when a test failed half way
        print(f"cleanup: {e}")


@pytest.fixture(scope="module")
def svc(db: Settings) -> Iterator[PaymentsService]:
    with make_pool(db, min_size=1, max_size=4) as pool:
        yield PaymentsService(pool, load_vault_key(db))


def published_tables(db: Settings) -> list[str]:
    with admin_connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT schemaname || '.' || tablename FROM pg_publication_tables "
                                           "WHERE pubname = %s ORDER BY 1", (db.cdc.publication,))]


def row_counts(db: Settings, tables: list[str]) -> dict[str, int]:
    with admin_connect(db) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}  # type: ignore[index]


def read_all(db: Settings) -> list[Any]:
    """Every message of every topic of the prefix, from the beginning to the current end offsets."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap(db), enable_auto_commit=False, group_id=None,
                             client_id="test-cdc")
    try:
        topics = sorted(t for t in consumer.topics() if t.startswith(f"{PREFIX}."))
        parts = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        records: list[Any] = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < end[tp] for tp in parts):
            assert time.monotonic() < deadline, "could not read the topics to their end offsets"
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def count(records: list[Any]) -> Counts:
    out: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for m in records:
        out[m.topic]["tombstone" if m.value is None else json.loads(m.value)["op"]] += 1
    return {t: dict(c) for t, c in out.items()}


def without(counts: Counts, ops: set[str]) -> Counts:
    kept = {t: {op: n for op, n in c.items() if op not in ops} for t, c in counts.items()}
    return {t: c for t, c in kept.items() if c}


def read_until(db: Settings, done: Callable[[Counts], bool], quiet_s: float = 3.0, timeout_s: float = 90) -> list[Any]:
    """Reads until `done(counts)` holds, then once more after `quiet_s` so that any extra message shows."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = read_all(db)
        if done(count(records)):
            break
        assert time.monotonic() < deadline, f"not all expected messages arrived: {count(records)}"
        time.sleep(1)
    time.sleep(quiet_s)
    return read_all(db)


def events(records: list[Any], topic: str, op: str) -> list[dict[str, Any]]:
    return [json.loads(m.value) for m in records
            if m.topic == f"{PREFIX}.{topic}" and m.value is not None and json.loads(m.value)["op"] == op]


# --------------------------------------------------------------------------------------------- tests
def test_start_runs_the_connector_and_snapshots_every_row_exactly_once(db: Settings) -> None:
    res = cli("cdc", "start", "--wait", "--json")
    assert res.returncode == 0, helpers.explain(res)
    out = json.loads(res.stdout)
    assert out["created"] is True and out["publication"] == "created"
    st = out["status"]
    assert st["state"] == "RUNNING" and [t["state"] for t in st["tasks"]] == ["RUNNING"]
    assert st["slot"]["active"] is True and st["slot"]["plugin"] == "pgoutput" and st["slot"]["database"] == DB
    assert out["config"]["database.password"] == "********"

    tables = published_tables(db)
    schemas = {t.split(".")[0] for t in tables}
    assert schemas == {"ref", "payments", "labels"} and len(tables) == 25
    assert "payments.charges" in tables and not any(cdc.is_partition_name(t) for t in tables)

    # one topic per table, created up front with the partitions and retention of the conf; nothing else
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap(db))
    try:
        topics = sorted(t for t in admin.list_topics() if t.startswith(f"{PREFIX}."))
        assert topics == sorted(f"{PREFIX}.{t}" for t in tables)
        assert not [t for t in admin.list_topics() if "vault" in t or "card_pans" in t]
        described = admin.describe_topics([f"{PREFIX}.payments.charges", f"{PREFIX}.payments.disputes"])
        assert [len(d["partitions"]) for d in described] == [2, 2]
        conf = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, f"{PREFIX}.payments.charges")])
        values = {k: v["value"] for k, v in conf["topic"][f"{PREFIX}.payments.charges"].items()}
        assert values["retention.ms"] == str(5 * 3_600_000) and values["cleanup.policy"] == "delete"
    finally:
        admin.close()

    expected = {f"{PREFIX}.{t}": {"r": n} for t, n in row_counts(db, tables).items() if n}
    assert expected[f"{PREFIX}.payments.charges"]["r"] > 100          # the history is there
    records = read_until(db, lambda got: got == expected)
    assert count(records) == expected                                 # exactly one `r` per row, nothing else
    charges = events(records, "payments.charges", "r")
    assert {e["source"]["snapshot"] for e in charges} <= {"first", "first_in_data_collection", "true",
                                                          "last_in_data_collection", "last"}
    keys = [json.loads(m.key) for m in records if m.topic == f"{PREFIX}.payments.charges"]
    assert all(set(k) == {"charge_id", "created_at"} for k in keys)   # the primary key, as JSON
    assert len({(k["charge_id"], k["created_at"]) for k in keys}) == len(keys)

    res = cli("cdc", "status", "--json")
    assert res.returncode == 0, helpers.explain(res)
    doc = json.loads(res.stdout)
    assert doc["running"] is True and doc["slot"]["active"] is True
    assert isinstance(doc["slot"]["retained_wal_bytes"], int) and doc["publication"]["tables"] == 25


@dataclasses.dataclass
class Done:
    """What test_changes did, for the tests after it."""

    refs: dict[str, Any] = dataclasses.field(default_factory=dict)
    records: list[Any] = dataclasses.field(default_factory=list)


DONE = Done()


def test_changes_arrive_exactly_once_per_table(db: Settings, svc: PaymentsService) -> None:
    snapshot = count(read_all(db))
    ops = DONE.refs
    # inserts through the service layer (each is one transaction; the triggers' own writes included below)
    ops["merchant"] = m = svc.create_merchant("CDC Shop", "US", "5411", "USD")
    ops["customer"] = cust = svc.create_customer("cdc.person@example.com", "Cdc Person", "US", phone="+15550199")
    ops["method"], _ = pm, _tok = svc.add_card(cust, PAN, 12, 2031, "US")
    party: dict[str, Any] = {"merchant_id": m, "customer_id": cust, "payment_method_id": pm, "currency_code": "USD",
             "device_type": "desktop", "ip_address": "44.10.3.4"}
    # a Decimal: a float is sent as double precision, which payments.pay(…, numeric) does not accept
    ops["r1"] = r1 = svc.pay(**party, amount_minor=12_345, risk_score=Decimal("0.12"))  # type: ignore[arg-type]
    r2 = svc.pay(**party, amount_minor=5_000)
    svc.refund(r1, 2_345)
    dispute = svc.open_dispute(r2, 5_000, "fraudulent")
    svc.resolve_dispute(dispute, won=True)
    keyed = svc.create_charge(**party, amount_minor=777, idempotency_key="cdc-key-1")
    assert svc.create_charge(**party, amount_minor=777, idempotency_key="cdc-key-1").replayed   # writes nothing
    ops["keyed"] = keyed.ref
    svc.fail(keyed.ref, "card_declined")
    with connect(db) as conn:
        product = conn.execute("INSERT INTO payments.products (merchant_id, name, category) VALUES (%s, 'Plus', "
                               "'subscription') RETURNING product_id", (m,)).fetchone()[0]   # type: ignore[index]
        plan = conn.execute("INSERT INTO payments.plans (product_id, name, amount_minor, currency_code, "
                            "billing_interval) VALUES (%s, 'monthly', 999, 'USD', 'month') RETURNING plan_id",
                            (product,)).fetchone()[0]   # type: ignore[index]
        conn.commit()
    sub = svc.create_subscription(cust, plan, pm)
    svc.renew_subscription(sub)
    svc.cancel_subscription(sub)
    ops["gone_customer"] = gone = svc.create_customer("cdc.gone@example.com", "Gone Person", "DE")
    # updates and deletes in SQL, as the application role
    with connect(db) as conn:
        conn.execute("UPDATE payments.payment_methods SET status = 'detached' WHERE payment_method_id = %s", (pm,))
        expired = conn.execute("DELETE FROM payments.idempotency_keys WHERE created_at < now() + interval '1 second' "
                               "RETURNING idempotency_key").fetchall()
        assert expired == [("cdc-key-1",)]                     # the expired key (the history has none)
        conn.execute("INSERT INTO labels.fraud_ground_truth VALUES (%s, %s, true, 'account_takeover', 'simulator')",
                     (r2.charge_id, r2.created_at))
        conn.execute("UPDATE labels.fraud_ground_truth SET scenario = 'friendly_fraud' WHERE charge_id = %s "
                     "AND charge_created_at = %s", (r2.charge_id, r2.created_at))
        row = conn.execute("UPDATE ref.fx_rates SET usd_per_unit = 1.2345678900 WHERE (currency_code, rate_date) = "
                           "(SELECT currency_code, rate_date FROM ref.fx_rates WHERE currency_code = 'EUR' "
                           "ORDER BY rate_date LIMIT 1) RETURNING currency_code, rate_date").fetchone()
        ops["fx"] = row
        conn.execute("UPDATE payments.merchants SET status = 'suspended' WHERE merchant_id = %s", (m,))
        conn.execute("DELETE FROM payments.customers WHERE customer_id = %s", (gone,))
        conn.commit()

    p = PREFIX
    expected_changes = {
        f"{p}.payments.merchants": {"c": 1, "u": 1},
        f"{p}.payments.customers": {"c": 2, "d": 1, "tombstone": 1},
        f"{p}.payments.payment_methods": {"c": 1, "u": 1},
        f"{p}.payments.cards": {"c": 1},
        # pay x2 (insert authorized + capture), refund (refunded total), the keyed charge and its failure,
        # the renewal (insert pending, authorize, capture)
        f"{p}.payments.charges": {"c": 4, "u": 6},
        # two captures, the refund, the dispute and its reversal, the renewal's capture
        f"{p}.payments.balance_transactions": {"c": 6},
        f"{p}.payments.refunds": {"c": 1},
        f"{p}.payments.disputes": {"c": 1, "u": 1},
        f"{p}.payments.idempotency_keys": {"c": 1, "d": 1, "tombstone": 1},
        f"{p}.payments.products": {"c": 1},
        f"{p}.payments.plans": {"c": 1},
        f"{p}.payments.subscriptions": {"c": 1, "u": 2},
        f"{p}.payments.invoices": {"c": 1},
        f"{p}.labels.fraud_ground_truth": {"c": 1, "u": 1},
        f"{p}.ref.fx_rates": {"u": 1},
    }

    def arrived(got: Counts) -> bool:
        return without(got, {"r"}) == expected_changes

    records = read_until(db, arrived)
    assert without(count(records), {"r"}) == expected_changes
    assert without(count(records), {"c", "u", "d", "t", "tombstone"}) == without(snapshot, set())  # no new `r`
    DONE.records = records
    streamed = [json.loads(m.value) for m in records if m.value and json.loads(m.value)["op"] != "r"]
    assert {e["source"]["snapshot"] for e in streamed} == {"false"}
    assert all(isinstance(e["source"]["lsn"], int) and isinstance(e["source"]["txId"], int) for e in streamed)
    # deletes are followed by their tombstone, with the same key
    for topic in (f"{p}.payments.customers", f"{p}.payments.idempotency_keys"):
        msgs = [m for m in records if m.topic == topic]
        i = next(i for i, m in enumerate(msgs) if m.value and json.loads(m.value)["op"] == "d")
        assert msgs[i + 1].value is None and msgs[i + 1].key == msgs[i].key


def test_updates_and_deletes_carry_the_whole_old_row(db: Settings) -> None:
    records, refs = DONE.records, DONE.refs
    assert records, "needs test_changes_arrive_exactly_once_per_table"
    with admin_connect(db) as conn:
        identity = dict(conn.execute(
            "SELECT n.nspname || '.' || c.relname, c.relreplident FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname IN ('ref', 'payments', 'labels') AND c.relkind IN ('r', 'p') "
            "AND NOT c.relispartition").fetchall())
        partitions = conn.execute(
            "SELECT c.relname, c.relreplident, p.relreplident FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE c.relkind = 'r'").fetchall()
        with conn.transaction(force_rollback=True):   # a partition created later takes its parent's identity
            conn.execute("SELECT payments.ensure_month_partitions('charges', '2019-01-01', '2019-01-01')")
            conn.execute("SELECT payments.ensure_month_partitions('balance_transactions', '2019-01-01', '2019-01-01')")
            new = dict(conn.execute("SELECT relname, relreplident FROM pg_class WHERE relname IN "
                                    "('charges_2019_01', 'balance_transactions_2019_01')").fetchall())
    assert {t for t, ident in identity.items() if ident != "f"} == IMMUTABLE
    assert {i for i in identity.values()} == {"f", "d"}
    assert partitions and all(own == parent for _, own, parent in partitions)
    assert new == {"charges_2019_01": "f", "balance_transactions_2019_01": "d"}

    changed = [(m.topic, json.loads(m.value)) for m in records
               if m.value and json.loads(m.value)["op"] in ("u", "d")]
    assert len(changed) == 15
    for topic, e in changed:   # FULL: every column of the old row, never a placeholder
        assert e["before"] is not None, topic
        assert set(e["before"]) == set(e["after"] or e["before"]), topic
    capture = next(e for e in events(records, "payments.charges", "u")
                   if e["after"]["charge_id"] == refs["r1"].charge_id and e["before"]["status"] == "authorized")
    assert (capture["before"]["captured_amount_minor"], capture["after"]["status"],
            capture["after"]["captured_amount_minor"]) == (0, "captured", 12_345)
    detach = events(records, "payments.payment_methods", "u")[0]
    assert (detach["before"]["status"], detach["after"]["status"]) == ("active", "detached")
    assert detach["before"]["payment_method_id"] == refs["method"]
    key = events(records, "payments.idempotency_keys", "d")[0]
    assert key["after"] is None and key["before"]["idempotency_key"] == "cdc-key-1"
    assert key["before"]["charge_id"] == refs["keyed"].charge_id and len(key["before"]["request_hash"]) == 64
    gone = events(records, "payments.customers", "d")[0]
    assert (gone["before"]["customer_id"], gone["before"]["email"], gone["before"]["country_code"]) == (
        refs["gone_customer"], "cdc.gone@example.com", "DE")


def test_values_are_exact_and_no_card_number_reaches_kafka(db: Settings) -> None:
    records, refs = DONE.records, DONE.refs
    r1: ChargeRef = refs["r1"]
    with admin_connect(db) as conn:
        created, authorized = conn.execute(  # type: ignore[misc]
            "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
            "to_char(authorized_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') "
            "FROM payments.charges WHERE charge_id = %s AND created_at = %s", (r1.charge_id, r1.created_at)).fetchone()
        vault_rows = conn.execute("SELECT count(*) FROM vault.card_pans").fetchone()[0]   # type: ignore[index]
    insert = next(e for e in events(records, "payments.charges", "c") if e["after"]["charge_id"] == r1.charge_id)
    after = insert["after"]
    assert after["created_at"] == created and after["authorized_at"] == authorized   # ISO-8601, µs, UTC
    assert len(after["created_at"]) == len("2026-01-02T03:04:05.123456Z")
    assert after["risk_score"] == "0.1200"                             # numeric(5,4): an exact string, scale kept
    assert type(after["amount_minor"]) is int and after["amount_minor"] == 12_345   # minor units: JSON integer
    fx = events(records, "ref.fx_rates", "u")[0]
    assert fx["after"]["usd_per_unit"] == "1.2345678900" and fx["before"]["usd_per_unit"] != "1.2345678900"
    assert fx["after"]["rate_date"] == (refs["fx"][1] - dt.date(1970, 1, 1)).days   # date: days since the epoch
    key = json.loads(next(m.key for m in records if m.topic == f"{PREFIX}.payments.charges"
                          and m.value and json.loads(m.value)["after"]
                          and json.loads(m.value)["after"]["charge_id"] == r1.charge_id))
    assert key == {"charge_id": r1.charge_id, "created_at": created}

    # no PAN anywhere: none of the real card numbers in any key or value, and no string of keys and values
    # (nor number of the row images) that looks like one
    pans = [card.pan for card in build_world(SIM).cards.values()] + [PAN]
    assert vault_rows == len(pans) and contains_pan(json.dumps({"x": PAN}))   # the PANs exist; the scan sees one
    for m in records:
        for raw in (m.key or b"", m.value or b""):
            assert not [p for p in pans if p.encode() in raw], f"a card number in {m.topic}"

    def leaves(node: Any, field: str, numbers: bool) -> Iterator[tuple[str, str]]:
        if isinstance(node, dict):
            for k, v in node.items():
                yield from leaves(v, k, numbers or k in ("before", "after"))
        elif isinstance(node, list):
            for v in node:
                yield from leaves(v, field, numbers)
        elif isinstance(node, str) or (numbers and isinstance(node, int) and not isinstance(node, bool)):
            yield field, str(node)

    scanned = digests = 0
    for m in records:
        for doc in (json.loads(m.key) if m.key else None, json.loads(m.value) if m.value else None):
            for field, text in leaves(doc, "", False):
                if field in DIGESTS:
                    assert re.fullmatch(DIGESTS[field], text), f"{m.topic}.{field} is not a digest"
                    digests += 1
                    continue
                scanned += 1
                assert not contains_pan(text), f"a card number in {m.topic}.{field}"
    assert scanned > 10_000 and digests > 60
    print("\nexample change event (payments.charges, the capture of r1):\n" + json.dumps(next(
        e for e in events(records, "payments.charges", "u") if e["after"]["charge_id"] == r1.charge_id), indent=2))


def test_heartbeats_advance_the_slot_while_no_published_table_changes(db: Settings) -> None:
    with admin_connect(db) as conn:
        conn.autocommit = True
        conn.execute("CREATE TABLE public.cdc_noise (id bigserial PRIMARY KEY, payload text)")   # not published
        conn.execute("INSERT INTO public.cdc_noise (payload) SELECT repeat('x', 500) FROM generate_series(1, 5000)")
        target = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]   # type: ignore[index]
        before = cdc.slot_state(db)
        assert before is not None

        def advanced() -> bool:
            row = conn.execute("SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots "
                               "WHERE slot_name = %s", (target, db.cdc.slot)).fetchone()
            return bool(row and row[0])

        deadline = time.monotonic() + 30   # heartbeat every second here (cdc.heartbeat_ms)
        while not advanced():
            assert time.monotonic() < deadline, f"slot stuck at {cdc.slot_state(db)}, WAL at {target}"
            time.sleep(0.5)
    assert not [m for m in read_all(db) if "cdc_noise" in m.topic]


def test_stop_keeps_the_slot_and_start_resumes_without_a_new_snapshot(db: Settings, svc: PaymentsService) -> None:
    before = count(read_all(db))
    res = cli("cdc", "stop")
    assert res.returncode == 0, helpers.explain(res)
    slot = cdc.slot_state(db)
    assert slot is not None and slot["active"] is False
    res = cli("cdc", "status")
    assert res.returncode == 1 and "NOT_REGISTERED" in res.stdout and "INACTIVE" in res.stdout
    # changes while nothing reads them: the slot keeps them
    customer = svc.create_customer("cdc.later@example.com", "Later Person", "FR")
    with connect(db) as conn:
        conn.execute("UPDATE payments.customers SET phone = '+33100000000' WHERE customer_id = %s", (customer,))
        conn.commit()
    res = cli("cdc", "start", "--wait")
    assert res.returncode == 0, helpers.explain(res)
    customers = f"{PREFIX}.payments.customers"
    want = {**before, customers: {**before[customers], "c": before[customers]["c"] + 1,
                                  "u": before[customers].get("u", 0) + 1}}
    records = read_until(db, lambda got: got == want)
    assert count(records) == want                    # the two changes once each, and no new snapshot
    update = events(records, "payments.customers", "u")[-1]
    assert (update["before"]["phone"], update["after"]["phone"]) == (None, "+33100000000")


def test_stop_drop_slot_removes_the_slot_and_the_publication(db: Settings) -> None:
    res = cli("cdc", "stop", "--drop-slot", "--json")
    assert res.returncode == 0, helpers.explain(res)
    assert json.loads(res.stdout) == {"connector": "cdc-it", "deleted": True, "offsets_reset": True,
                                      "slot_dropped": True, "publication_dropped": True}
    with admin_connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s",
                            (db.cdc.slot,)).fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_publication WHERE pubname = %s",
                            (db.cdc.publication,)).fetchone() == (0,)
    res = cli("cdc", "status", "--json")
    assert res.returncode == 1
    doc = json.loads(res.stdout)
    assert (doc["state"], doc["slot"], doc["publication"], doc["running"]) == ("NOT_REGISTERED", None, None, False)
