"""Validating one micro-batch of a silver table with its Great Expectations suite.

    batch ─ lookups (parent joins) ─ row predicates ─ cache ─┬─ one aggregate: rows, failures per check
                                                            ├─ GE 1.24 validation (one definition per suite)
                                                            ├─ .valid        (same columns as the batch)
                                                            ├─ .quarantined  (tables.QUARANTINE_SCHEMA)
                                                            └─ .results      (tables.DQ_RESULTS_SCHEMA)

Deletes (`_op = 'd'`) carry the deleted row's values and pass through untouched: the expectations
apply to inserts, updates and snapshot reads (c / u / r). A row failing several `error` checks is
quarantined once, with every name; `warn` checks never move a row.

GE gives the counts (the results recorded in `silver.dq_results`); the rows come from each
expectation's Spark predicate (`checks.unexpected_condition`). Both are computed on the same cached
frame and compared per expectation on every batch (with `ge_result_format="BOOLEAN_ONLY"`: GE's
success against predicate count == 0): a difference raises `QualityMismatchError`, so no row is lost
or quarantined by a predicate that drifted from GE.

Cost (docs/quality.md has the measurements): the predicates (and the lookups' joins) run once, into
the cache, in the aggregate's job; GE folds the counts of all column-map expectations of a suite into
one aggregate job, which is why the in-row comparisons use the column-map
`ExpectColumnValuesToBeGreaterThanColumn` rather than GE's column-pair expectation (checks.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import great_expectations as gx
from great_expectations.core.validation_definition import ValidationDefinition
from great_expectations.data_context.types.base import ProgressBarsConfig
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse.bronze.tables import cdc_table
from lakehouse.common.config import Settings
from lakehouse.common.spark import all_of, any_of
from lakehouse.quality.checks import ERROR, HELPER_PREFIX, Check, Lookup, Suite, unexpected_condition
from lakehouse.quality.quarantine import to_quarantine
from lakehouse.quality.suites import suite as suite_of
from lakehouse.quality.tables import DQ_RESULTS_SCHEMA

log = logging.getLogger(__name__)

OP = "_op"
DELETE = "d"

_ERRORS = f"{HELPER_PREFIX}errors"
_WARNINGS = f"{HELPER_PREFIX}warnings"
_CHECKED = f"{HELPER_PREFIX}checked"
# BASIC without value samples: GE's counts per expectation, which every batch compares with the predicates'.
# BOOLEAN_ONLY: GE's success only (about half GE's time, measured: GE then skips a query per expectation);
# the counts recorded are the predicates', and GE's success must agree with them.
GE_RESULT_FORMATS: dict[str, dict[str, Any]] = {"BASIC": {"result_format": "BASIC", "partial_unexpected_count": 0},
                                                 "BOOLEAN_ONLY": {"result_format": "BOOLEAN_ONLY"}}


class DataQualityError(RuntimeError):
    """A micro-batch quarantined more than `silver.max_quarantine_ratio` of its rows (fails the job)."""


class QualityMismatchError(RuntimeError):
    """GE and the row predicates disagree on an expectation's failing rows: the accounting would not be exact."""


@dataclass(frozen=True)
class QualityParams:
    """What the suites need from the caller for one batch.

    - `currencies`: the valid currency codes (silver.ref_currencies' `currency_code`, see `currency_codes`).
    - `parents`: silver table name -> that table's rows as of this batch (its current rows plus the
      batch's own changes of it), for the suites' lookups (charges -> merchants, customers,
      payment_methods; refunds and disputes -> charges). Rows with `_op = 'd'` in a parent frame do
      not count as existing.
    - `ge_result_format`: `BASIC` (default: GE's counts, compared with the predicates' exactly) or
      `BOOLEAN_ONLY` (faster: GE's success only, compared with predicate count == 0; the results then
      carry the predicates' counts and no unexpected_percent).
    """

    currencies: frozenset[str] = frozenset()
    parents: Mapping[str, DataFrame] = field(default_factory=dict)
    ge_result_format: str = "BASIC"

    def __post_init__(self) -> None:
        if self.ge_result_format not in GE_RESULT_FORMATS:
            raise ValueError(f"QualityParams.ge_result_format: {self.ge_result_format!r} is not one of "
                             f"{', '.join(GE_RESULT_FORMATS)}")


