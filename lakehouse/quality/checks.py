"""The building blocks of the silver suites: checks (one Great Expectations expectation each, with a
severity), lookups into parent tables, and the row predicate of every expectation type used.

A `Check` is declarative: the GE expectation class and its arguments, some of which may be `Param`
placeholders filled in per run (the valid currency codes come from `silver.ref_currencies`). Its
`expectation(params)` builds the GE 1.24 expectation object that the suite validates.

Why a row predicate next to GE: GE 1.24 reports counts for a Spark batch, and row identities only by
collecting them to the driver (`unexpected_index_list`: one Spark job per expectation, every failing
key as a Python dict). Quarantining needs the failing rows as a DataFrame, so `unexpected_condition`
maps each expectation configuration to the Spark Column that is true exactly for the rows GE counts
as unexpected (same null handling, same `ignore_row_if`). Every batch compares the two counts per
expectation (see validate.py), and a unit test proves the equality per expectation type.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import great_expectations as gx
from great_expectations.execution_engine import SparkDFExecutionEngine
from great_expectations.expectations.expectation import ColumnMapExpectation, Expectation
from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
from great_expectations.expectations.metadata_types import FailureSeverity
from great_expectations.expectations.metrics.map_metric_provider import (
    ColumnMapMetricProvider,
    column_condition_partial,
)
from pyspark.sql import Column
from pyspark.sql import functions as F

Severity = Literal["error", "warn"]
ERROR: Severity = "error"
WARN: Severity = "warn"
_GX_SEVERITY: dict[Severity, FailureSeverity] = {ERROR: FailureSeverity.CRITICAL, WARN: FailureSeverity.WARNING}


# --- a column-map form of "A >= B" ----------------------------------------------------------------------
# GE 1.24's Spark engine computes a column-pair expectation (ExpectColumnPairValuesAToBeGreaterThanB)
# with count jobs of its own (4 Spark jobs each, measured), while it folds the unexpected counts of all
# column-map expectations of a suite into one aggregate. The same rule as a column-map expectation on
# column A, comparing with column B in its condition, costs no job of its own. Its counts equal the
# pair expectation's (a row with a NULL on either side is never unexpected in both; a unit test
# compares them on the same frame).
class ColumnValuesGreaterThanColumn(ColumnMapMetricProvider):
    """Map metric: `column` > `other_column` (>= with `or_equal`), row by row (Spark only)."""

    condition_metric_name = "column_values.greater_than_column"
    condition_value_keys = ("other_column", "or_equal")

    @column_condition_partial(engine=SparkDFExecutionEngine)
    def _spark(cls, column: Column, other_column: str, or_equal: bool = False, **kwargs: Any) -> Column:
        other = F.col(other_column)
        return column >= other if or_equal else column > other


class ExpectColumnValuesToBeGreaterThanColumn(ColumnMapExpectation):
    """Expect each non-NULL value of `column` to be greater than (`or_equal`: or equal to) the value of
    `other_column` in the same row; rows where `other_column` is NULL are not unexpected."""

    other_column: str
    or_equal: bool = False

    map_metric = "column_values.greater_than_column"
    args_keys = ("column", "other_column")
    domain_keys: ClassVar[tuple[str, ...]] = ("column", "row_condition", "condition_parser")
    success_keys = ("other_column", "or_equal", "mostly")


# The expectation types `unexpected_condition` knows; a suite may use only these.
NOT_NULL = "expect_column_values_to_not_be_null"
IN_SET = "expect_column_values_to_be_in_set"
BETWEEN = "expect_column_values_to_be_between"
MATCH_REGEX = "expect_column_values_to_match_regex"
A_GREATER_THAN_B = "expect_column_pair_values_a_to_be_greater_than_b"
GREATER_THAN_COLUMN = "expect_column_values_to_be_greater_than_column"
SUPPORTED_TYPES = (NOT_NULL, IN_SET, BETWEEN, MATCH_REGEX, A_GREATER_THAN_B, GREATER_THAN_COLUMN)

# Helper columns added for lookups; never part of a stored row.
HELPER_PREFIX = "__dq_"


@dataclass(frozen=True)
class Param:
    """A placeholder in a check's arguments, replaced by the run's `QualityParams` field `name`."""

    name: str
    source: str                       # where the caller gets the value, for the docs

    def __repr__(self) -> str:
        return f"<{self.name}>"


CURRENCIES = Param("currencies", "currency_code of silver.ref_currencies")


@dataclass(frozen=True)
class Check:
    """One expectation of a suite: a GE expectation class, its arguments, a severity and a name.

    `name` defaults to `<expectation type>(<columns>)`, e.g. `expect_column_values_to_be_in_set(status)`;
    it is what the quarantine's `reasons` and `silver.dq_results.expectation` say."""

    expectation_class: type[Expectation]
    kwargs: Mapping[str, Any]
    severity: Severity = ERROR
    label: str | None = None
    why: str = ""                     # one line for the docs

    def __post_init__(self) -> None:
        if self.expectation_type not in SUPPORTED_TYPES:
            raise ValueError(f"check {self.name}: {self.expectation_type} has no row predicate; "
                             f"supported: {', '.join(SUPPORTED_TYPES)}")
        if self.severity not in (ERROR, WARN):
            raise ValueError(f"check {self.name}: severity must be {ERROR!r} or {WARN!r}, got {self.severity!r}")

    @property
    def expectation_type(self) -> str:
        return str(self.expectation_class.expectation_type)

    @property
    def columns(self) -> tuple[str, ...]:
        if "other_column" in self.kwargs:
            return (str(self.kwargs["column"]), str(self.kwargs["other_column"]))
        if "column" in self.kwargs:
            return (str(self.kwargs["column"]),)
        return (str(self.kwargs["column_A"]), str(self.kwargs["column_B"]))

    @property
    def name(self) -> str:
        return self.label or f"{self.expectation_type}({', '.join(self.columns)})"

    def expectation(self, params: Any) -> Expectation:
        """The GE expectation with `Param` placeholders filled from `params` (a `QualityParams`)."""
        kwargs = {k: _resolve(v, params) for k, v in self.kwargs.items()}
        return self.expectation_class(**kwargs, severity=_GX_SEVERITY[self.severity],
                                      meta={"check": self.name, "severity": self.severity})


