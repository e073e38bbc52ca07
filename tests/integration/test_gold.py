"""Gold end to end: built from a reconciled silver (the `gold_lakehouse` fixture), reconciled with the OLTP
ledger, rebuilt identically, and every query of the pack answering what PostgreSQL computes on its own.

The PostgreSQL answers are written here, in plain SQL over the OLTP tables, independently of gold's
Spark code: USD amounts use the FX rate in effect on the UTC day (the latest `ref.fx_rates` row on or
before it), rounded half away from zero to cents, per amount, as the conformance rule says.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from lakehouse.common.tables import table_path
from lakehouse.gold.tables import FACT_PAYMENTS, GOLD_TABLES, UNKNOWN_SK
from lakehouse.oltp.db import connect
from tests.conftest import catalog_of
from tests.integration import helpers
from tests.integration.conftest import GoldLakehouse, run_query

# USD of a minor-unit amount at the rate in effect on a timestamp's UTC day.
_FX = """CREATE TEMP VIEW {name} AS
SELECT t.*, (t.{ts} AT TIME ZONE 'UTC')::date AS day, c.minor_unit, fx.rate
FROM {table} t
JOIN ref.currencies c USING (currency_code)
LEFT JOIN LATERAL (SELECT usd_per_unit AS rate FROM ref.fx_rates f
                   WHERE f.currency_code = t.currency_code AND f.rate_date <= (t.{ts} AT TIME ZONE 'UTC')::date
                   ORDER BY f.rate_date DESC LIMIT 1) fx ON true"""
USD = "round({col}::numeric / 10::numeric ^ minor_unit * rate, 2)"


@pytest.fixture(scope="module")
def pg(gold_lakehouse: GoldLakehouse) -> Iterator[psycopg.Connection[Any]]:
    with connect(gold_lakehouse.settings, autocommit=True) as conn:    # a failed check leaves no broken transaction
        for name, table, ts in (("ledger", "payments.balance_transactions", "created_at"),
                                ("charges", "payments.charges", "created_at")):
            conn.execute(_FX.format(name=f"fx_{name}", table=table, ts=ts))
        yield conn


@pytest.fixture(scope="module", autouse=True)
def catalog(spark: Any, gold_lakehouse: GoldLakehouse, settings: Any) -> Iterator[None]:
    """The queries below run in this process (one Spark session, not one per query) on the module's
    lakehouse; `test_the_cli_runs_the_pack` runs them as a separate `lakehouse query` process."""
    with catalog_of(spark, gold_lakehouse.settings, settings):
        yield


def query(lake: GoldLakehouse, name: str, *params: str) -> list[dict[str, Any]]:
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    assert spark is not None
    return run_query(spark, name, *params)


def rows_of(result: list[dict[str, Any]], *columns: str) -> list[tuple[Any, ...]]:
    """The columns of a query's JSON rows, decimals and dates in comparable form."""
    return [tuple(_norm(r[c]) for c in columns) for r in result]


def _norm(v: Any) -> Any:
    if isinstance(v, (float, Decimal)) or (isinstance(v, str) and v.replace(".", "", 1).lstrip("-").isdigit()
                                            and "." in v):
        return Decimal(str(v)).normalize()
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    return v


def sql(pg: psycopg.Connection[Any], text: str, *args: Any) -> list[tuple[Any, ...]]:
    return [tuple(_norm(v) for v in row) for row in pg.execute(text, args).fetchall()]


REVENUE = f"""SELECT day, merchant_id, count(*) FILTER (WHERE kind = 'charge'),
       coalesce(sum({USD.format(col='amount_minor')}) FILTER (WHERE kind = 'charge'), 0),
       coalesce(-sum({USD.format(col='amount_minor')}) FILTER (WHERE kind = 'refund'), 0),
       coalesce(-sum({USD.format(col='amount_minor')}) FILTER (WHERE kind IN ('dispute', 'dispute_won')), 0),
       sum({USD.format(col='fee_minor')}), sum({USD.format(col='net_minor')})
FROM fx_ledger"""