@dataclass(frozen=True)
class CheckOutcome:
    """One expectation's result for one batch (a row of silver.dq_results)."""

    check: Check
    success: bool
    element_count: int
    unexpected_count: int
    unexpected_percent: float | None


@dataclass
class Validation:
    """The outcome of `validate_batch`.

    `valid` and `quarantined` are lazy DataFrames over one cached frame: write them, then call
    `release()` (or use the Validation as a context manager). `rows_in == valid_count + quarantined_count`.
    """

    table: str
    batch_id: int
    valid: DataFrame
    quarantined: DataFrame
    results: DataFrame
    outcomes: tuple[CheckOutcome, ...]
    rows_in: int
    checked_count: int
    quarantined_count: int
    timings: Mapping[str, float] = field(default_factory=dict)   # seconds: rows (lookups, predicates, counts), ge
    _cached: DataFrame | None = None

    @property
    def valid_count(self) -> int:
        return self.rows_in - self.quarantined_count

    @property
    def quarantined_ratio(self) -> float:
        return self.quarantined_count / self.rows_in if self.rows_in else 0.0

    def release(self) -> None:
        """Drops the cached batch (after `valid` and `quarantined` have been written)."""
        if self._cached is not None:
            self._cached.unpersist()
            self._cached = None

    def __enter__(self) -> Validation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def currency_codes(ref_currencies: DataFrame) -> frozenset[str]:
    """The `currency_code` values of silver.ref_currencies (needs `currency_code`; deleted rows left out)."""
    rows = ref_currencies
    if OP in rows.columns:
        rows = rows.where(F.col(OP).isNull() | (F.col(OP) != F.lit(DELETE)))
    return frozenset(r[0] for r in rows.select("currency_code").distinct().collect() if r[0] is not None)


# --- lookups ---------------------------------------------------------------------------------------------
def with_lookups(lookups: Sequence[Lookup], parents: Mapping[str, DataFrame], table: str = "?"
                 ) -> Callable[[DataFrame], DataFrame]:
    """Adds each lookup's helper columns (`found_column`, `value_column(v)`) to a batch.

    Needs the lookups' child columns in the batch and, in `parents[lookup.parent]`, the parent columns
    and values. The parent (possibly a whole silver table) is first cut down to the batch's keys with a
    broadcast semi join (no shuffle of the parent), then reduced to one row per key, which is
    broadcast back to the batch. The batch should be cached: it is read once per lookup for its keys."""
    missing = sorted({lk.parent for lk in lookups} - set(parents))
    if missing:
        raise ValueError(f"quality suite {table}: QualityParams.parents lacks {', '.join(missing)} "
                         "(the parent table's current rows plus the batch's)")

    def _(batch: DataFrame) -> DataFrame:
        out = batch
        for lk in lookups:
            parent = parents[lk.parent]
            if OP in parent.columns:
                parent = parent.where(F.col(OP).isNull() | (F.col(OP) != F.lit(DELETE)))
            key_names = [f"{HELPER_PREFIX}k{j}" for j in range(len(lk.on))]
            keys = batch.select(*[F.col(c).alias(k) for c, k in zip(lk.child_columns, key_names, strict=True)])
            found = (parent.select(*[F.col(p).alias(k) for p, k in zip(lk.parent_columns, key_names, strict=True)],
                                   *[F.col(v).alias(lk.value_column(v)) for v in lk.values])
                     .join(F.broadcast(keys), on=key_names, how="left_semi")
                     .groupBy(*key_names)
                     .agg(F.lit(True).alias(lk.found_column),
                          *[F.max(lk.value_column(v)).alias(lk.value_column(v)) for v in lk.values]))
            on = [F.col(c) == F.col(k) for c, k in zip(lk.child_columns, key_names, strict=True)]
            child_null = any_of([F.col(c).isNull() for c in lk.child_columns])
            out = (out.join(F.broadcast(found), on=all_of(on), how="left")
                   .withColumn(lk.found_column, F.when(child_null, F.lit(None).cast("boolean"))
                               .otherwise(F.coalesce(F.col(lk.found_column), F.lit(False))))
                   .drop(*key_names))
        return out
    return _



