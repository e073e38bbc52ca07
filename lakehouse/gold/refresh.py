"""Incremental gold: a refresh from silver's Change Data Feed that touches only the affected keys and days.

    ops.gold_refresh (silver version per table) ─► CDF of each silver table since then ─► changed keys
      dimensions: rebuilt when one of their silver tables changed (they are small)
      facts:      the affected rows recomputed from silver and merged (new, changed, gone), the five
                  facts in parallel; a MERGE reads only the files of the affected days
      aggregates: the days (weeks, months) whose facts changed recomputed and replaced, four chains in
                  parallel; the calendar, RFM, plans and compliance recomputed whole when their inputs
                  changed (RFM ranks every customer, from the monthly customer aggregate; the others
                  are small)
    ─► ops.gold_refresh moves to the versions read at the start

A fact row is affected when its own silver row changed, when a row it takes values from changed (a
payment's label, dispute, payment method), when a member it points to got a new SCD2 version in effect
at or before its time, or when it points at an unknown member (the member may have arrived). The
result equals a full rebuild (`build_gold`); the integration test compares them row for row.

Every step is idempotent (merge by key, replace by day), and the watermarks move last: a refresh that
fails half way is simply done again. The watermarks hold the facts' versions too, so that the days of
fact rows merged by a refresh that then failed are still recomputed by the next one. Silver read while
it moves gives rows newer than the watermark; the next refresh recomputes their keys again, which
changes nothing. Changes to countries (the geography of every fact) and a missing or unreadable Change
Data Feed fall back to a full build.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.utils import AnalysisException

from lakehouse.common.config import Settings
from lakehouse.common.spark import all_of, any_of, run_parallel
from lakehouse.common.tables import TableSpec, conform, delta_version, overwrite, table_path
from lakehouse.gold import aggregates as agg
from lakehouse.gold import dims, facts
from lakehouse.gold import tables as t
from lakehouse.gold.build import (
    PARALLEL_TABLES,
    GoldStats,
    build_gold,
    build_small_aggregates,
    fact_date_bounds,
    quarantine_paths,
    read_gold,
)
from lakehouse.gold.sources import SILVER_INPUTS, read_silver, silver_changes, silver_path
from lakehouse.ops.tables import GOLD_REFRESH

log = logging.getLogger(__name__)

NO_VERSION = -1        # the silver table did not exist
# Dimension -> the silver tables it is built from.
DIM_SOURCES: dict[str, tuple[str, ...]] = {
    t.DIM_MERCHANT.name: ("merchants", "ref_merchant_categories"), t.DIM_CUSTOMER.name: ("customers",),
    t.DIM_PAYMENT_METHOD.name: ("payment_methods", "cards"), t.DIM_GEOGRAPHY.name: ("ref_countries", "ref_regions"),
    t.DIM_CURRENCY.name: ("ref_currencies",), t.DIM_PLAN.name: ("plans", "products")}
FULL_REBUILD_SOURCES = ("ref_countries",)
# The silver tables agg_plan_monthly is computed from (with dim_plan's).
PLAN_SOURCES = ("subscriptions", "invoices", "plans", "products", "ref_fx_rates")
NOTHING = "no affected rows"
# The dimension of each unknown-member key column of the facts.
UNKNOWN_OF = {"merchant_sk": t.DIM_MERCHANT.name, "customer_sk": t.DIM_CUSTOMER.name,
              "payment_method_key": t.DIM_PAYMENT_METHOD.name}
BROADCAST_KEYS = 5_000_000      # key sets up to this many rows are broadcast into joins with whole tables


def silver_versions(spark: SparkSession, settings: Settings) -> dict[str, int]:
    """The current version of every silver table gold reads (NO_VERSION when it does not exist): the
    SILVER_INPUTS by their short names, the quarantine tables (compliance counts their rows) by full name."""
    paths = {**{name: silver_path(settings, name) for name in SILVER_INPUTS}, **quarantine_paths(settings)}
    out = {}
    for name, path in paths.items():
        version = delta_version(spark, path)
        out[name] = NO_VERSION if version is None else version
    return out


def read_watermarks(spark: SparkSession, settings: Settings) -> dict[str, int] | None:
    path = table_path(settings, GOLD_REFRESH.full_name)
    if not DeltaTable.isDeltaTable(spark, path):
        return None
    marks = {r["source"]: int(r["version"]) for r in spark.read.format("delta").load(path).collect()}
    return marks or None


def write_watermarks(spark: SparkSession, settings: Settings, versions: dict[str, int]) -> None:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows = spark.createDataFrame([(k, v, now) for k, v in sorted(versions.items())], GOLD_REFRESH.schema)
    overwrite(rows, settings, GOLD_REFRESH)


def _gold_complete(spark: SparkSession, settings: Settings) -> bool:
    return all(DeltaTable.isDeltaTable(spark, table_path(settings, s.full_name)) for s in t.GOLD_TABLES)


def refresh_gold(spark: SparkSession, settings: Settings, full: bool = False,
                 progress: Callable[[str], None] = log.info) -> GoldStats:
    """Brings gold up to silver: incrementally from the watermarks when gold exists, else (or with
    `full`) a full build. Returns what was written, with `mode` in the stats."""
    versions = silver_versions(spark, settings)
    marks = None if full else read_watermarks(spark, settings)
    reason = ("requested" if full else "no watermarks" if marks is None
              else "gold incomplete" if not _gold_complete(spark, settings) else None)
    if reason is None and marks is not None:
        changed = {n for n, v in versions.items() if v != marks.get(n, NO_VERSION)}   # silver tables only
        rebuild = sorted(changed & set(FULL_REBUILD_SOURCES))
        backwards = sorted(n for n, v in versions.items() if v < marks.get(n, NO_VERSION))
        reason = (f"{', '.join(rebuild)} changed" if rebuild
                  else f"silver versions went back ({', '.join(backwards)}): silver was rebuilt" if backwards else None)
    if reason is None and marks is not None:
        try:
            stats = _incremental(spark, settings, marks, versions, progress)
        except AnalysisException as e:        # e.g. the CDF of a version range is gone (VACUUM)
            reason = f"the Change Data Feed could not be read ({str(e).splitlines()[0]})"
        else:
            write_watermarks(spark, settings, {**versions, **fact_versions(spark, settings)})
            return stats
    progress(f"gold: full build ({reason})")
    stats = build_gold(spark, settings, progress)
    stats.mode = "full"
    write_watermarks(spark, settings, {**versions, **fact_versions(spark, settings)})
    return stats


def fact_mark(table: TableSpec) -> str:
    """The watermark name of a gold fact: the fact's version the aggregates reflect."""
    return table.full_name


