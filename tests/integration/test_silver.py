"""PostgreSQL -> Debezium -> Kafka -> bronze -> silver, end to end, reconciled against PostgreSQL.

The module's database (`silver_e2e`) gets a simulated history with app events (some malformed on
purpose), CDC starts, live payments run, then SQL updates (the SCD2 parties among them), deletes and a
column added upstream. Silver catches up; then a range of bronze rows is delivered a second time (a
replayed offset range), more traffic runs while bronze and silver run continuously and silver is killed
with SIGKILL, and silver catches up again from its checkpoint. In the end `lakehouse reconcile` finds no
difference on any table, the SCD2 history is exact, the malformed events are in quarantine, and no
silver file holds a customer's e-mail, name or phone or any card number.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from lakehouse.bronze.tables import EVENT_FAMILIES
from lakehouse.cdc import connector as cdc
from lakehouse.common.config import Settings, load_settings
from lakehouse.common.tables import table_path
from lakehouse.oltp.db import admin_connect, connect
from tests.integration import helpers

DB = "silver_e2e"
SEED, DAYS, MERCHANTS, CUSTOMERS = 11, 2, 6, 60
NOISE = 0.05
OVERRIDES = {"services.postgres.database": DB, "cdc.connector": "silver-e2e", "cdc.slot": "silver_e2e",
             "cdc.publication": "silver_e2e", "cdc.topic_prefix": "silver2e", "cdc.heartbeat_ms": "1000",
             "events.topic_prefix": "silver2eev"}
COMMON = ["--seed", str(SEED), "--merchants", str(MERCHANTS), "--customers", str(CUSTOMERS), "--events",
          "--noise", str(NOISE)]


@pytest.fixture(scope="module")
def db(stack: Any, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    helpers.fresh_database(settings, DB)
    lakehouse_dir = tmp_path_factory.mktemp("silver_e2e") / "lakehouse"
    own = load_settings("test", overrides={**OVERRIDES, "paths.lakehouse_dir": str(lakehouse_dir)})
    yield own
    cdc.stop(own, drop_slot=True, progress=None)


def sets(db: Settings) -> list[str]:
    return [a for k, v in {**OVERRIDES, "paths.lakehouse_dir": db.paths.lakehouse_dir}.items()
            for a in ("--set", f"{k}={v}")]


def run_ok(db: Settings, *args: str) -> Any:
    res = helpers.lakehouse(*sets(db), *args)
    assert res.returncode == 0, helpers.explain(res)
    return res


def silver(spark: Any, db: Settings, name: str) -> Any:
    return spark.read.format("delta").load(table_path(db, f"silver.{name}"))


def snapshot_rows(spark: Any, db: Settings, names: list[str]) -> dict[str, list[tuple[Any, ...]]]:
    return {n: sorted(tuple(r) for r in silver(spark, db, n).collect()) for n in names}


def replay_bronze_range(spark: Any, db: Settings, name: str, rows: int) -> int:
    """Appends the first `rows` change events of partition 0 of a bronze table to it again (a replayed
    offset range, as a producer retry or a reset consumer would deliver); returns the rows replayed."""
    path = table_path(db, f"bronze.{name}")
    again = (spark.read.format("delta").load(path).where((F.col("_partition") == 0) & F.col("op").isNotNull())
             .orderBy("_offset").limit(rows))
    n = again.count()
    again.write.format("delta").mode("append").save(path)
    return n


def test_silver_reconciles_with_postgres_after_replays_and_a_kill(db: Settings, spark: Any) -> None:
    end = dt.datetime.now(dt.UTC).date()
    history = json.loads(run_ok(db, "simulate", "--days", str(DAYS), "--end", str(end), *COMMON).stdout)
    run_ok(db, "cdc", "start", "--wait")
    live = json.loads(run_ok(db, "simulate", "--rate", "25", "--duration", "6", "--workers", "4", *COMMON).stdout)
    assert live["committed"] > 100

    with admin_connect(db) as conn:
        conn.execute("ALTER TABLE payments.merchants ADD COLUMN website text")
        conn.commit()
    with connect(db) as conn:
        merchant = conn.execute("UPDATE payments.merchants SET website = 'https://shop.example', status = 'suspended' "
                                "WHERE merchant_id = (SELECT min(merchant_id) FROM payments.merchants) "
                                "RETURNING merchant_id").fetchone()[0]
        moved = [r[0] for r in conn.execute(
            "UPDATE payments.customers SET phone = '+49 30 5550' || customer_id, updated_at = now() "
            "WHERE customer_id IN (SELECT customer_id FROM payments.customers ORDER BY customer_id LIMIT 5) "
            "RETURNING customer_id")]
        conn.execute("INSERT INTO payments.customers (email, full_name, country_code) "
                     "SELECT 'gone' || g || '@example.com', 'Gone Person' || g, 'DE' FROM generate_series(1, 3) g")
        conn.execute("DELETE FROM payments.customers WHERE email LIKE 'gone%%@example.com'")
        conn.execute("DELETE FROM payments.idempotency_keys WHERE merchant_id = %s", (merchant,))
        conn.commit()
    helpers.wait_for_debezium(db)

    run_ok(db, "run", "bronze", "--once")
    first = helpers.last_json(run_ok(db, "run", "silver", "--once").stdout)
    assert first["silver"]["changes"] > 1000

    # A replayed offset range of two tables: silver must not change at all.
    names = ["charges", "customers"]
    before = snapshot_rows(spark, db, names)
    replayed = (replay_bronze_range(spark, db, "cdc_payments_charges", 40),
                replay_bronze_range(spark, db, "cdc_payments_customers", 15))
    assert replayed == (40, 15)     # partition 0 of customers holds about a third of ~70 change events
    again = helpers.last_json(run_ok(db, "run", "silver", "--once").stdout)
    assert again["silver"]["changes"] == 55
    assert snapshot_rows(spark, db, names) == before

    # More traffic with bronze and silver running continuously; silver is killed with SIGKILL mid-run.
    env = os.environ.copy()
    jobs = {layer: subprocess.Popen([str(helpers.BIN / "lakehouse"), *sets(db), "run", layer,
                                     "--set", f"{layer}.trigger_interval=2 seconds"],
                                    cwd=helpers.ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True) for layer in ("bronze", "silver")}
    try:
        traffic = subprocess.Popen([str(helpers.BIN / "lakehouse"), *sets(db), "simulate", "--rate", "20",
                                    "--duration", "30", "--workers", "2", *COMMON],
                                   cwd=helpers.ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(25)
        os.killpg(jobs["silver"].pid, signal.SIGKILL)
        out, err = traffic.communicate(timeout=180)
        assert traffic.returncode == 0, err[-3000:]
        during = json.loads(out)
        helpers.wait_for_debezium(db)
        jobs["bronze"].send_signal(signal.SIGTERM)
        jobs["bronze"].wait(timeout=120)
    finally:
        for job in jobs.values():
            if job.poll() is None:
                os.killpg(job.pid, signal.SIGKILL)
                job.wait()
    run_ok(db, "run", "bronze", "--once")
    run_ok(db, "run", "silver", "--once")

    # Reconciliation: every table, no difference.
    res = helpers.lakehouse(*sets(db), "reconcile", "--json")
    report = helpers.last_json(res.stdout)
    assert res.returncode == 0 and report["ok"], helpers.explain(res)
    with admin_connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT schemaname || '.' || tablename FROM pg_publication_tables "
                                             "WHERE pubname = %s", (db.cdc.publication,))]
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}  # type: ignore[index]
    assert {f"{t['source']}": t["oltp_rows"] for t in report["tables"]} == counts
    assert all(t["silver_rows"] == t["oltp_rows"] for t in report["tables"])

    # SCD2: the customers whose phone changed have their snapshot version closed at the update's commit
    # and one current version; the deleted ones have no current version.
    versions = silver(spark, db, "customers")
    for customer in moved:
        chain = [r.asDict() for r in versions.where(F.col("customer_id") == customer).orderBy("_seq_lsn").collect()]
        assert [v["is_current"] for v in chain] == [False, True], customer
        assert chain[0]["valid_to"] == chain[1]["valid_from"] and chain[1]["valid_to"] is None
    assert versions.where(F.col("_is_deleted")).count() == 3
    assert versions.where(F.col("is_current")).count() == counts["payments.customers"]

    # The column added upstream, and the merchant's history.
    merchants = silver(spark, db, "merchants").where(F.col("merchant_id") == merchant).orderBy("_seq_lsn")
    assert [(r["status"], r["website"], r["is_current"]) for r in merchants.collect()] == [
        ("active", None, False), ("suspended", "https://shop.example", True)]

    # Conformed money: exact decimals and USD amounts on every charge.
    charges = silver(spark, db, "charges")
    assert charges.where(F.col("amount").isNull() | F.col("amount_usd").isNull()).count() == 0

    # The malformed app events are in quarantine, with their reason; every other event is in silver.
    corrupted = sum(sum(r["events"]["generated"]["corrupted"].values()) for r in (history, live, during))
    quarantined = sum(silver(spark, db, f"quarantine_{t}").count() for t in
                      ("clickstream_events", "session_events", "app_logs", "feedback")
                      if DeltaTable.isDeltaTable(spark, table_path(db, f"silver.quarantine_{t}")))
    assert quarantined == corrupted > 0
    bronze_events = sum(spark.read.format("delta").load(table_path(db, f"bronze.events_{f}"))
                        .select("_topic", "_partition", "_offset").distinct().count() for f in EVENT_FAMILIES)
    silver_events = sum(silver(spark, db, t).count() for t in ("clickstream_events", "session_events", "app_logs",
                                                                "feedback"))
    assert silver_events + quarantined == bronze_events

    # No customer's e-mail, name or phone, and no card number, in any silver file.
    from lakehouse.security.scan import scan_silver

    with connect(db) as conn:
        rows = conn.execute("SELECT email, full_name, phone FROM payments.customers").fetchall()
    needles = [v for row in rows for v in row if v]
    findings = scan_silver(Path(db.lakehouse_dir) / "silver", needles)
    assert findings == []

    # A difference is reported, with a non-zero exit.
    with connect(db) as conn:
        conn.execute("UPDATE payments.merchants SET status = 'closed' WHERE merchant_id = %s", (merchant,))
        conn.commit()
    helpers.wait_for_debezium(db)
    res = helpers.lakehouse(*sets(db), "reconcile", "--json", "--table", "merchants")
    diff = helpers.last_json(res.stdout)
    assert res.returncode == 1 and [(t["table"], t["changed"], t["missing"], t["extra"]) for t in diff["tables"]] == \
        [("merchants", 1, 0, 0)]