def test_gold_is_built_and_reconciles_with_the_ledger(gold_lakehouse: GoldLakehouse, pg: Any, spark: Any) -> None:
    lake = gold_lakehouse
    assert set(lake.build["gold"]["rows"]) == {t.name for t in GOLD_TABLES}
    [(charges, labelled, disputed)] = sql(pg, "SELECT (SELECT count(*) FROM payments.charges), "
                                              "(SELECT count(*) FROM labels.fraud_ground_truth WHERE is_fraud), "
                                              "(SELECT count(DISTINCT charge_id) FROM payments.disputes)")
    assert lake.build["gold"]["rows"]["fact_payments"] == charges
    assert disputed > 10 and labelled > 100, "the history should have disputes and fraud to test with"

    payments = spark.read.format("delta").load(table_path(lake.settings, FACT_PAYMENTS.full_name))
    assert payments.where("is_fraud").count() == labelled
    assert payments.where("disputed").count() == disputed
    unknown = payments.where(f"merchant_sk = {UNKNOWN_SK} OR customer_sk = {UNKNOWN_SK} "
                             f"OR payment_method_key = {UNKNOWN_SK}").count()
    assert unknown == 0     # every member has arrived in silver: no fact points at an unknown member

    res = helpers.lakehouse(*lake.sets, "reconcile", "--layer", "gold", "--json")
    report = helpers.last_json(res.stdout)
    [(merchant_days,)] = sql(pg, "SELECT count(*) FROM (SELECT DISTINCT (created_at AT TIME ZONE 'UTC')::date, "
                                 "merchant_id, currency_code FROM payments.balance_transactions) d")
    assert res.returncode == 0 and report["ok"], helpers.explain(res)
    assert [(t["table"], t["oltp_rows"], t["silver_rows"]) for t in report["tables"]] == [
        ("gold.agg_revenue_daily", merchant_days, merchant_days)]


def test_revenue_queries_match_postgres(gold_lakehouse: GoldLakehouse, pg: Any) -> None:
    lake = gold_lakehouse
    expected = sql(pg, f"{REVENUE} GROUP BY day, merchant_id ORDER BY day, merchant_id")
    got = rows_of(query(lake, "revenue_daily"), "date", "merchant_id", "payments", "gross_usd", "refunds_usd",
                  "disputes_usd", "fees_usd", "net_usd")
    assert got == expected
    assert any(r[4] != 0 for r in got) and any(r[5] != 0 for r in got)    # refunds and disputes are in it

    # Parameters: one merchant, ten days.
    lo, hi = expected[5][0], expected[40][0]
    one = rows_of(query(lake, "revenue_daily", "merchant_id=2", f"start_date={lo}", f"end_date={hi}"),
                  "date", "merchant_id", "net_usd")
    assert one == [(r[0], r[1], r[7]) for r in expected if r[1] == 2 and lo <= r[0] <= hi] and one

    per_merchant = sql(pg, f"""SELECT merchant_id, currency_code, count(*) FILTER (WHERE kind = 'charge'),
        sum({USD.format(col='net_minor')}), sum(net_minor::numeric / 10::numeric ^ minor_unit)
        FROM fx_ledger GROUP BY 1, 2 ORDER BY 1, 2""")
    assert rows_of(query(lake, "net_revenue_usd"), "merchant_id", "currency_code", "payments", "net_usd",
                   "net") == per_merchant

    ranked = sql(pg, f"""SELECT rank() OVER (ORDER BY net DESC), merchant_id, net FROM (
        SELECT merchant_id, sum({USD.format(col='net_minor')}) AS net FROM fx_ledger GROUP BY 1) m
        ORDER BY 1, 2 LIMIT 3""")
    assert rows_of(query(lake, "top_merchants", "top=3"), "rank", "merchant_id", "net_usd") == ranked

    monthly = sql(pg, f"""SELECT month, net, lag(net) OVER (ORDER BY month),
        round(100.0 * (net - lag(net) OVER (ORDER BY month)) / nullif(lag(net) OVER (ORDER BY month), 0), 2)
        FROM (SELECT date_trunc('month', day)::date AS month, sum({USD.format(col='net_minor')}) AS net
              FROM fx_ledger GROUP BY 1) m ORDER BY 1""")
    assert len(monthly) >= 2
    assert rows_of(query(lake, "revenue_monthly_growth"), "month_start", "net_usd", "previous_net_usd",
                   "growth_pct") == monthly