def fact_versions(spark: SparkSession, settings: Settings) -> dict[str, int]:
    return {fact_mark(s): _version(spark, settings, s) for s in t.FACTS}


def _ids(df: DataFrame, *columns: str) -> DataFrame:
    return df.select(*columns).where(all_of([F.col(c).isNotNull() for c in columns])).distinct()


def _union(frames: Iterable[DataFrame]) -> DataFrame:
    return functools.reduce(DataFrame.unionByName, frames)


def _changed_since(changes: DataFrame, key: str, at: str) -> DataFrame:
    """Per member of an SCD2 CDF: the earliest `valid_from` of its versions that changed (`key`, `at`);
    facts of the member at or after it may now point at another version."""
    return changes.groupBy(key).agg(F.min("valid_from").alias(at))


def _facts_of(fact: DataFrame, members: DataFrame, key: str, since: str, at: str) -> DataFrame:
    """Rows of `fact` whose member `key` changed at or before the row's time `at`."""
    return fact.join(members, on=key, how="inner").where(F.col(at) >= F.col(since))


def merge_rows(spark: SparkSession, settings: Settings, table: TableSpec, recomputed: DataFrame,
               groups: DataFrame, n: int, row_keys: Sequence[str], prune: str = "date_key") -> dict[str, float]:
    """Makes the rows of `table` in the affected `groups` (`n` rows of one key column, cached) equal to
    `recomputed`: rows that changed are updated, new ones inserted, rows of those groups that are no
    longer recomputed deleted; identical rows are not updated (no change feed entry).

    The MERGE reads only the files that can hold the `prune` values (the facts' clustering column, a day)
    of the rows recomputed and of the groups' current rows: the only rows a source key can match, so a
    refresh of a few days reads those days' files, not the whole fact. When none of the groups has a row
    yet, the rows are appended instead (no MERGE). Returns the rows inserted, updated and deleted, and the
    seconds spent recomputing and merging (or appending)."""
    started = time.monotonic()
    path = table_path(settings, table.full_name)
    target = DeltaTable.forPath(spark, path)
    new = conform(recomputed, table).persist()
    [group_key] = groups.columns
    current = _within(target.toDF().select(*row_keys, prune), groups, n, group_key).persist()
    try:
        values = sorted(r[0] for r in new.select(prune).union(current.select(prune)).distinct().collect())
        recomputed_at = time.monotonic()
        if not values:
            return {"inserted": 0, "updated": 0, "deleted": 0, "recompute_s": round(recomputed_at - started, 1)}
        if current.isEmpty():
            # None of the groups has a row yet (new payments, new ledger entries): every recomputed row is
            # an insert, and an append does it without the MERGE's join and file search. A retry after it
            # finds them in `current` and goes through the MERGE, which then changes nothing.
            inserted = new.count()      # before the write: the commit makes Spark recompute cached plans of the fact
            new.write.format("delta").mode("append").save(path)
            return {"inserted": inserted, "updated": 0, "deleted": 0,
                    "recompute_s": round(recomputed_at - started, 1),
                    "append_s": round(time.monotonic() - recomputed_at, 1)}
        gone = current.join(new, on=list(row_keys), how="left_anti").select(*row_keys)
        source = (new.withColumn("__delete", F.lit(False))
                  .unionByName(gone.withColumn("__delete", F.lit(True)), allowMissingColumns=True))
        on = all_of([F.col(f"t.{prune}").isin(values),
                     *[F.col(f"t.{k}").eqNullSafe(F.col(f"s.{k}")) for k in row_keys]])
        columns = [c for c in table.schema.fieldNames()]
        differs = ~all_of([F.col(f"t.{c}").eqNullSafe(F.col(f"s.{c}")) for c in columns])
        set_to: dict[str, str | Column] = {c: F.col(f"s.{c}") for c in columns}
        result = (target.alias("t").merge(source.alias("s"), on)
                  .whenMatchedDelete(condition=F.col("s.__delete"))
                  .whenMatchedUpdate(condition=differs, set=set_to)
                  .whenNotMatchedInsert(condition=~F.col("s.__delete"), values=set_to)
                  .execute()).first()
    finally:
        new.unpersist()
        current.unpersist()
    assert result is not None
    return {"inserted": int(result["num_inserted_rows"]), "updated": int(result["num_updated_rows"]),
            "deleted": int(result["num_deleted_rows"]), "recompute_s": round(recomputed_at - started, 1),
            "merge_s": round(time.monotonic() - recomputed_at, 1)}


