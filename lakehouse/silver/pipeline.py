"""One table's part of a silver micro-batch: the steps between bronze rows and a silver MERGE.

    bronze rows ─ changes_from_bronze ─ conform ─ protect ─┬─ type errors ─────────────► quarantine
                                                           └─ validate ─┬─ quarantined ─► quarantine, dq_results
                                                                        └─ valid ──────► apply_cdc / apply_scd2

Conformance runs before protection (it needs no PII) and protection before anything is written, so a
quarantined record holds the protected row: no plaintext PII in any silver table, quarantine included.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from delta.tables import DeltaTable
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.bronze.tables import cdc_table
from lakehouse.common.config import Settings
from lakehouse.common.tables import table_path
from lakehouse.security.classification import Protection, table_rules
from lakehouse.security.keys import DataKeys, data_keys_for, load_master_key
from lakehouse.security.protect import protect
from lakehouse.silver.apply import apply_cdc, apply_scd2
from lakehouse.silver.cdc import OP, SEQ_OFFSET, SOURCE_PARTITION, TYPE_ERRORS, changes_from_bronze
from lakehouse.silver.conform import with_amount_usd, with_money, with_region
from lakehouse.silver.tables import IS_CURRENT, SourceTable

# Money columns (minor units) per silver table, and the timestamp whose UTC day picks the FX rate
# (None: no USD amount, e.g. a plan's list price has no transaction day).
MONEY: dict[str, tuple[tuple[str, ...], str | None]] = {
    "charges": (("amount_minor", "captured_amount_minor", "refunded_amount_minor"), "created_at"),
    "refunds": (("amount_minor",), "created_at"),
    "disputes": (("amount_minor",), "opened_at"),
    "invoices": (("amount_minor",), "created_at"),
    "balance_transactions": (("amount_minor", "fee_minor", "net_minor"), "created_at"),
    "plans": (("amount_minor",), None),
}
# Country columns that get their region (ref.countries.region_code) next to them.
REGIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "charges": (("ip_country", "ip_region"),),
    "merchants": (("country_code", "region_code"),),
    "customers": (("country_code", "region_code"),),
}
log = logging.getLogger(__name__)

TYPE_ERROR_REASON = "type error: "
NO_FX_RATE = "no FX rate in effect for the currency on the day"


def _silver(settings: Settings, name: str) -> str:
    return table_path(settings, f"silver.{name}")


def _ref(spark: SparkSession, settings: Settings, name: str) -> DataFrame:
    """A silver reference table's current rows (applied earlier in the same batch when it had changes)."""
    return spark.read.format("delta").load(_silver(settings, name))


def conform(source: SourceTable, spark: SparkSession, settings: Settings) -> Callable[[DataFrame], DataFrame]:
    """The table's conformance: money as DECIMAL and in USD (MONEY), regions (REGIONS)."""
    def _(df: DataFrame) -> DataFrame:
        if source.name in MONEY:
            columns, day = MONEY[source.name]
            df = df.transform(with_money(columns, _ref(spark, settings, "ref_currencies")))
            if day is not None:
                df = df.transform(with_amount_usd(_ref(spark, settings, "ref_fx_rates"), day, columns))
        for country, region in REGIONS.get(source.name, ()):
            df = df.transform(with_region(_ref(spark, settings, "ref_countries"), country, region))
        return df
    return _


def profile_changes(source: SourceTable, changes: DataFrame) -> tuple[int, int, list[int]]:
    """One pass over the batch's changes: rows with type errors, deletes, and the customers whose data
    keys protection needs (none when the table has no encrypted column)."""
    rules = table_rules(source.name)
    encrypted = any(r.protection is Protection.ENCRYPT for r in rules.protected())
    subject = rules.subject if encrypted and rules.subject in changes.columns else None
    [row] = changes.agg(
        F.count_if(F.size(F.col(TYPE_ERRORS)) > 0).alias("type_errors"),
        F.count_if(F.col(OP) == F.lit("d")).alias("deletes"),
        (F.collect_set(F.col(subject)) if subject else F.array().cast("array<bigint>")).alias("subjects"),
    ).collect()
    return int(row["type_errors"]), int(row["deletes"]), sorted(int(i) for i in row["subjects"])