def test_moving_average_covers_every_calendar_day(gold_lakehouse: GoldLakehouse, pg: Any) -> None:
    # The calendar is every day from the first to the last day any fact has.
    expected = sql(pg, f"""WITH bounds AS (
        SELECT min(d) AS lo, max(d) AS hi FROM (
            SELECT (created_at AT TIME ZONE 'UTC')::date AS d FROM payments.charges
            UNION ALL SELECT (created_at AT TIME ZONE 'UTC')::date FROM payments.refunds
            UNION ALL SELECT (opened_at AT TIME ZONE 'UTC')::date FROM payments.disputes
            UNION ALL SELECT (created_at AT TIME ZONE 'UTC')::date FROM payments.subscriptions
            UNION ALL SELECT (canceled_at AT TIME ZONE 'UTC')::date FROM payments.subscriptions
            UNION ALL SELECT (paid_at AT TIME ZONE 'UTC')::date FROM payments.invoices WHERE status = 'paid') a),
        days AS (SELECT generate_series(lo, hi, interval '1 day')::date AS day FROM bounds),
        daily AS (SELECT d.day, coalesce(sum({USD.format(col='net_minor')}), 0) AS net
                  FROM days d LEFT JOIN fx_ledger l ON l.day = d.day GROUP BY d.day)
        SELECT day, net, round(round(avg(net) OVER (ORDER BY day ROWS BETWEEN 6 PRECEDING AND CURRENT ROW), 6), 2)
        FROM daily ORDER BY day""")
    got = rows_of(query(gold_lakehouse, "revenue_moving_avg_7d"), "date", "net_usd", "net_usd_avg_7d")
    assert got == expected and len(got) >= 45


def test_fraud_and_dispute_queries_match_postgres(gold_lakehouse: GoldLakehouse, pg: Any) -> None:
    lake = gold_lakehouse
    ratio = sql(pg, """WITH p AS (
            SELECT merchant_id, date_trunc('month', created_at AT TIME ZONE 'UTC')::date AS m, count(*) AS captured
            FROM payments.charges WHERE status = 'captured' GROUP BY 1, 2),
        d AS (SELECT c.merchant_id, date_trunc('month', x.opened_at AT TIME ZONE 'UTC')::date AS m, count(*) AS disputes
              FROM payments.disputes x JOIN payments.charges c ON c.charge_id = x.charge_id GROUP BY 1, 2)
        SELECT coalesce(p.merchant_id, d.merchant_id), coalesce(p.m, d.m), coalesce(p.captured, 0),
               coalesce(d.disputes, 0), round(100.0 * coalesce(d.disputes, 0) / nullif(p.captured, 0), 3)
        FROM p FULL JOIN d ON d.merchant_id = p.merchant_id AND d.m = p.m ORDER BY 1, 2""")
    got = rows_of(query(lake, "dispute_ratio"), "merchant_id", "month_start", "captured_payments", "disputes",
                  "dispute_ratio_pct")
    assert got == ratio and any(r[3] > 0 for r in got)

    fraud = f"""SELECT {{dim}}, count(*), count(*) FILTER (WHERE l.is_fraud),
        round(100.0 * count(*) FILTER (WHERE l.is_fraud) / count(*), 3),
        coalesce(sum({USD.format(col='amount_minor')}) FILTER (WHERE l.is_fraud), 0),
        count(*) FILTER (WHERE EXISTS (SELECT 1 FROM payments.disputes x WHERE x.charge_id = c.charge_id))
        FROM fx_charges c LEFT JOIN labels.fraud_ground_truth l ON l.charge_id = c.charge_id
        LEFT JOIN payments.cards k ON k.payment_method_id = c.payment_method_id
        GROUP BY 1 ORDER BY 4 DESC, 1"""
    columns = ("value", "payments", "fraud_payments", "fraud_rate_pct", "fraud_amount_usd", "disputed_payments")
    assert rows_of(query(lake, "fraud_rates", "by=device"), *columns) == sql(pg, fraud.format(dim="c.device_type"))
    by_bin = sql(pg, fraud.format(dim="coalesce(k.issuing_country::text, 'ZZ')"))
    assert rows_of(query(lake, "fraud_rates", "by=bin_country"), *columns) == by_bin and len(by_bin) > 3

    with pytest.raises(Exception, match="unknown dimension colour"):
        query(lake, "fraud_rates", "by=colour")

    # Card testing: the bursts the query finds are exactly the simulator's card-testing fraud.
    bursts = query(lake, "card_testing")
    found = sorted(c for b in bursts for c in b["charge_ids"])
    truth = [r[0] for r in sql(pg, "SELECT charge_id FROM labels.fraud_ground_truth WHERE scenario = 'card_testing' "
                                   "ORDER BY 1")]
    assert found == truth and len(bursts) >= 30
    # gold.agg_small_payments holds the payments up to 10 USD: a larger bound is refused, by name.
    with pytest.raises(Exception, match=r"max_amount_usd 10\.01 is over 10"):
        query(lake, "card_testing", "max_amount_usd=10.01")