def _resolve(value: Any, params: Any) -> Any:
    if isinstance(value, Param):
        resolved = getattr(params, value.name)
        if not resolved:
            raise ValueError(f"quality parameter {value.name!r} is empty: pass {value.source}")
        return sorted(resolved)
    return value


@dataclass(frozen=True)
class Lookup:
    """A parent table the checks of a child table look into.

    `validate_batch` joins the batch with the caller's parent rows on `on` (child column -> parent
    column) and adds `found_column` (true: a parent row exists; false: none; NULL when a child key
    column is NULL: nothing to look up) and one `value_column(v)` per parent column in `values`
    (its largest value per parent key: a parent frame of silver's current rows plus the batch's may
    hold two versions of one key)."""

    parent: str
    on: tuple[tuple[str, str], ...]
    values: tuple[str, ...] = ()

    @property
    def child_columns(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.on)

    @property
    def parent_columns(self) -> tuple[str, ...]:
        return tuple(p for _, p in self.on)

    @property
    def key(self) -> str:
        return f"{self.parent}_{'_'.join(self.child_columns)}"

    @property
    def found_column(self) -> str:
        return f"{HELPER_PREFIX}{self.key}_found"

    def value_column(self, value: str) -> str:
        if value not in self.values:
            raise ValueError(f"lookup {self.key}: {value!r} is not one of its values {self.values}")
        return f"{HELPER_PREFIX}{self.key}_{value}"

    def describe(self) -> str:
        return f"({', '.join(self.child_columns)}) -> {self.parent}({', '.join(self.parent_columns)})"


@dataclass(frozen=True)
class Suite:
    """The checks of one silver table, the OLTP table it comes from, its key and its lookups."""

    table: str                                # silver table name, e.g. "charges"
    source: str                               # OLTP table, e.g. "payments.charges"
    keys: tuple[str, ...]
    checks: tuple[Check, ...]
    lookups: tuple[Lookup, ...] = field(default=())

    def __post_init__(self) -> None:
        names = [c.name for c in self.checks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"suite {self.table}: check names must be unique, repeated: {duplicates}")
        helpers = {lk.found_column for lk in self.lookups} | {lk.value_column(v) for lk in self.lookups
                                                              for v in lk.values}
        for check in self.checks:
            unknown = [c for c in check.columns if c.startswith(HELPER_PREFIX) and c not in helpers]
            if unknown:
                raise ValueError(f"suite {self.table}: check {check.name} uses {unknown}, which no lookup adds")

    @property
    def parents(self) -> tuple[str, ...]:
        return tuple(sorted({lk.parent for lk in self.lookups}))


# --- constructors used by the suites ------------------------------------------------------------------
def not_null(*columns: str, why: str = "") -> tuple[Check, ...]:
    return tuple(Check(gx.expectations.ExpectColumnValuesToNotBeNull, {"column": c}, why=why) for c in columns)