def _data_keys(ids: list[int], settings: Settings) -> DataKeys:
    if ids:
        return data_keys_for(settings, ids)
    master = load_master_key(settings)
    return DataKeys(master_key_id=master.key_id, keys={}, pseudonym=master.pseudonym_key)


def _unconvertible(source: SourceTable) -> Callable[[DataFrame], DataFrame]:
    """Adds to `_type_errors` the USD amounts that came out NULL for a known amount (no FX rate)."""
    def _(df: DataFrame) -> DataFrame:
        if source.name not in MONEY or MONEY[source.name][1] is None:
            return df
        missing = [F.when(F.col(c.removesuffix("_minor")).isNotNull()
                          & F.col(f"{c.removesuffix('_minor')}_usd").isNull(), F.lit(f"{c}: {NO_FX_RATE}"))
                   for c in MONEY[source.name][0]]
        extra = F.filter(F.array(*missing), lambda x: x.isNotNull())
        return df.withColumn(TYPE_ERRORS, F.array_union(F.col(TYPE_ERRORS), extra))
    return _


def conform_changes(source: SourceTable, spark: SparkSession, settings: Settings) -> Callable[[DataFrame], DataFrame]:
    """Typed changes (`changes_from_bronze`'s columns) -> conformed (`conform`), with the USD amounts that
    have no FX rate added to `_type_errors`: the step between typing and protection."""
    def _(changes: DataFrame) -> DataFrame:
        return changes.transform(conform(source, spark, settings)).transform(_unconvertible(source))
    return _


def protect_changes(source: SourceTable, subjects: list[int], settings: Settings) -> Callable[[DataFrame], DataFrame]:
    """Conformed changes -> their protected silver form, with the data keys of `subjects` (the customers
    `profile_changes` found; created when missing)."""
    return protect(source.name, _data_keys(subjects, settings))


def apply_changes(valid: DataFrame, source: SourceTable, settings: Settings, has_deletes: bool) -> dict[str, int]:
    """Valid protected changes into the table's silver table: SCD2 history (`apply_scd2`) or current
    state (`apply_cdc`, with its delete markers); returns the apply's counts."""
    path = _silver(settings, source.name)
    if source.scd2:
        return apply_scd2(valid, path, source.keys)
    from lakehouse.silver.ingest import markers_path
    return apply_cdc(valid, path, markers_path(settings, source.name), source.keys, has_deletes=has_deletes)


@dataclass(frozen=True)
class BatchContext:
    """What every table of one micro-batch shares: the batch's bronze rows (all tables), the captured
    tables by silver name, and the valid currency codes."""

    rows: DataFrame
    batch_id: int
    sources: Mapping[str, SourceTable]
    settings: Settings
    currencies: frozenset[str]
    results: list[DataFrame] = field(default_factory=list)   # dq_results of the batch's tables, written once


def currencies_now(spark: SparkSession, settings: Settings) -> frozenset[str]:
    """The currency codes of silver.ref_currencies (empty before the reference data arrived)."""
    from lakehouse.quality.validate import currency_codes

    path = _silver(settings, "ref_currencies")
    return currency_codes(spark.read.format("delta").load(path)) if DeltaTable.isDeltaTable(spark, path) \
        else frozenset()


def _changes_of(ctx: BatchContext, source: SourceTable) -> DataFrame:
    """The batch's typed changes of one captured table (lazy)."""
    bronze_name = cdc_table(source.schema, source.table).full_name
    return ctx.rows.where(F.col("_bronze_table") == F.lit(bronze_name)).transform(changes_from_bronze(source.columns))


def _parent_rows(ctx: BatchContext, name: str) -> DataFrame:
    """A parent table as of this batch, for the quality lookups: silver's current rows plus the batch's
    own changes of it (with `_op`; deletes do not count as existing)."""
    spark = ctx.rows.sparkSession
    source = ctx.sources[name]
    columns = source.columns.fieldNames()
    batch = _changes_of(ctx, source).select(*columns, OP)
    path = _silver(ctx.settings, name)
    if not DeltaTable.isDeltaTable(spark, path):
        return batch
    current = spark.read.format("delta").load(path)
    current = current.where(F.col(IS_CURRENT)) if source.scd2 else current
    have = [c for c in columns if c in current.columns]
    return current.select(*have, F.lit(None).cast("string").alias(OP)).unionByName(batch, allowMissingColumns=True)