def test_customer_queries_match_postgres(gold_lakehouse: GoldLakehouse, pg: Any) -> None:
    lake = gold_lakehouse
    rfm = f"""WITH c AS (
        SELECT customer_id, max((created_at AT TIME ZONE 'UTC')::date) AS last_day, count(*) AS f,
               sum({USD.format(col='captured_amount_minor')}) AS m
        FROM fx_charges WHERE status = 'captured' GROUP BY 1),
      s AS (SELECT *, (max(last_day) OVER ()) - last_day AS r FROM c),
      q AS (SELECT *, ntile(5) OVER (ORDER BY r DESC, customer_id) AS rs, ntile(5) OVER (ORDER BY f, customer_id) AS fs,
                   ntile(5) OVER (ORDER BY m, customer_id) AS ms FROM s)
      SELECT customer_id, r, f, m, rs, fs, ms,
             CASE WHEN rs >= 4 AND fs >= 4 THEN 'champions' WHEN rs >= 3 AND fs >= 3 THEN 'loyal'
                  WHEN rs >= 4 AND fs <= 2 THEN 'new' WHEN rs <= 2 AND fs >= 3 THEN 'at_risk'
                  WHEN rs <= 2 AND fs <= 2 THEN 'hibernating' ELSE 'needs_attention' END AS segment FROM q"""
    segments = sql(pg, f"SELECT segment, count(*), sum(m) FROM ({rfm}) x GROUP BY 1 ORDER BY 3 DESC, 1")
    assert rows_of(query(lake, "customer_segments"), "segment", "customers", "spend_usd") == segments
    assert len(segments) >= 4

    cohorts = sql(pg, """WITH a AS (
            SELECT DISTINCT customer_id, date_trunc('month', created_at AT TIME ZONE 'UTC')::date AS m
            FROM payments.charges WHERE status = 'captured'),
        c AS (SELECT customer_id, min(m) AS cohort FROM a GROUP BY 1),
        s AS (SELECT cohort, count(*) AS size FROM c GROUP BY 1)
        SELECT c.cohort, (extract(year FROM age(a.m, c.cohort)) * 12 + extract(month FROM age(a.m, c.cohort)))::int,
               s.size, count(*), round(100.0 * count(*) / s.size, 2)
        FROM c JOIN a USING (customer_id) JOIN s USING (cohort) GROUP BY c.cohort, a.m, s.size ORDER BY 1, 2""")
    got = rows_of(query(lake, "cohort_retention"), "cohort_month", "months_since", "cohort_size", "active_customers",
                  "retention_pct")
    assert got == cohorts and any(r[1] > 0 for r in got)


