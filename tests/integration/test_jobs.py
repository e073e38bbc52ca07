"""Jobs run both ways (spark-submit and the CLI), on local and multi-process masters, and the
tables they write are read by name from other processes."""

from __future__ import annotations

import re

import psycopg

from lakehouse.common.connections import pg_conninfo
from lakehouse.ops.selfcheck import amount_minor
from tests.integration.helpers import ROOT, explain, lakehouse, last_json, spark_submit


def expected(rows: int, seed: int) -> tuple[int, int]:
    return rows, sum(amount_minor(i, seed) for i in range(rows))


def test_table_written_by_spark_submit_is_read_by_name_from_lakehouse_sql(settings) -> None:
    res = spark_submit(str(ROOT / "jobs" / "selfcheck.py"), "--env", "test", "--rows", "5000", "--seed", "7")
    assert res.returncode == 0, explain(res)
    summary = last_json(res.stdout)
    assert summary["ok"] is True and summary["master"] == "local[2]"
    run_id = summary["run_id"]

    res = lakehouse("sql", "--json", "SELECT count(*) AS n, sum(amount_minor) AS s, min(amount) AS lo "
                                     f"FROM ops.selfcheck WHERE run_id = '{run_id}'")
    assert res.returncode == 0, explain(res)
    [row] = last_json(res.stdout)
    n, s = expected(5000, 7)
    assert (row["n"], row["s"]) == (n, s)
    assert row["lo"] == "0.07"  # exact DECIMAL, printed as a string: id 0 -> 7 minor units

    res = lakehouse("sql", "--json", f"SELECT job, status, rows_written FROM ops.job_runs WHERE run_id = '{run_id}'")
    assert last_json(res.stdout) == [{"job": "selfcheck", "status": "succeeded", "rows_written": 5000}]


def test_job_runs_on_a_multi_process_master_with_executors_in_separate_jvms(settings) -> None:
    res = spark_submit("--master", "local-cluster[2,1,1024]", str(ROOT / "jobs" / "selfcheck.py"),
                       "--env", "test", "--set", "spark.master=", "--rows", "20000", "--seed", "3")
    assert res.returncode == 0, explain(res)
    summary = last_json(res.stdout)
    assert summary["master"] == "local-cluster[2,1,1024]"
    assert summary["executor_jvms"] == 2
    check = summary["selfcheck"]
    assert (check["rows"], check["sum_minor"]) == expected(20000, 3)
    assert check["partitions_read"] == 8


def test_lakehouse_run_uses_the_same_job(settings) -> None:
    res = lakehouse("run", "selfcheck", "--rows", "1000", "--seed", "11")
    assert res.returncode == 0, explain(res)
    summary = last_json(res.stdout)
    assert (summary["selfcheck"]["rows"], summary["selfcheck"]["sum_minor"]) == expected(1000, 11)


def test_a_bad_setting_fails_fast_naming_the_key() -> None:
    res = spark_submit(str(ROOT / "jobs" / "selfcheck.py"), "--env", "test", "--set", "spark.shuffle_partitions=zero")
    assert res.returncode == 2, explain(res)
    # spark-submit merges the Python driver's stderr into its stdout
    assert "spark.shuffle_partitions: expected an integer, got 'zero'" in res.stdout + res.stderr, explain(res)


def test_demo_prints_its_summary(stack, settings) -> None:
    try:
        # the whole chain through gold: ~7-10 min on a 2-core machine; the timeout only guards against a hang
        res = lakehouse("demo", "--rows", "2000", "--days", "3", "--live-seconds", "4", "--rate", "25", timeout=1200)
    finally:   # the demo leaves CDC running, as a user wants it; the other tests do not
        stop = lakehouse("cdc", "stop", "--drop-slot")
    assert res.returncode == 0, explain(res)
    assert stop.returncode == 0, explain(stop)
    with psycopg.connect(**pg_conninfo(settings)) as conn:
        charges, refunds, disputes = conn.execute(
            "SELECT (SELECT count(*) FROM payments.charges), (SELECT count(*) FROM payments.refunds), "
            "(SELECT count(*) FROM payments.disputes)").fetchone()
    assert re.search(rf"OLTP charges +\| {charges} \(", res.stdout), explain(res)
    assert f"OLTP refunds / disputes  | {refunds} / {disputes}" in res.stdout
    live = re.search(r"live payments +\| (\d+) at", res.stdout)
    assert live and int(live.group(1)) == 100, explain(res)   # 25/s for 4 s, every one committed
    n, s = expected(2000, 42)
    assert f"rows written / read back | {n} / {n} expected" in res.stdout, explain(res)
    assert f"sum(amount_minor)        | {s} / {s} expected" in res.stdout
    # every charge of the OLTP database reached bronze through Debezium and Kafka
    assert f"charges bronze / OLTP    | {charges:,} / {charges:,}" in res.stdout, explain(res)
    # silver caught up and matches PostgreSQL row for row on every captured table
    from lakehouse.cdc.connector import CAPTURED_SCHEMAS
    from lakehouse.oltp.erd import introspect

    with psycopg.connect(**pg_conninfo(settings)) as conn:
        tables = introspect(conn, CAPTURED_SCHEMAS)
        rows = sum(conn.execute(f"SELECT count(*) FROM {t.qualified}").fetchone()[0] for t in tables)
    assert f"reconcile silver vs OLTP | {len(tables)} tables, {rows:,} rows, 0 differing" in res.stdout, explain(res)
    # gold was built and its net revenue per merchant, day and currency equals the ledger's
    from lakehouse.gold.tables import GOLD_TABLES

    with psycopg.connect(**pg_conninfo(settings)) as conn:
        [(merchant_days,)] = conn.execute(
            "SELECT count(*) FROM (SELECT DISTINCT (created_at AT TIME ZONE 'UTC')::date, merchant_id, currency_code "
            "FROM payments.balance_transactions) d").fetchall()
    assert re.search(rf"gold tables / rows +\| {len(GOLD_TABLES)} / ", res.stdout), explain(res)
    assert f"reconcile gold vs ledger | {merchant_days:,} merchant-days, net revenue equal" in res.stdout
    assert "result                   | OK" in res.stdout
