"""PostgreSQL -> Debezium -> Kafka -> bronze, end to end, counted against PostgreSQL itself.

The module's database (`bronze_e2e`) gets a simulated history with its app events (some of them
malformed on purpose), then CDC starts, live payments run through the service layer with their events,
and SQL updates, deletes and an `ALTER TABLE … ADD COLUMN` follow. What PostgreSQL committed in that
window is read independently of Debezium, from a second logical replication slot with the
`test_decoding` plugin, created just before the connector: per table, bronze must hold exactly the
snapshot rows plus one change event per decoded insert, update and delete (plus the delete's tombstone).
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import functions as F

from lakehouse.cdc import connector as cdc
from lakehouse.common.config import Settings, load_settings
from lakehouse.common.connections import kafka_bootstrap
from lakehouse.common.tables import table_path
from lakehouse.oltp.db import admin_connect, connect
from tests.integration import helpers

DB = "bronze_e2e"
TRUTH_SLOT = "bronze_e2e_truth"
SEED, DAYS, MERCHANTS, CUSTOMERS = 5, 2, 6, 60
NOISE = 0.05
# test_decoding: `table payments.charges_2026_11: UPDATE: charge_id[bigint]:1 …`
CHANGE = re.compile(r'^table ("?[^:]+"?)\.("?[^:]+"?): (INSERT|UPDATE|DELETE|TRUNCATE):')
OPS = {"INSERT": "c", "UPDATE": "u", "DELETE": "d", "TRUNCATE": "t"}
OVERRIDES = {"services.postgres.database": DB, "cdc.connector": "bronze-e2e", "cdc.slot": "bronze_e2e",
             "cdc.publication": "bronze_e2e", "cdc.topic_prefix": "bronze2e", "cdc.heartbeat_ms": "1000",
             "events.topic_prefix": "bronze2eev"}


@pytest.fixture(scope="module")
def db(stack: Any, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """The module's database, CDC names, topic prefixes and lakehouse directory; afterwards the connector,
    its slot and the truth slot are dropped (a slot keeps WAL and blocks DROP DATABASE)."""
    helpers.fresh_database(settings, DB)
    lakehouse_dir = tmp_path_factory.mktemp("bronze_e2e") / "lakehouse"
    own = load_settings("test", overrides={**OVERRIDES, "paths.lakehouse_dir": str(lakehouse_dir)})
    yield own
    try:
        cdc.stop(own, drop_slot=True, progress=None)
    finally:
        with admin_connect(own) as conn:
            conn.autocommit = True
            conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                         (TRUTH_SLOT,))


def cli(db: Settings, *args: str) -> Any:
    sets = {**OVERRIDES, "paths.lakehouse_dir": db.paths.lakehouse_dir}
    return helpers.lakehouse(*[a for k, v in sets.items() for a in ("--set", f"{k}={v}")], *args)


def run_ok(db: Settings, *args: str) -> Any:
    res = cli(db, *args)
    assert res.returncode == 0, helpers.explain(res)
    return res


def published_tables(db: Settings) -> list[str]:
    with admin_connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT schemaname || '.' || tablename FROM pg_publication_tables "
                                           "WHERE pubname = %s ORDER BY 1", (db.cdc.publication,))]


def decoded_changes(db: Settings) -> dict[str, collections.Counter[str]]:
    """Per table (partitions counted under their root): the committed inserts, updates, deletes and
    truncates since the truth slot was created, as PostgreSQL's own logical decoding reports them."""
    with admin_connect(db) as conn:
        conn.autocommit = True
        lines = [r[0] for r in conn.execute("SELECT data FROM pg_logical_slot_get_changes(%s, NULL, NULL, "
                                            "'skip-empty-xacts', '1')", (TRUTH_SLOT,))]
        roots: dict[str, str] = {}
        out: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        for line in lines:
            m = CHANGE.match(line)
            if not m:
                continue
            name = f"{m.group(1)}.{m.group(2)}"
            if name not in roots:
                roots[name] = conn.execute(   # a partition's root; NULL for a plain table
                    "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n "
                    "ON n.oid = c.relnamespace WHERE c.oid = coalesce(pg_partition_root(%s::regclass), %s::regclass)",
                    (name, name)).fetchone()[0]   # type: ignore[index]
            out[roots[name]][OPS[m.group(3)]] += 1
        return out


def kafka_totals(db: Settings, topics: list[str]) -> dict[str, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap(db))
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        lo, hi = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
        totals: dict[str, int] = collections.Counter()
        for tp in tps:
            totals[tp.topic] += hi[tp] - lo[tp]
        return dict(totals)
    finally:
        consumer.close()


def wait_for_kafka(db: Settings, expected: dict[str, int], timeout_s: float = 180) -> None:
    """Until every topic holds exactly `expected` messages (then 3 s more, so that any extra one shows)."""
    deadline = time.monotonic() + timeout_s
    while (got := kafka_totals(db, sorted(expected))) != expected:
        assert time.monotonic() < deadline, f"Kafka never reached the expected counts: {got} != {expected}"
        time.sleep(1)
    time.sleep(3)