# Per month (first to last month of any subscription event) and plan: active at the start, new, churned,
# active at the end, and the plan's product, monthly price and the month's last USD rate.
PLAN_MONTHS = """WITH t AS (SELECT created_at AS t FROM payments.subscriptions UNION ALL
                  SELECT canceled_at FROM payments.subscriptions UNION ALL SELECT paid_at FROM payments.invoices),
months AS (SELECT generate_series(date_trunc('month', min(t) AT TIME ZONE 'UTC'),
                                  date_trunc('month', max(t) AT TIME ZONE 'UTC'), interval '1 month') AS m FROM t),
b AS (SELECT m AT TIME ZONE 'UTC' AS lo, (m + interval '1 month') AT TIME ZONE 'UTC' AS hi, m::date AS month
      FROM months),
rate AS (SELECT DISTINCT ON (currency_code, date_trunc('month', rate_date)) currency_code,
                date_trunc('month', rate_date)::date AS month, usd_per_unit
         FROM ref.fx_rates ORDER BY currency_code, date_trunc('month', rate_date), rate_date DESC),
plan AS (SELECT p.plan_id, pr.product_id, p.currency_code,
                round(p.amount_minor::numeric / 10::numeric ^ c.minor_unit
                      / CASE WHEN billing_interval = 'year' THEN 12 ELSE 1 END, 4) AS monthly
         FROM payments.plans p JOIN payments.products pr USING (product_id)
         JOIN ref.currencies c USING (currency_code)),
pp AS (SELECT b.month, s.plan_id,
              count(*) FILTER (WHERE s.created_at < b.lo AND (s.canceled_at IS NULL OR s.canceled_at >= b.lo)) AS a0,
              count(*) FILTER (WHERE s.created_at >= b.lo AND s.created_at < b.hi) AS new,
              count(*) FILTER (WHERE s.canceled_at >= b.lo AND s.canceled_at < b.hi) AS churned,
              count(*) FILTER (WHERE s.created_at < b.hi AND (s.canceled_at IS NULL OR s.canceled_at >= b.hi)) AS a1
       FROM b CROSS JOIN payments.subscriptions s GROUP BY 1, 2),
x AS (SELECT pp.*, plan.product_id, pp.a1 * round(plan.monthly * rate.usd_per_unit, 2) AS mrr
      FROM pp JOIN plan USING (plan_id)
      LEFT JOIN rate ON rate.currency_code = plan.currency_code AND rate.month = pp.month)
"""


def test_subscription_queries_match_postgres(gold_lakehouse: GoldLakehouse, pg: Any) -> None:
    lake = gold_lakehouse
    expected = sql(pg, f"""{PLAN_MONTHS} SELECT month, sum(a0), sum(new), sum(churned), sum(a1),
        round(100.0 * sum(churned) / nullif(sum(a0), 0), 2), sum(mrr) FROM x GROUP BY 1 ORDER BY 1""")
    got = rows_of(query(lake, "subscription_mrr_churn"), "month_start", "active_start", "new_subscriptions", "churned",
                  "active_end", "churn_rate_pct", "mrr_usd")
    assert got == expected and len(got) >= 2 and sum(r[4] for r in got) > 0

    month = got[-1][0]
    products = sql(pg, f"""{PLAN_MONTHS}, inv AS (
            SELECT s.plan_id, count(*) AS paid
            FROM payments.invoices i JOIN payments.subscriptions s USING (subscription_id)
            WHERE i.status = 'paid' AND date_trunc('month', i.paid_at AT TIME ZONE 'UTC')::date = %s GROUP BY 1)
        SELECT x.product_id, sum(x.a1), sum(x.mrr), coalesce(sum(inv.paid), 0)
        FROM x LEFT JOIN inv USING (plan_id) WHERE x.month = %s GROUP BY 1 ORDER BY 3 DESC, 1""",
                   dt.date.fromisoformat(month), dt.date.fromisoformat(month))
    got_products = rows_of(query(lake, "product_performance", f"month={month}"), "product_id",
                           "active_subscriptions", "mrr_usd", "invoices_paid")
    assert got_products == products and got_products