def replace_periods(settings: Settings, table: TableSpec, rows: DataFrame, column: str,
                    periods: list[dt.date]) -> str:
    """Replaces the rows of `table` whose `column` is one of `periods` with `rows` (one commit)."""
    if not periods:
        return f"no {column} to replace"
    listed = ", ".join(f"DATE'{p.isoformat()}'" for p in sorted(periods))
    (conform(rows, table).write.format("delta").mode("overwrite").option("replaceWhere", f"{column} IN ({listed})")
     .save(table_path(settings, table.full_name)))
    return f"{len(periods)} {column} values replaced"


def _version(spark: SparkSession, settings: Settings, table: TableSpec) -> int:
    version = delta_version(spark, table_path(settings, table.full_name))
    assert version is not None, f"{table.full_name} does not exist"
    return version


def _fact_dates(spark: SparkSession, settings: Settings, table: TableSpec, after: int, at: str) -> DataFrame:
    """The UTC days of the rows of a gold fact that changed after version `after` (both images)."""
    upto = _version(spark, settings, table)
    if upto <= after:
        return spark.createDataFrame([], "date date")
    feed = (spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", after + 1)
            .option("endingVersion", upto).load(table_path(settings, table.full_name)))
    return feed.select(F.to_date(F.col(at)).alias("date")).distinct()