def test_bronze_holds_exactly_the_changes_postgres_committed(db: Settings, spark: Any) -> None:
    end = dt.datetime.now(dt.UTC).date()
    common = ["--seed", str(SEED), "--merchants", str(MERCHANTS), "--customers", str(CUSTOMERS), "--events",
              "--noise", str(NOISE)]
    history = json.loads(run_ok(db, "simulate", "--days", str(DAYS), "--end", str(end), *common).stdout)

    # The window opens here: the truth slot, then the connector (nothing writes in between).
    cdc.ensure_publication(db)           # what `cdc start` creates first; it names the tables captured
    tables = published_tables(db)
    assert len(tables) == 25
    with admin_connect(db) as conn:
        conn.autocommit = True
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (TRUTH_SLOT,))
        snapshot = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}  # type: ignore[index]
    run_ok(db, "cdc", "start", "--wait")
    assert published_tables(db) == tables
    topic = {t: f"{db.cdc.topic_prefix}.{t}" for t in tables}
    wait_for_kafka(db, {topic[t]: n for t, n in snapshot.items()})

    # Live payments with their events, then updates, deletes and a column added upstream.
    live = json.loads(run_ok(db, "simulate", "--rate", "25", "--duration", "8", "--workers", "4",
                                    *common).stdout)
    assert live["committed"] > 150 and live["events"]["failed"] == 0
    with admin_connect(db) as conn:
        conn.execute("ALTER TABLE payments.merchants ADD COLUMN website text")
        conn.commit()
    with connect(db) as conn:
        merchant = conn.execute("UPDATE payments.merchants SET website = 'https://shop.example' WHERE merchant_id = "
                                "(SELECT min(merchant_id) FROM payments.merchants) RETURNING merchant_id").fetchone()[0]
        conn.execute("UPDATE payments.payment_methods SET status = 'detached' WHERE payment_method_id IN "
                     "(SELECT payment_method_id FROM payments.payment_methods ORDER BY 1 LIMIT 3)")
        conn.execute("INSERT INTO payments.customers (email, full_name, country_code) "
                     "SELECT 'gone' || g || '@example.com', 'Gone ' || g, 'DE' FROM generate_series(1, 4) g")
        conn.execute("DELETE FROM payments.customers WHERE email LIKE 'gone%%@example.com'")
        conn.execute("DELETE FROM payments.idempotency_keys")
        conn.commit()

    changes = decoded_changes(db)
    assert set(changes) <= set(tables)
    with admin_connect(db) as conn:   # the decoded window accounts for every row: now = snapshot + inserts - deletes
        now = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}  # type: ignore[index]
    assert now == {t: snapshot[t] + changes[t]["c"] - changes[t]["d"] for t in tables}
    assert changes["payments.charges"]["c"] >= live["committed"] > 150
    assert changes["payments.customers"]["d"] == 4 and changes["payments.merchants"]["u"] >= 1
    assert sum(c["u"] for c in changes.values()) > 100 and not any(c["t"] for c in changes.values())
    expected_kafka = {topic[t]: snapshot[t] + sum(changes[t].values()) + changes[t]["d"] for t in tables}
    wait_for_kafka(db, expected_kafka)

    res = run_ok(db, "run", "bronze", "--once")
    summary = helpers.last_json(res.stdout)
    events_total = history["events"]["acknowledged"] + live["events"]["acknowledged"]
    assert summary["rows_written"] == sum(expected_kafka.values()) + events_total

    def bronze(name: str) -> Any:
        return spark.read.format("delta").load(table_path(db, f"bronze.{name}"))

    # Per table: snapshot rows as `r`, each decoded change as c / u / d, a tombstone per delete, no error.
    for t in tables:
        expected = {**{op: n for op, n in changes[t].items() if n}, "r": snapshot[t], "tombstone": changes[t]["d"]}
        expected = {op: n for op, n in expected.items() if n}
        name = "cdc_" + t.replace(".", "_")
        if not expected:
            assert not Path(table_path(db, f"bronze.{name}")).exists(), t
            continue
        rows = bronze(name)
        got = {("tombstone" if r["_is_tombstone"] else r["op"]): r["count"]
               for r in rows.groupBy("op", "_is_tombstone").count().collect()}
        assert got == expected, t
        assert rows.where(F.col("_parse_error").isNotNull()).count() == 0, t
        assert rows.select("_partition", "_offset").distinct().count() == rows.count(), t

    # The column added in PostgreSQL is in the change event's after-image, by path.
    merchants = bronze("cdc_payments_merchants")
    assert [tuple(r) for r in merchants.where(F.expr("after:website::string") == "https://shop.example")
            .select(F.expr("after:merchant_id::bigint"), "op").collect()] == [(merchant, "u")]

    # The app events: every acknowledged one, the corrupted ones with their reason.
    produced: collections.Counter[str] = collections.Counter()
    corrupted: collections.Counter[str] = collections.Counter()
    for report in (history["events"], live["events"]):
        produced.update({t.rsplit(".", 1)[1]: n for t, n in report["topics"].items()})
        corrupted.update(report["generated"]["corrupted"])
    assert sum(corrupted.values()) >= 40   # the noise is there to be found
    errors: collections.Counter[str] = collections.Counter()
    for family, n in produced.items():
        rows = bronze(f"events_{family}")
        assert rows.count() == n, family
        for r in rows.where(F.col("_parse_error").isNotNull()).groupBy("_parse_error").count().collect():
            errors[re.sub(r": .*", "", r["_parse_error"])] += r["count"]
    assert errors == {k: v for k, v in {
        "unknown schema_version": corrupted["unknown_version"],
        "missing event_id": corrupted["missing_event_id"],
        "invalid JSON": errors["invalid JSON"], "not a JSON object": errors["not a JSON object"]}.items() if v}
    assert errors["invalid JSON"] + errors["not a JSON object"] == corrupted["not_json"] + corrupted["truncated_json"]