# --- Great Expectations: ephemeral contexts, one thread at a time -------------------------------------------
@dataclass(frozen=True)
class _Compiled:
    """A suite's Spark expressions for one set of parameters: built once (each is a few py4j calls per
    check, about half a second for charges) and reused for every batch."""

    errors: Column              # array<string>: the failed `error` checks of a row ([] for a delete)
    warnings: Column            # array<string>: the failed `warn` checks
    counts: tuple[Column, ...]  # rows_in, checked, quarantined, then the failing rows per check


def _compile(suite: Suite, params: QualityParams) -> _Compiled:
    empty = F.array().cast("array<string>")

    def failed(severity_is_error: bool) -> Column:
        names = [F.when(unexpected_condition(c.expectation(params).configuration), F.lit(c.name))
                 for c in suite.checks if (c.severity == ERROR) == severity_is_error]
        if not names:
            return empty
        return F.when(F.col(_CHECKED), F.filter(F.array(*names), lambda x: x.isNotNull())).otherwise(empty)

    per_check = [F.count_if(F.array_contains(F.col(_ERRORS if c.severity == ERROR else _WARNINGS), c.name))
                 .alias(f"c{i}") for i, c in enumerate(suite.checks)]
    return _Compiled(errors=failed(True), warnings=failed(False), counts=(
        F.count(F.lit(1)).alias("rows_in"), F.count_if(F.col(_CHECKED)).alias("checked"),
        F.count_if(F.size(_ERRORS) > 0).alias("quarantined"), *per_check))


class _GxRunner:
    """An ephemeral GE context with one Spark data source and one validation definition per suite
    (and set of parameters). One per thread: GE's data source keeps one execution engine whose active
    batch is shared state, so two threads validating at once must not share it."""

    def __init__(self) -> None:
        context = gx.get_context(mode="ephemeral")
        context.enable_analytics(False)
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        # persist=False: GE would persist() every batch it is given and never release it; the caller
        # caches the batch itself.
        source = context.data_sources.add_spark("lakehouse", persist=False)
        self._batch = source.add_dataframe_asset("micro_batch").add_batch_definition_whole_dataframe("whole")
        self._context = context
        self._definitions: dict[tuple[str, tuple[str, ...]], ValidationDefinition] = {}
        self._compiled: dict[tuple[str, tuple[str, ...]], _Compiled] = {}

    def compiled(self, suite: Suite, params: QualityParams) -> _Compiled:
        key = (suite.table, tuple(sorted(params.currencies)))
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled[key] = _compile(suite, params)
        return found

    def definition(self, suite: Suite, params: QualityParams) -> ValidationDefinition:
        key = (suite.table, tuple(sorted(params.currencies)))
        found = self._definitions.get(key)
        if found is None:
            name = f"{suite.table}-{len(self._definitions)}"
            gx_suite = self._context.suites.add(gx.ExpectationSuite(
                name=name, expectations=[c.expectation(params) for c in suite.checks]))
            found = self._context.validation_definitions.add(
                ValidationDefinition(name=name, data=self._batch, suite=gx_suite))
            self._definitions[key] = found
        return found

    def run(self, suite: Suite, params: QualityParams, frame: DataFrame) -> Any:
        """Validates `frame`; GE keeps every run's results in the context's store, which in a stream that
        runs for weeks would only grow, so they are dropped once returned."""
        try:
            return self.definition(suite, params).run(batch_parameters={"dataframe": frame},
                                                      result_format=GE_RESULT_FORMATS[params.ge_result_format])
        finally:
            store = self._context.validation_results_store
            for key in store.list_keys():
                store.remove_key(key)

    def stored_results(self) -> int:
        return len(self._context.validation_results_store.list_keys())


class _RunnerPool:
    """GE runners lent to one thread at a time. A pool rather than one per thread: the silver job's
    tables run in threads that live for one micro-batch, and a runner (its context, suites and compiled
    expressions) costs seconds to build, so each batch would pay that again."""

    def __init__(self) -> None:
        self._idle: list[_GxRunner] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def lend(self) -> Iterator[_GxRunner]:
        with self._lock:
            runner = self._idle.pop() if self._idle else None
        if runner is None:
            runner = _GxRunner()
        try:
            yield runner
        finally:
            with self._lock:
                self._idle.append(runner)