def _dates(df: DataFrame) -> list[dt.date]:
    return sorted(r["date"] for r in df.distinct().collect() if r["date"] is not None)


def _incremental(spark: SparkSession, settings: Settings, marks: dict[str, int], versions: dict[str, int],
                 progress: Callable[[str], None]) -> GoldStats:
    stats = GoldStats(mode="incremental")
    changed = sorted(n for n, v in versions.items() if v != marks.get(n, NO_VERSION))
    now = {s.name: _version(spark, settings, s) for s in t.FACTS}
    behind = [s.name for s in t.FACTS if marks.get(fact_mark(s), now[s.name]) != now[s.name]]
    progress(f"gold: incremental refresh; silver tables changed: {', '.join(changed) or 'none'}"
             + (f"; aggregates behind their facts: {', '.join(behind)}" if behind else ""))
    if not changed and not behind:
        return stats

    def cdf(name: str) -> DataFrame:
        if name not in changed or versions[name] == NO_VERSION:
            return spark.createDataFrame([], SILVER_INPUTS[name]).withColumn("_change_type", F.lit(None).cast("string"))
        return silver_changes(spark, settings, name, marks.get(name, NO_VERSION), versions[name])

    def timed(name: str, step: Callable[[], object]) -> None:
        started = time.monotonic()
        outcome = step()
        stats.seconds[name] = time.monotonic() - started
        progress(f"gold.{name}: {outcome} in {stats.seconds[name]:.1f}s")

    def silver(name: str) -> DataFrame:
        return read_silver(spark, settings, name)

    def merge_affected(spec: TableSpec, recompute: Callable[[], DataFrame], groups: DataFrame, n: int,
                       row_keys: list[str]) -> object:
        """merge_rows of the `n` affected groups; nothing at all (no scan, no commit) when there are none."""
        return merge_rows(spark, settings, spec, recompute(), groups, n, row_keys) if n else NOTHING

    # Dimensions whose silver tables changed, rebuilt whole; the others as they are.
    builders: dict[str, Callable[[], DataFrame]] = {
        t.DIM_MERCHANT.name: lambda: dims.build_dim_merchant(silver("merchants"), silver("ref_merchant_categories")),
        t.DIM_CUSTOMER.name: lambda: dims.build_dim_customer(silver("customers")),
        t.DIM_PAYMENT_METHOD.name: lambda: dims.build_dim_payment_method(silver("payment_methods"), silver("cards")),
        t.DIM_GEOGRAPHY.name: lambda: dims.build_dim_geography(silver("ref_countries"), silver("ref_regions")),
        t.DIM_CURRENCY.name: lambda: dims.build_dim_currency(silver("ref_currencies")),
        t.DIM_PLAN.name: lambda: dims.build_dim_plan(silver("plans"), silver("products"))}
    specs = {s.name: s for s in t.DIMENSIONS}
    def rebuild(name: str) -> str:
        overwrite(builders[name](), settings, specs[name])
        return "rebuilt"

    for name, sources in DIM_SOURCES.items():
        if set(sources) & set(changed):
            timed(name, functools.partial(rebuild, name))
    d = facts.Dimensions(*(read_gold(spark, settings, s) for s in (
        t.DIM_MERCHANT, t.DIM_CUSTOMER, t.DIM_PAYMENT_METHOD, t.DIM_GEOGRAPHY, t.DIM_PLAN)))

    # What changed upstream of the facts.
    merchants = _changed_since(cdf("merchants"), "merchant_id", "__since")
    customers = _changed_since(cdf("customers"), "customer_id", "__since")
    methods = _union([_ids(cdf("payment_methods"), "payment_method_id"), _ids(cdf("cards"), "payment_method_id")])
    unknown = F.lit(t.UNKNOWN_SK)

    def at_unknown(fact: DataFrame, key: str, *columns: str) -> DataFrame:
        """`key` of the `fact` rows that point at the unknown member of a dimension (by its key column)
        whose silver tables changed: that member may have arrived. None when no such dimension changed
        (a member that did not arrive cannot be pointed at), without reading the fact."""
        arrived = [F.col(c) == unknown for c in columns if set(DIM_SOURCES[UNKNOWN_OF[c]]) & set(changed)]
        return fact.where(any_of(arrived)).select(key) if arrived else fact.select(key).limit(0)
    # The facts' versions the aggregates were last brought up to: a refresh that merged facts and then
    # failed left its fact changes after these, so the next one still recomputes their days.
    before = {s.name: marks.get(fact_mark(s), now[s.name]) for s in t.FACTS}

    # The facts, each independent of the others: refreshed in parallel (most of a small refresh is
    # per-table latency, planning and Delta commits, which overlap).
    def payments_fact() -> object:
        pay = read_gold(spark, settings, t.FACT_PAYMENTS)
        charge_ids = _union([
            _ids(cdf("charges"), "charge_id"), _ids(cdf("fraud_ground_truth"), "charge_id"),
            _ids(cdf("disputes"), "charge_id"),
            _facts_of(pay, merchants, "merchant_id", "__since", "created_at").select("charge_id"),
            _facts_of(pay, customers, "customer_id", "__since", "created_at").select("charge_id"),
            pay.join(methods, on="payment_method_id", how="left_semi").select("charge_id"),
            at_unknown(pay, "charge_id", "merchant_sk", "customer_sk", "payment_method_key")]).distinct()
        with _materialized(charge_ids) as (charge_ids, n):
            def of_charges(name: str) -> DataFrame:
                return _within(silver(name), charge_ids, n, "charge_id")
            return merge_affected(t.FACT_PAYMENTS, lambda: facts.build_fact_payments(
                of_charges("charges"), of_charges("fraud_ground_truth"), of_charges("disputes"), d),
                charge_ids, n, ["charge_id"])

    def charges_of(rows: DataFrame, n: int) -> DataFrame:
        """The silver charges `rows` (`n`, cached) point at."""
        return _within(silver("charges"), rows.select("charge_id"), n, "charge_id")

    def merchant_fact(spec: TableSpec, source: str, key: str, at: str,
                      build: Callable[[DataFrame, int], DataFrame]) -> object:
        """fact_refunds, fact_disputes, fact_balance_movements: own changes, merchant versions, unknown merchants."""
        fact = read_gold(spark, settings, spec)
        keys = _union([_ids(cdf(source), key), _facts_of(fact, merchants, "merchant_id", "__since", at).select(key),
                       at_unknown(fact, key, "merchant_sk")]).distinct()
        with _materialized(keys) as (keys, n), _materialized(_within(silver(source), keys, n, key)) as (rows, m):
            return merge_affected(spec, functools.partial(build, rows, m), keys, n, [key])

    def events_fact() -> object:
        """fact_subscription_events: every event of an affected subscription."""
        events = read_gold(spark, settings, t.FACT_SUBSCRIPTION_EVENTS)
        plan_ids = _union([_ids(cdf("plans"), "plan_id"),
                           silver("plans").join(_ids(cdf("products"), "product_id"), on="product_id", how="left_semi")
                           .select("plan_id")])
        subs = _union([_ids(cdf("subscriptions"), "subscription_id"), _ids(cdf("invoices"), "subscription_id"),
                       events.join(plan_ids, on="plan_id", how="left_semi").select("subscription_id"),
                       _facts_of(events, customers, "customer_id", "__since", "event_at").select("subscription_id"),
                       at_unknown(events, "subscription_id", "customer_sk")]).distinct()
        with _materialized(subs) as (subs, n):
            def of_subs(name: str) -> DataFrame:
                return _within(silver(name), subs, n, "subscription_id")
            return merge_affected(
                t.FACT_SUBSCRIPTION_EVENTS,
                lambda: facts.build_fact_subscription_events(of_subs("subscriptions"), of_subs("invoices"), d),
                subs, n, ["subscription_id", "event_type", "event_at"])

    # Each fact's time includes finding its affected keys; the outcome shows the recompute and MERGE parts.
    run_parallel([
        functools.partial(timed, t.FACT_PAYMENTS.name, payments_fact),
        functools.partial(timed, t.FACT_REFUNDS.name, functools.partial(
            merchant_fact, t.FACT_REFUNDS, "refunds", "refund_id", "created_at",
            lambda rows, n: facts.build_fact_refunds(rows, charges_of(rows, n), d))),
        functools.partial(timed, t.FACT_DISPUTES.name, functools.partial(
            merchant_fact, t.FACT_DISPUTES, "disputes", "dispute_id", "opened_at",
            lambda rows, n: facts.build_fact_disputes(rows, charges_of(rows, n), d))),
        functools.partial(timed, t.FACT_BALANCE.name, functools.partial(
            merchant_fact, t.FACT_BALANCE, "balance_transactions", "txn_id", "created_at",
            lambda rows, n: facts.build_fact_balance_movements(rows, d))),
        functools.partial(timed, t.FACT_SUBSCRIPTION_EVENTS.name, events_fact)], PARALLEL_TABLES)

    # Aggregates of the days whose facts changed: four independent chains, in parallel.
    payments, ledger = read_gold(spark, settings, t.FACT_PAYMENTS), read_gold(spark, settings, t.FACT_BALANCE)
    pay_days = _fact_dates(spark, settings, t.FACT_PAYMENTS, before[t.FACT_PAYMENTS.name], "created_at")
    changed_pay = _fact_charge_ids(spark, settings, before[t.FACT_PAYMENTS.name])
    ledger_days = _dates(_union([
        _fact_dates(spark, settings, t.FACT_BALANCE, before[t.FACT_BALANCE.name], "created_at"),
        ledger.join(changed_pay, on="charge_id", how="left_semi").select(F.to_date("created_at").alias("date"))]))
    payment_days = _dates(pay_days)
    months = sorted({x.replace(day=1) for x in payment_days})
    merchant = read_gold(spark, settings, t.DIM_MERCHANT)
    of_days = payments.where(F.col("date_key").isin(_date_keys(payment_days)))

    def revenue() -> None:
        day_ledger = ledger.where(F.col("date_key").isin(_date_keys(ledger_days)))
        with _materialized(day_ledger.select("charge_id").where(F.col("charge_id").isNotNull()).distinct()) as (
                day_charges, n):
            timed(t.AGG_REVENUE_DAILY.name, lambda: replace_periods(
                settings, t.AGG_REVENUE_DAILY,
                agg.build_agg_revenue_daily(day_ledger, merchant, _within(payments, day_charges, n, "charge_id")),
                "date", ledger_days))
        daily = read_gold(spark, settings, t.AGG_REVENUE_DAILY)
        for spec, period, column in ((t.AGG_REVENUE_WEEKLY, "week", "week_start"),
                                     (t.AGG_REVENUE_MONTHLY, "month", "month_start")):
            starts = sorted({x - dt.timedelta(days=x.weekday()) if period == "week" else x.replace(day=1)
                             for x in ledger_days})
            rows = agg.roll_up_revenue(daily, period).where(F.col(column).isin(starts))
            timed(spec.name, functools.partial(replace_periods, settings, spec, rows, column, starts))

    def fraud() -> None:
        timed(t.AGG_FRAUD_DAILY.name, lambda: replace_periods(
            settings, t.AGG_FRAUD_DAILY, agg.build_agg_fraud_daily(of_days, merchant), "date", payment_days))
        fraud_daily = read_gold(spark, settings, t.AGG_FRAUD_DAILY).where(F.col("date").isin(payment_days))
        timed(t.AGG_FRAUD_DIMENSION_DAILY.name, lambda: replace_periods(
            settings, t.AGG_FRAUD_DIMENSION_DAILY, agg.build_agg_fraud_dimension_daily(fraud_daily), "date",
            payment_days))

    def small_payments() -> None:
        timed(t.AGG_SMALL_PAYMENTS.name, lambda: replace_periods(
            settings, t.AGG_SMALL_PAYMENTS, agg.build_agg_small_payments(of_days), "date", payment_days))

    def customers_monthly() -> None:
        month_keys = _date_keys(_days_of_months(months))
        timed(t.AGG_CUSTOMER_MONTHLY.name, lambda: replace_periods(
            settings, t.AGG_CUSTOMER_MONTHLY,
            agg.build_agg_customer_monthly(payments.where(F.col("date_key").isin(month_keys))), "month_start",
            months))

    run_parallel([revenue, fraud, small_payments, customers_monthly], PARALLEL_TABLES)

    # The tables rebuilt whole, when what they are computed from changed.
    small = {t.DIM_DATE.name} if _calendar_moved(spark, settings) else set()
    if months:
        small.add(t.AGG_CUSTOMER_RFM.name)
    if set(changed) & set(PLAN_SOURCES):
        small.add(t.AGG_PLAN_MONTHLY.name)
    if set(changed) & {"dq_results", *quarantine_paths(settings)}:
        small.add(t.AGG_COMPLIANCE_DAILY.name)
    progress(f"gold: rebuilt whole: {', '.join(sorted(small)) or 'none'}")
    build_small_aggregates(spark, settings, stats, progress, only=small)
    return stats


