"""The suite registry against the OLTP migrations: tables, columns, keys and CHECK lists cannot drift apart."""

from __future__ import annotations

import re

import pytest

from lakehouse.common.config import project_root
from lakehouse.quality.checks import HELPER_PREFIX, IN_SET, NOT_NULL, WARN, Param
from lakehouse.quality.suites import SUITES, silver_table_name, suite
from lakehouse.quality.validate import QualityParams

MIGRATIONS = sorted((project_root() / "lakehouse" / "oltp" / "migrations").glob("V00[1-3]__*.sql"))
PLAINTEXT_PII = {("customers", "email"), ("customers", "full_name"), ("customers", "phone"),
                 ("charges", "ip_address")}
_TABLE = re.compile(r"CREATE TABLE (\w+)\.(\w+) \((.*?)\n\)", re.DOTALL)
_COLUMN = re.compile(r"^\s+(\w+)\s+(?:bigint|text|char|timestamptz|date|numeric|smallint|boolean|cidr|jsonb|bytea)\b",
                     re.MULTILINE)
_CHECK_IN = re.compile(r"CHECK \((\w+) IN \(([^)]*)\)\)")


def oltp_tables() -> dict[str, tuple[set[str], dict[str, set[str]]]]:
    """`schema.table` -> (its columns, column -> the values of its CHECK (c IN (...)))."""
    tables = {}
    for path in MIGRATIONS:
        for schema, name, body in _TABLE.findall(path.read_text()):
            checks = {c: set(re.findall(r"'([^']*)'", values)) for c, values in _CHECK_IN.findall(body)}
            tables[f"{schema}.{name}"] = (set(_COLUMN.findall(body)), checks)
    return tables


def test_every_replicated_oltp_table_has_a_suite_under_its_silver_name() -> None:
    replicated = {t for t in oltp_tables() if not t.startswith("vault.")}
    assert len(replicated) == 25
    assert {silver_table_name(t) for t in replicated} == set(SUITES)
    assert {s.source for s in SUITES.values()} == replicated
    assert all(silver_table_name(s.source) == s.table for s in SUITES.values())


@pytest.mark.parametrize("table", sorted(SUITES))
def test_suite_columns_exist_in_the_oltp_table_and_keys_are_checked_not_null(table: str) -> None:
    s = suite(table)
    columns, _ = oltp_tables()[s.source]
    named = {c for check in s.checks for c in check.columns if not c.startswith(HELPER_PREFIX)}
    named |= {c for lk in s.lookups for c in lk.child_columns}
    assert named <= columns, f"{table}: {sorted(named - columns)} are not columns of {s.source}"
    assert not {(table, c) for c in named} & PLAINTEXT_PII
    not_null = {check.columns[0] for check in s.checks if check.expectation_type == NOT_NULL}
    assert set(s.keys) <= not_null


@pytest.mark.parametrize("table", sorted(SUITES))
def test_allowed_values_are_the_migrations_check_lists(table: str) -> None:
    s = suite(table)
    _, check_lists = oltp_tables()[s.source]
    in_set = {check.columns[0]: check.kwargs["value_set"] for check in s.checks
              if check.expectation_type == IN_SET and not check.columns[0].startswith(HELPER_PREFIX)}
    for column, values in in_set.items():
        if isinstance(values, Param):
            assert values.name == "currencies" and "currenc" in column
        else:
            assert set(values) == check_lists[column], f"{table}.{column}"
    # every CHECK list of the table is enforced (the single-value `kind` columns of the subtypes aside)
    assert {c for c, v in check_lists.items() if len(v) > 1} <= set(in_set), table


def test_the_statuses_named_in_the_brief() -> None:
    def statuses(table: str) -> list[str]:
        [check] = [c for c in suite(table).checks if c.name == "expect_column_values_to_be_in_set(status)"]
        return list(check.kwargs["value_set"])

    assert statuses("charges") == sorted(["pending", "authorized", "captured", "failed", "canceled"])
    assert statuses("refunds") == sorted(["pending", "succeeded", "failed"])
    assert statuses("disputes") == sorted(["needs_response", "under_review", "won", "lost"])
    assert statuses("subscriptions") == sorted(["active", "past_due", "canceled"])
    assert statuses("invoices") == sorted(["open", "paid", "void", "uncollectible"])
    assert statuses("merchants") == sorted(["active", "suspended", "closed"])
    assert statuses("payment_methods") == sorted(["active", "detached", "expired"])


def test_cross_table_checks_are_warnings_and_everything_else_errors() -> None:
    for s in SUITES.values():
        for check in s.checks:
            uses_lookup = any(c.startswith(HELPER_PREFIX) for c in check.columns)
            assert (check.severity == WARN) == uses_lookup, check.name
    assert {t: s.parents for t, s in SUITES.items() if s.lookups} == {
        "charges": ("customers", "merchants", "payment_methods"), "refunds": ("charges",), "disputes": ("charges",)}


def test_every_suite_builds_its_ge_expectations() -> None:
    params = QualityParams(currencies=frozenset({"USD"}))
    for s in SUITES.values():
        built = [c.expectation(params) for c in s.checks]
        assert [b.configuration.meta["check"] for b in built] == [c.name for c in s.checks]
        assert all(b.severity.value == ("critical" if c.severity == "error" else "warning")
                   for b, c in zip(built, s.checks, strict=True))