def in_set(column: str, values: Any, severity: Severity = ERROR, why: str = "") -> Check:
    value_set = values if isinstance(values, Param) else sorted(values)
    return Check(gx.expectations.ExpectColumnValuesToBeInSet, {"column": column, "value_set": value_set},
                 severity=severity, why=why)


def between(column: str, min_value: Any = None, max_value: Any = None, *, strict_min: bool = False,
            strict_max: bool = False, why: str = "") -> Check:
    kwargs: dict[str, Any] = {"column": column}
    if min_value is not None:
        kwargs.update(min_value=min_value, strict_min=strict_min)
    if max_value is not None:
        kwargs.update(max_value=max_value, strict_max=strict_max)
    return Check(gx.expectations.ExpectColumnValuesToBeBetween, kwargs, why=why)


def matches(column: str, regex: str, why: str = "") -> Check:
    re.compile(regex)
    return Check(gx.expectations.ExpectColumnValuesToMatchRegex, {"column": column, "regex": regex}, why=why)


def greater_than_column(column: str, other_column: str, *, or_equal: bool, severity: Severity = ERROR,
                       label: str | None = None, why: str = "") -> Check:
    """`column` > `other_column` (>= with `or_equal`) in every row where both are set."""
    return Check(ExpectColumnValuesToBeGreaterThanColumn,
                 {"column": column, "other_column": other_column, "or_equal": or_equal},
                 severity=severity, label=label, why=why)


def reference_exists(lookup: Lookup) -> Check:
    """A warn check: every non-NULL child key has a parent row (see docs/quality.md, severity)."""
    return Check(gx.expectations.ExpectColumnValuesToBeInSet, {"column": lookup.found_column, "value_set": [True]},
                 severity=WARN, label=f"expect_reference_to_exist{lookup.describe()}",
                 why="the parent may arrive in a later micro-batch")


# --- the row predicate of an expectation -------------------------------------------------------------
def unexpected_condition(config: ExpectationConfiguration) -> Column:
    """The Spark Column that is true exactly for the rows GE 1.24 counts as unexpected for `config`
    (false, never NULL, for the others).

    Mirrors GE's Spark metrics: column map expectations ignore NULLs (except not-null itself) and count
    a row only when its condition is false, not NULL (so a comparison with a NULL other column is not
    unexpected); the pair expectation also drops the rows of its `ignore_row_if`."""
    kwargs = dict(config.kwargs)
    if kwargs.get("row_condition") is not None:
        raise ValueError(f"{config.type}: row_condition has no row predicate here")
    if config.type == NOT_NULL:
        return F.coalesce(F.col(kwargs["column"]).isNull(), F.lit(False))
    if config.type in (IN_SET, BETWEEN, MATCH_REGEX, GREATER_THAN_COLUMN):
        column = F.col(kwargs["column"])
        return F.coalesce(column.isNotNull() & ~_expected(config.type, column, kwargs), F.lit(False))
    if config.type == A_GREATER_THAN_B:
        a, b = F.col(kwargs["column_A"]), F.col(kwargs["column_B"])
        expected = ((a >= b) | a.eqNullSafe(b)) if kwargs.get("or_equal") else (a > b)
        ignore_row_if = kwargs.get("ignore_row_if", "both_values_are_missing")
        if ignore_row_if == "both_values_are_missing":
            considered = ~(a.isNull() & b.isNull())
        elif ignore_row_if == "either_value_is_missing":
            considered = ~(a.isNull() | b.isNull())
        elif ignore_row_if == "neither":
            considered = F.lit(True)
        else:
            raise ValueError(f"{config.type}: unknown ignore_row_if {ignore_row_if!r}")
        return considered & F.coalesce(~expected, F.lit(False))
    raise ValueError(f"{config.type}: no row predicate; supported: {', '.join(SUPPORTED_TYPES)}")


def _expected(expectation_type: str, column: Column, kwargs: dict[str, Any]) -> Column:
    if expectation_type == IN_SET:
        return column.isin(list(kwargs["value_set"]))
    if expectation_type == MATCH_REGEX:
        return column.rlike(kwargs["regex"])
    if expectation_type == GREATER_THAN_COLUMN:
        other = F.col(kwargs["other_column"])
        return column >= other if kwargs.get("or_equal") else column > other
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is None and high is None:
        raise ValueError(f"{BETWEEN}: min_value and max_value cannot both be None")
    conditions = []
    if low is not None:
        conditions.append(column > F.lit(low) if kwargs.get("strict_min") else column >= F.lit(low))
    if high is not None:
        conditions.append(column < F.lit(high) if kwargs.get("strict_max") else column <= F.lit(high))
    return conditions[0] if len(conditions) == 1 else conditions[0] & conditions[1]