_pool = _RunnerPool()


def _raised(exception_info: Any) -> str | None:
    """The first exception message in a GE result's exception_info (flat, or keyed by metric), if any."""
    if not isinstance(exception_info, dict):
        return None
    if exception_info.get("raised_exception"):
        return str(exception_info.get("exception_message"))
    for value in exception_info.values():
        if isinstance(value, dict) and (message := _raised(value)) is not None:
            return message
    return None


def _ge_results(runner: _GxRunner, suite: Suite, params: QualityParams, frame: DataFrame
                ) -> dict[str, dict[str, Any]]:
    """GE's result per check name: success, and (BASIC) element_count, unexpected_count, unexpected_percent."""
    run = runner.run(suite, params, frame)
    out: dict[str, dict[str, Any]] = {}
    for r in run.results:
        config = r.expectation_config
        name = str(((config.meta if config is not None else None) or {}).get("check"))
        message = _raised(r.exception_info)
        if message is not None:
            raise RuntimeError(f"quality suite {suite.table}: expectation {name} could not be evaluated: {message}")
        result = r.result or {}
        out[name] = {"success": bool(r.success), "element_count": result.get("element_count"),
                     "unexpected_count": result.get("unexpected_count"),
                     "unexpected_percent": result.get("unexpected_percent")}
    missing = sorted({c.name for c in suite.checks} - set(out))
    if missing:
        raise RuntimeError(f"quality suite {suite.table}: GE returned no result for {missing}")
    return out