def _calendar_moved(spark: SparkSession, settings: Settings) -> bool:
    """Whether the facts' first or last day is no longer dim_date's."""
    facts_days = fact_date_bounds(spark, settings).agg(F.min("date"), F.max("date")).first()
    calendar = read_gold(spark, settings, t.DIM_DATE).agg(F.min("date"), F.max("date")).first()
    return tuple(facts_days or ()) != tuple(calendar or ())


@contextlib.contextmanager
def _materialized(df: DataFrame) -> Iterator[tuple[DataFrame, int]]:
    """`df` cached and counted (Spark then knows its true size when it plans joins), unpersisted after."""
    df = df.persist()
    try:
        yield df, df.count()
    finally:
        df.unpersist()


def _within(df: DataFrame, keys: DataFrame, n: int, key: str) -> DataFrame:
    """The rows of `df` whose `key` is one of `keys` (`n` of them, cached). A range predicate on the key
    comes first: Delta skips the files whose statistics lie outside it (ids grow with time, so the keys
    of new rows are in the newest files); then a semi-join, broadcast when the keys are few enough."""
    bounds = keys.agg(F.min(key).alias("lo"), F.max(key).alias("hi")).first()
    if bounds is None or bounds["lo"] is None:
        return df.limit(0)
    return (df.where(F.col(key).between(bounds["lo"], bounds["hi"]))
            .join(_hint(keys.select(key), n), on=key, how="left_semi"))


def _hint(keys: DataFrame, n: int) -> DataFrame:
    """`keys` (about `n` rows) marked for broadcast when they are few enough: a join with a whole silver
    table then reads that table once, without shuffling it."""
    return F.broadcast(keys) if n <= BROADCAST_KEYS else keys


def _date_keys(days: Iterable[dt.date]) -> list[int]:
    """The facts' `date_key` (yyyymmdd) of each day."""
    return [int(x.strftime("%Y%m%d")) for x in days]


def _days_of_months(months: list[dt.date]) -> list[dt.date]:
    """Every day of the given months (their first days)."""
    out = []
    for first in months:
        day = first
        while day.month == first.month:
            out.append(day)
            day += dt.timedelta(days=1)
    return out


def _fact_charge_ids(spark: SparkSession, settings: Settings, after: int) -> DataFrame:
    """The charges whose fact_payments row changed after version `after`."""
    upto = _version(spark, settings, t.FACT_PAYMENTS)
    if upto <= after:
        return spark.createDataFrame([], "charge_id bigint")
    return (spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", after + 1)
            .option("endingVersion", upto).load(table_path(settings, t.FACT_PAYMENTS.full_name))
            .select("charge_id").distinct())

