"""silver Delta -> gold Delta: the I/O of the layer (the transforms are in dims, facts, aggregates).

    silver ─ read_silver ─► dimensions ─► facts ─► aggregates      (each step written, then read back)

`build_gold` computes every gold table from silver's current contents and replaces each one in a single
Delta commit. The same silver gives the same gold (surrogate keys are hashes of the source sequence,
scores break ties by key), so a rebuild from scratch reproduces a table exactly.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.common.config import Settings
from lakehouse.common.spark import run_parallel
from lakehouse.common.tables import TableSpec, overwrite, table_path
from lakehouse.gold import aggregates as agg
from lakehouse.gold import dims, facts
from lakehouse.gold import tables as t
from lakehouse.gold.sources import read_silver

log = logging.getLogger(__name__)


@dataclass
class GoldStats:
    """What a build or refresh wrote: rows per gold table (rebuilt tables) and seconds per step."""

    mode: str = "full"                  # full | incremental
    rows: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"mode": self.mode, "tables": len(self.rows), "rows": dict(sorted(self.rows.items())),
                "seconds": {k: round(v, 1) for k, v in sorted(self.seconds.items())},
                "total_seconds": round(sum(self.seconds.values()), 1)}


Writer = Callable[[TableSpec, DataFrame], DataFrame]


def writer(spark: SparkSession, settings: Settings, stats: GoldStats, progress: Callable[[str], None]) -> Writer:
    """Replaces a gold table with a DataFrame, counts and times it, and returns the table as written."""
    def write(table: TableSpec, df: DataFrame) -> DataFrame:
        started = time.monotonic()
        overwrite(df, settings, table)
        written = read_gold(spark, settings, table)
        stats.rows[table.name] = written.count()
        stats.seconds[table.name] = time.monotonic() - started
        progress(f"gold.{table.name}: {stats.rows[table.name]:,} rows in {stats.seconds[table.name]:.1f}s")
        return written
    return write


def read_gold(spark: SparkSession, settings: Settings, table: TableSpec) -> DataFrame:
    return spark.read.format("delta").load(table_path(settings, table.full_name))


def quarantine_paths(settings: Settings) -> dict[str, str]:
    """The path of every quarantine table of silver (captured tables' and event families'), by table name."""
    from lakehouse.bronze.tables import EVENT_FAMILIES
    from lakehouse.quality.tables import QUARANTINE_TABLES, quarantine_table
    from lakehouse.silver.events import event_family

    tables = {q.full_name: q for q in QUARANTINE_TABLES}
    tables.update({q.full_name: q for q in (quarantine_table(event_family(f).table.name) for f in EVENT_FAMILIES)})
    return {name: table_path(settings, name) for name in sorted(tables)}


def _quarantined(spark: SparkSession, settings: Settings) -> DataFrame:
    """Every quarantined row of silver as (`table`, `quarantined_at`)."""
    from lakehouse.quality.tables import QUARANTINE_PREFIX

    parts = [spark.read.format("delta").load(path).select(
                 F.lit(name.split(".", 1)[1].removeprefix(QUARANTINE_PREFIX)).alias("table"),
                 F.col("_quarantined_at").alias("quarantined_at"))
             for name, path in quarantine_paths(settings).items() if DeltaTable.isDeltaTable(spark, path)]
    empty = spark.createDataFrame([], "table string, quarantined_at timestamp")
    return functools.reduce(DataFrame.unionByName, parts, empty)


PARALLEL_TABLES = 3     # tables written at once: small tables are latency-bound (Delta log, scheduling)


def _phase(write: Writer, *jobs: tuple[TableSpec, Callable[[], DataFrame]]) -> dict[str, DataFrame]:
    """Writes the tables of one phase (independent of each other) in parallel; returns them by name, as
    written."""
    out: dict[str, DataFrame] = {}

    def one(table: TableSpec, make: Callable[[], DataFrame]) -> None:
        out[table.name] = write(table, make())

    run_parallel([functools.partial(one, table, make) for table, make in jobs], PARALLEL_TABLES)
    return out


def build_gold(spark: SparkSession, settings: Settings, progress: Callable[[str], None] = log.info) -> GoldStats:
    """Builds every gold table from silver, in phases (dimensions, facts, daily aggregates, the rest);
    each table is replaced in one commit."""
    stats = GoldStats()
    write = writer(spark, settings, stats, progress)

    def silver(name: str) -> DataFrame:
        return read_silver(spark, settings, name)

    dim = _phase(
        write,
        (t.DIM_TIME, lambda: dims.build_dim_time(spark)),
        (t.DIM_DEVICE, lambda: dims.build_dim_device(spark)),
        (t.DIM_CURRENCY, lambda: dims.build_dim_currency(silver("ref_currencies"))),
        (t.DIM_GEOGRAPHY, lambda: dims.build_dim_geography(silver("ref_countries"), silver("ref_regions"))),
        (t.DIM_MERCHANT, lambda: dims.build_dim_merchant(silver("merchants"), silver("ref_merchant_categories"))),
        (t.DIM_CUSTOMER, lambda: dims.build_dim_customer(silver("customers"))),
        (t.DIM_PAYMENT_METHOD, lambda: dims.build_dim_payment_method(silver("payment_methods"), silver("cards"))),
        (t.DIM_PLAN, lambda: dims.build_dim_plan(silver("plans"), silver("products"))))
    d = facts.Dimensions(merchant=dim["dim_merchant"], customer=dim["dim_customer"],
                         payment_method=dim["dim_payment_method"], geography=dim["dim_geography"],
                         plan=dim["dim_plan"])
    charges, disputes = silver("charges"), silver("disputes")
    fact = _phase(
        write,
        (t.FACT_PAYMENTS, lambda: facts.build_fact_payments(charges, silver("fraud_ground_truth"), disputes, d)),
        (t.FACT_REFUNDS, lambda: facts.build_fact_refunds(silver("refunds"), charges, d)),
        (t.FACT_DISPUTES, lambda: facts.build_fact_disputes(disputes, charges, d)),
        (t.FACT_BALANCE, lambda: facts.build_fact_balance_movements(silver("balance_transactions"), d)),
        (t.FACT_SUBSCRIPTION_EVENTS, lambda: facts.build_fact_subscription_events(silver("subscriptions"),
                                                                                  silver("invoices"), d)))
    payments, ledger = fact["fact_payments"], fact["fact_balance_movements"]
    daily = _phase(
        write,
        (t.AGG_REVENUE_DAILY, lambda: agg.build_agg_revenue_daily(ledger, d.merchant, payments)),
        (t.AGG_FRAUD_DAILY, lambda: agg.build_agg_fraud_daily(payments, d.merchant)),
        (t.AGG_CUSTOMER_MONTHLY, lambda: agg.build_agg_customer_monthly(payments)),
        (t.AGG_SMALL_PAYMENTS, lambda: agg.build_agg_small_payments(payments)))
    _phase(write,
           (t.AGG_REVENUE_WEEKLY, lambda: agg.roll_up_revenue(daily["agg_revenue_daily"], "week")),
           (t.AGG_REVENUE_MONTHLY, lambda: agg.roll_up_revenue(daily["agg_revenue_daily"], "month")),
           (t.AGG_FRAUD_DIMENSION_DAILY, lambda: agg.build_agg_fraud_dimension_daily(daily["agg_fraud_daily"])))
    build_small_aggregates(spark, settings, stats, progress)
    return stats


SMALL_AGGREGATES = (t.DIM_DATE, t.AGG_CUSTOMER_RFM, t.AGG_PLAN_MONTHLY, t.AGG_COMPLIANCE_DAILY)
_FACT_DAYS = ((t.FACT_PAYMENTS, "created_at"), (t.FACT_REFUNDS, "created_at"), (t.FACT_DISPUTES, "opened_at"),
              (t.FACT_BALANCE, "created_at"), (t.FACT_SUBSCRIPTION_EVENTS, "event_at"))


def fact_date_bounds(spark: SparkSession, settings: Settings) -> DataFrame:
    """The first and last `date_key` of each fact as rows of one DATE column `date` (MIN / MAX of a
    column with file statistics: Delta answers them from its log, without reading the facts)."""
    bounds = [read_gold(spark, settings, f).agg(F.min("date_key").alias("lo"), F.max("date_key").alias("hi"))
              for f, _ in _FACT_DAYS]
    keys = functools.reduce(DataFrame.unionByName, bounds).select(F.explode(F.array("lo", "hi")).alias("k"))
    return keys.where(F.col("k").isNotNull()).select(F.to_date(F.col("k").cast("string"), "yyyyMMdd").alias("date"))


def build_small_aggregates(spark: SparkSession, settings: Settings, stats: GoldStats,
                           progress: Callable[[str], None], only: Collection[str] | None = None) -> None:
    """The tables rebuilt whole (SMALL_AGGREGATES; `only` those named): the calendar (it spans every
    fact), RFM (it ranks every customer; from agg_customer_monthly), plan performance and data-quality
    compliance (both small)."""
    write = writer(spark, settings, stats, progress)

    def gold(table: TableSpec) -> DataFrame:
        return read_gold(spark, settings, table)

    jobs = {
        t.DIM_DATE.name: (t.DIM_DATE, lambda: dims.build_dim_date(fact_date_bounds(spark, settings))),
        t.AGG_CUSTOMER_RFM.name: (t.AGG_CUSTOMER_RFM, lambda: agg.build_agg_customer_rfm(gold(t.AGG_CUSTOMER_MONTHLY))),
        t.AGG_PLAN_MONTHLY.name: (t.AGG_PLAN_MONTHLY, lambda: agg.build_agg_plan_monthly(
            read_silver(spark, settings, "subscriptions"), read_silver(spark, settings, "invoices"),
            gold(t.DIM_PLAN).where(F.col("plan_id") != F.lit(t.UNKNOWN_SK)),
            read_silver(spark, settings, "ref_fx_rates"))),
        t.AGG_COMPLIANCE_DAILY.name: (t.AGG_COMPLIANCE_DAILY, lambda: agg.build_agg_compliance_daily(
            read_silver(spark, settings, "dq_results"), _quarantined(spark, settings)))}
    assert set(jobs) == {s.name for s in SMALL_AGGREGATES}
    _phase(write, *[job for name, job in jobs.items() if only is None or name in only])