# --- the batch -------------------------------------------------------------------------------------------
def validate_batch(df: DataFrame, table: str, batch_id: int, params: QualityParams,
                   source_table: str | None = None) -> Validation:
    """Validates one micro-batch of silver table `table` with its suite (see `suites.SUITES`).

    Needs the table's columns (those the suite names), optionally `_op` (c/u/d/r: `d` rows are not
    checked and stay valid), `_source_partition` and `_seq_offset` (the Kafka coordinates the
    quarantine records). `source_table` names where the rows came from in the quarantine; default: the
    bronze CDC table of the suite's OLTP table (`bronze.cdc_payments_charges`).

    Gives a `Validation`: `valid` (df's columns, rows passing every `error` check), `quarantined`
    (QUARANTINE_SCHEMA, one row per failing row with every failed `error` check in `reasons`),
    `results` (DQ_RESULTS_SCHEMA, one row per check) and the counts. Caches the batch once; call
    `release()` after writing.
    """
    suite = suite_of(table)
    if source_table is None:
        schema, _, name = suite.source.partition(".")
        source_table = cdc_table(schema, name).full_name
    helpers = [c for c in df.columns if c.startswith(HELPER_PREFIX)]
    if helpers:
        raise ValueError(f"quality suite {table}: columns {helpers} use the reserved prefix {HELPER_PREFIX}")
    missing = sorted({c for check in suite.checks for c in check.columns if not c.startswith(HELPER_PREFIX)}
                     - set(df.columns))
    if missing:
        raise ValueError(f"quality suite {table}: the batch lacks columns {missing} (has {df.columns})")
    run_at = dt.datetime.now(dt.UTC)

    with _pool.lend() as runner:
        compiled = runner.compiled(suite, params)
    checked = F.col(OP).isNull() | (F.col(OP) != F.lit(DELETE)) if OP in df.columns else F.lit(True)
    # With lookups the batch is read several times (its keys for each parent, then the join): cached
    # first. Without, the one aggregate below computes everything straight into the flagged cache.
    lookups = with_lookups(suite.lookups, params.parents, table) if suite.lookups else None   # checks parents
    # (a batch the caller cached stays the caller's: not cached again, not released here)
    base = df.persist(StorageLevel.MEMORY_AND_DISK) if lookups is not None and not df.is_cached else None
    prepared = df.transform(lookups) if lookups is not None else df
    flagged = (prepared.withColumn(_CHECKED, checked)
               .withColumns({_ERRORS: compiled.errors, _WARNINGS: compiled.warnings})
               .persist(StorageLevel.MEMORY_AND_DISK))
    try:
        started = time.monotonic()
        [counts] = flagged.agg(*compiled.counts).collect()
        if base is not None:
            base.unpersist()    # flagged holds every column of it now
        predicate_counts = {c.name: int(counts[f"c{i}"]) for i, c in enumerate(suite.checks)}
        rows_in, checked_count, quarantined_count = int(counts["rows_in"]), int(counts["checked"]), \
            int(counts["quarantined"])

        counted = time.monotonic()
        if checked_count:
            with _pool.lend() as runner:
                ge = _ge_results(runner, suite, params, flagged.where(F.col(_CHECKED)))
        else:   # only deletes (or nothing): every expectation holds vacuously, as GE would say
            ge = {c.name: {"success": True, "element_count": 0, "unexpected_count": 0, "unexpected_percent": None}
                  for c in suite.checks}
        timings = {"rows_s": round(counted - started, 3), "ge_s": round(time.monotonic() - counted, 3)}
        # GE's count when it gave one, else its success (mostly = 1: success means no unexpected row)
        differ = {n: (ge[n]["unexpected_count"] if ge[n]["unexpected_count"] is not None else
                      ("success" if ge[n]["success"] else "failure"), k)
                  for n, k in predicate_counts.items()
                  if (ge[n]["unexpected_count"] != k if ge[n]["unexpected_count"] is not None
                      else ge[n]["success"] != (k == 0))}
        if differ:
            raise QualityMismatchError(
                f"quality suite {table}, batch {batch_id}: GE and the row predicates disagree on failing rows "
                f"(expectation: (GE, predicate count)) {differ}; rows would be lost or quarantined wrongly")
        outcomes = tuple(CheckOutcome(
            c, ge[c.name]["success"],
            checked_count if ge[c.name]["element_count"] is None else int(ge[c.name]["element_count"]),
            predicate_counts[c.name], ge[c.name]["unexpected_percent"]) for c in suite.checks)
    except BaseException:
        flagged.unpersist()
        if base is not None:
            base.unpersist()
        raise

    record = flagged.select(*df.columns, _ERRORS)
    valid = flagged.where(F.size(_ERRORS) == 0).select(*df.columns)
    quarantined = to_quarantine(record.where(F.size(_ERRORS) > 0), _ERRORS, source_table, batch_id=batch_id)
    results = _results_frame(df, table, batch_id, outcomes, run_at)
    log.info("quality %s batch %d: %d rows, %d checked, %d quarantined; failing: %s; %s", table, batch_id, rows_in,
             checked_count, quarantined_count,
             {o.check.name: o.unexpected_count for o in outcomes if o.unexpected_count} or "none", timings)
    return Validation(table=table, batch_id=batch_id, valid=valid, quarantined=quarantined, results=results,
                      outcomes=outcomes, rows_in=rows_in, checked_count=checked_count,
                      quarantined_count=quarantined_count, timings=timings, _cached=flagged)


def _results_frame(df: DataFrame, table: str, batch_id: int, outcomes: Sequence[CheckOutcome],
                   run_at: dt.datetime) -> DataFrame:
    rows = [(table, batch_id, o.check.name, o.check.expectation_type, list(o.check.columns), o.check.severity,
                o.success, o.element_count, o.unexpected_count,
                None if o.unexpected_percent is None else float(o.unexpected_percent), run_at)
            for o in outcomes]
    return df.sparkSession.createDataFrame(rows, DQ_RESULTS_SCHEMA)


# --- the threshold ---------------------------------------------------------------------------------------
def check_threshold(validation: Validation, settings: Settings) -> None:
    """Raises `DataQualityError` when the batch quarantined more than `silver.max_quarantine_ratio` of
    its rows (all rows in, deletes included). Call it after writing the quarantine and the results, so
    that the evidence is stored before the job stops."""
    limit = settings.silver.max_quarantine_ratio
    if validation.quarantined_ratio > limit:
        raise DataQualityError(
            f"silver.{validation.table} batch {validation.batch_id}: {validation.quarantined_count} of "
            f"{validation.rows_in} rows quarantined ({validation.quarantined_ratio:.2%}), more than "
            f"silver.max_quarantine_ratio = {limit:.2%}; see silver.quarantine_{validation.table} and "
            f"silver.dq_results")