def apply_source_table(bronze: DataFrame, source: SourceTable, ctx: BatchContext) -> tuple[dict[str, int], int]:
    """One captured table's bronze rows of a batch into silver; returns the apply's counts and the
    number of rows quarantined. Raises DataQualityError when the quarantined share is over the threshold."""
    from lakehouse.quality import quarantine as q
    from lakehouse.quality.suites import suite
    from lakehouse.quality.validate import QualityParams, check_threshold, validate_batch

    spark = bronze.sparkSession
    settings, batch_id = ctx.settings, ctx.batch_id
    bronze_name = cdc_table(source.schema, source.table).full_name
    changes = (bronze.transform(changes_from_bronze(source.columns))
               .transform(conform_changes(source, spark, settings)))
    changes = changes.persist(StorageLevel.MEMORY_AND_DISK)
    started = time.monotonic()
    try:
        n_type_errors, n_deletes, subjects = profile_changes(source, changes)
        profiled = time.monotonic()
        protected = changes.transform(protect_changes(source, subjects, settings))
        typed_ok = F.size(F.col(TYPE_ERRORS)) == F.lit(0)
        type_errors = q.to_quarantine(
            protected.where(~typed_ok).withColumn("__reasons", F.transform(
                F.col(TYPE_ERRORS), lambda c: F.concat(F.lit(TYPE_ERROR_REASON), c))).drop(TYPE_ERRORS),
            "__reasons", bronze_name, partition_col=SOURCE_PARTITION, offset_col=SEQ_OFFSET)
        parents = {lk.parent: _parent_rows(ctx, lk.parent) for lk in suite(source.name).lookups}
        validation = validate_batch(protected.where(typed_ok).drop(TYPE_ERRORS), source.name, batch_id,
                                    QualityParams(currencies=ctx.currencies, parents=parents,
                                                  ge_result_format=settings.silver.ge_result_format),
                                    bronze_name)
        with validation:
            # The evidence first, then the threshold, then silver: a batch over the threshold stops the
            # job before any of its rows lands (every write here is replay-safe, so the re-run is too).
            n_quarantined = 0
            if n_type_errors or validation.quarantined_count:
                n_quarantined = q.write_quarantine(type_errors.unionByName(validation.quarantined), settings,
                                                   source.name, batch_id)
            ctx.results.append(validation.results)
            check_threshold(validation, settings)
            validated = time.monotonic()
            applied = apply_changes(validation.valid, source, settings, has_deletes=n_deletes > 0)
        log.info("silver.%s batch %d: %s, %d quarantined; seconds: profile %.1f, validate+quarantine %.1f, "
                 "apply %.1f", source.name, batch_id, applied, n_quarantined, profiled - started,
                 validated - profiled, time.monotonic() - validated)
        return applied, n_quarantined
    finally:
        changes.unpersist()


def apply_event_family(bronze: DataFrame, family: str, ctx: BatchContext) -> tuple[dict[str, int], int]:
    """One event family's bronze rows of a batch into its typed silver table; rejects to quarantine."""
    from lakehouse.quality import quarantine as q
    from lakehouse.silver.events import apply_events_batch, event_family, rejected_events

    spec = event_family(family).table
    applied = apply_events_batch(bronze, family, table_path(ctx.settings, spec.full_name))
    rejected = bronze.transform(rejected_events(family)).withColumns({   # + the quarantine's own columns
        "record": F.coalesce(F.col("record"), F.lit("null")),             # a message with no value at all
        "_batch_id": F.lit(ctx.batch_id).cast("bigint"), "_quarantined_at": F.current_timestamp()})
    n_quarantined = q.write_quarantine(rejected, ctx.settings, spec.name, ctx.batch_id)
    return applied, n_quarantined