def test_compliance_report_matches_silver(gold_lakehouse: GoldLakehouse, spark: Any) -> None:
    lake = gold_lakehouse
    silver = Path(lake.settings.lakehouse_dir) / "silver"
    checks = spark.read.format("delta").load(str(silver / "dq_results")).groupBy("table").agg(
        {"*": "count", "unexpected_count": "sum"}).collect()
    expected_checks = {r["table"]: (r["count(1)"], r["sum(unexpected_count)"]) for r in checks}
    quarantined = {d.name.removeprefix("quarantine_"): spark.read.format("delta").load(str(d)).count()
                   for d in silver.iterdir() if d.name.startswith("quarantine_")}
    report = {r["table"]: r for r in query(lake, "compliance_report")}
    assert {t: (r["checks"], r["unexpected_rows"]) for t, r in report.items() if r["checks"]} == expected_checks
    assert {t: r["quarantined_rows"] for t, r in report.items() if r["quarantined_rows"]} == \
        {t: n for t, n in quarantined.items() if n}
    assert sum(quarantined.values()) > 0       # the 2 % malformed events


def gold_snapshot(spark: Any, lake: GoldLakehouse) -> dict[str, list[tuple[Any, ...]]]:
    return {t.name: sorted((tuple(r) for r in spark.read.format("delta")
                            .load(table_path(lake.settings, t.full_name)).collect()), key=repr)
            for t in GOLD_TABLES}


def test_the_cli_runs_the_pack(gold_lakehouse: GoldLakehouse) -> None:
    lake = gold_lakehouse
    listed = {q["name"] for q in helpers.last_json(lake.run("query", "--list", "--json").stdout)}
    assert {"revenue_daily", "top_merchants", "card_testing", "cohort_retention"} <= listed
    top = helpers.last_json(lake.run("query", "top_merchants", "--param", "top=2", "--json").stdout)
    assert [r["rank"] for r in top] == [1, 2] and rows_of(top, "net_usd") == rows_of(
        query(lake, "top_merchants", "top=2"), "net_usd")
    res = helpers.lakehouse(*lake.sets, "query", "top_merchants", "--param", "top=two")
    assert res.returncode == 2 and "top" in res.stderr and "two" in res.stderr, helpers.explain(res)


def test_an_incremental_refresh_equals_a_full_rebuild(gold_lakehouse: GoldLakehouse, spark: Any) -> None:
    """New payments, a merchant's and customers' new SCD2 versions, then an incremental refresh from the
    Change Data Feed: gold equals what a rebuild from scratch makes of the same silver."""
    lake = gold_lakehouse
    with connect(lake.settings) as conn:
        conn.execute("UPDATE payments.merchants SET status = 'suspended', updated_at = now() WHERE merchant_id = 3")
        conn.execute("UPDATE payments.customers SET country_code = 'FR', updated_at = now() WHERE customer_id IN "
                     "(SELECT customer_id FROM payments.customers ORDER BY customer_id LIMIT 4)")
        conn.commit()
    live = json.loads(lake.run("simulate", "--rate", "20", "--duration", "8", "--workers", "2", "--seed", "21",
                               "--merchants", "8", "--customers", "200").stdout)
    assert live["committed"] > 100
    helpers.wait_for_debezium(lake.settings)
    lake.run("run", "bronze", "--once")
    lake.run("run", "silver", "--once")

    refreshed = helpers.last_json(lake.run("run", "gold", "--once").stdout)["gold"]
    assert refreshed["mode"] == "incremental"
    assert {"dim_merchant", "dim_customer", "fact_payments", "agg_revenue_daily"} <= set(refreshed["seconds"])
    incremental = gold_snapshot(spark, lake)
    # a rebuild from scratch: no gold at all (the watermarks stay, gold is incomplete: a full build)
    shutil.rmtree(Path(lake.settings.lakehouse_dir) / "gold")
    rebuilt = helpers.last_json(lake.run("run", "gold", "--once").stdout)["gold"]
    assert rebuilt["mode"] == "full"
    full = gold_snapshot(spark, lake)
    assert {name: len(rows) for name, rows in incremental.items()} == {name: len(rows) for name, rows in full.items()}
    for name in full:
        assert incremental[name] == full[name], name
    # the merchant's new version is in effect for the payments made after it
    versions = spark.read.format("delta").load(table_path(lake.settings, "gold.dim_merchant")).where("merchant_id = 3")
    assert sorted(r["status"] for r in versions.collect()) == ["active", "suspended"]
