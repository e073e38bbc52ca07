"""Finds card numbers where they must never be: every text column outside the vault.

A match is a run of 13-19 digits (spaces or dashes allowed between digit groups) that passes the
Luhn check. Used by tests and by compliance checks; the report holds table, column and count, never
the number itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from lakehouse.oltp.vault import luhn_valid

CANDIDATE = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
SQL_CANDIDATE = r"[0-9][0-9 -]{11,}[0-9]"


@dataclass(frozen=True)
class PanFinding:
    table: str
    column: str
    rows: int


def contains_pan(text: str) -> bool:
    return any(luhn_valid(re.sub(r"[ -]", "", m.group())) for m in CANDIDATE.finditer(text))


def scan_for_pans(conn: Any, exclude_schemas: tuple[str, ...] = ("vault",)) -> list[PanFinding]:
    """Every text-like column of every user table outside `exclude_schemas`, checked row by row
    (prefiltered in SQL by a digit-run pattern). Run it as a role that can read every table."""
    # Tables and partitioned parents (not each partition again), this session's temp tables included.
    columns = conn.execute(
        "SELECT n.nspname, c.relname, a.attname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid "
        "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND a.attnum > 0 AND NOT a.attisdropped "
        "AND a.atttypid IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype, 'json'::regtype, 'jsonb'::regtype)"
        " AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'"
        " AND (n.nspname NOT LIKE 'pg_temp%%' OR n.oid = pg_my_temp_schema()) AND NOT n.nspname = ANY(%s) "
        "ORDER BY 1, 2, 3", (list(exclude_schemas),)).fetchall()
    findings = []
    for schema, table, column in columns:
        query = sql.SQL("SELECT {col}::text FROM {tbl} WHERE {col}::text ~ %s").format(
            col=sql.Identifier(column), tbl=sql.Identifier(schema, table))
        hits = sum(1 for (value,) in conn.execute(query, (SQL_CANDIDATE,)) if contains_pan(value))
        if hits:
            findings.append(PanFinding(f"{schema}.{table}", column, hits))
    return findings
