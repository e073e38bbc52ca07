"""The query pack: named, parameterised Spark SQL queries in `queries/<name>.sql` (`lakehouse query`).

A query file starts with a header of SQL comments, then the statement:

    -- name: revenue_daily
    -- description: Gross, refunds, disputes, fees and net revenue in USD per day and merchant.
    -- param: start_date date 2000-01-01  first day (inclusive)
    -- param: merchant_id bigint -  one merchant, or all when omitted
    SELECT … WHERE d.date >= :start_date AND (:merchant_id IS NULL OR f.merchant_id = :merchant_id)

A `param` line is `<name> <type> <default> <description>`: the type is one of `TYPES`; the default is one
token, `-` (optional, NULL unless given) or `required`. The body refers to parameters with Spark's
named markers `:name`. Loading checks the header and that the markers and the declared parameters are
the same set; `bind` turns `--param name=value` strings into typed Python values; `run` hands them to
`spark.sql(…, args=…)`, so values are never spliced into the SQL text.

Pure Python: Spark is imported only for type hints.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakehouse.common.config import project_root

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

QUERIES_DIR = project_root() / "queries"

# Spark 4.1.1 leaves named markers unbound when its new pre-parser substitutes them
# (UNBOUND_SQL_PARAMETER for any `spark.sql(…, args=…)`, apache/spark#55392); the analyzer-time binding
# of Spark 4.0, kept behind this flag, works. `run` sets it for the one call.
CONSTANTS_ONLY = "spark.sql.legacy.parameterSubstitution.constantsOnly"

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEADER = re.compile(r"^--\s*([A-Za-z_]+)\s*:\s*(.*?)\s*$")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INTEGER = re.compile(r"^[+-]?\d+$")
_DECIMAL = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_KEYS = ("name", "description", "param")


class QueryError(ValueError):
    """A query is unknown, its file is malformed, or a parameter value is missing, unknown or invalid."""


def _to_int(bits: int) -> Callable[[str], int]:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def _(text: str) -> int:
        if not _INTEGER.match(text) or not low <= int(text) <= high:
            raise ValueError
        return int(text)
    return _


def _to_double(text: str) -> float:
    if "_" in text:          # float() takes `1_000`; SQL does not
        raise ValueError
    return float(text)


def _to_decimal(text: str) -> decimal.Decimal:
    value = decimal.Decimal(text) if _DECIMAL.match(text) else None
    if value is None or len(value.as_tuple().digits) > 38:     # Spark's DECIMAL holds 38 digits
        raise ValueError
    return value


def _to_date(text: str) -> dt.date:
    if not _DATE.match(text):       # fromisoformat also takes 20240102 and 2024-W01-1
        raise ValueError
    return dt.date.fromisoformat(text)


def _to_timestamp(text: str) -> dt.datetime:
    # Aware, in UTC: PySpark reads a naive datetime in the Python process's local time zone.
    value = dt.datetime.fromisoformat(text)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _to_boolean(text: str) -> bool:
    return _BOOLEANS[text.lower()]


# type -> (how a value is written, converter from text)
TYPES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "string": ("any text", str),
    "int": ("a whole number from -2^31 to 2^31-1", _to_int(32)),
    "bigint": ("a whole number from -2^63 to 2^63-1", _to_int(64)),
    "double": ("a number such as 1.5 or 2e-3", _to_double),
    "decimal": ("digits with an optional point such as 12.50, at most 38 digits", _to_decimal),
    "date": ("YYYY-MM-DD", _to_date),
    "timestamp": ("YYYY-MM-DD[ HH:MM[:SS[.ffffff]]][+HH:MM], UTC when no offset is given", _to_timestamp),
    "boolean": ("true/false, yes/no or 1/0", _to_boolean),
}


@dataclass(frozen=True)
class Param:
    """A declared parameter. `default` is a typed value (None: NULL); `required` ones have no default."""

    name: str
    type: str
    default: Any
    required: bool
    description: str


@dataclass(frozen=True)
class Query:
    """A parsed query file. `sql` is the whole file (the header is SQL comments), so Spark's line
    numbers in errors are the file's."""

    name: str
    description: str
    params: tuple[Param, ...]
    sql: str
    path: Path


def convert(param: Param, text: str) -> Any:
    """`text` as a Python value of `param`'s type; QueryError naming the parameter, value and type."""
    how, to_value = TYPES[param.type]
    try:
        return to_value(text)
    except (ValueError, KeyError, ArithmeticError):
        raise QueryError(f"parameter {param.name!r}: {text!r} is not a {param.type} ({how})") from None


def _parse_param(spec: str, where: str) -> Param:
    parts = spec.split(maxsplit=3)
    if len(parts) < 4:
        raise QueryError(f"{where}: a param line is `-- param: <name> <type> <default|-|required> <description>`, "
                         f"got {spec!r}")
    name, type_, default, description = parts
    if not _NAME.match(name):
        raise QueryError(f"{where}: {name!r} is not a parameter name (letters, digits, _)")
    if type_ not in TYPES:
        raise QueryError(f"{where}: parameter {name!r} has unknown type {type_!r}; types: {', '.join(TYPES)}")
    param = Param(name, type_, None, default == "required", description)
    if default in ("-", "required"):
        return param
    try:
        return Param(name, type_, convert(param, default), False, description)
    except QueryError as e:
        raise QueryError(f"{where}: default of {e}") from None


def parse_query(text: str, path: Path) -> Query:
    """A Query from a file's text; QueryError with `path:line` when the header or the markers are wrong."""
    fields: dict[str, str] = {}
    params: list[Param] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if not line.startswith("--"):
            break                                   # the statement: the header is over
        where = f"{path}:{lineno}"
        m = _HEADER.match(line)
        key, value = (m.group(1).lower(), m.group(2)) if m else ("", "")
        if key not in _KEYS:
            continue                                # a free comment (a misspelt key shows up below, as a
                                                    # missing name or an undeclared marker)
        if key == "param":
            param = _parse_param(value, where)
            if any(p.name == param.name for p in params):
                raise QueryError(f"{where}: parameter {param.name!r} is declared twice")
            params.append(param)
        elif key in fields:
            raise QueryError(f"{where}: `{key}:` appears twice in the header")
        elif not value:
            raise QueryError(f"{where}: `{key}:` is empty")
        else:
            fields[key] = value
    for key in ("name", "description"):
        if key not in fields:
            raise QueryError(f"{path}: the header has no `-- {key}: …` line")
    if fields["name"] != path.stem:
        raise QueryError(f"{path}: the header says name {fields['name']!r}, the file is {path.name!r}; "
                         "they must match")
    _check_markers(text, path, [p.name for p in params])
    return Query(fields["name"], fields["description"], tuple(params), text, path)


def markers(sql: str) -> Iterator[tuple[str, int]]:
    """Each named parameter marker `:name` in `sql` with its line number, skipping string literals,
    back-quoted identifiers, comments and `::` casts."""
    i, n, line = 0, len(sql), 1
    while i < n:
        c = sql[i]
        if c in "'\"`":                             # a literal or quoted identifier, to its closing quote
            j = i + 1
            while j < n and sql[j] != c:
                j += 2 if sql[j] == "\\" and c != "`" else 1
            line += sql.count("\n", i, j + 1)
            i = j + 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
        elif sql.startswith("/*", i):               # Spark's bracketed comments nest
            depth, j = 1, i + 2
            while j < n and depth:
                if sql.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif sql.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            line += sql.count("\n", i, j)
            i = j
        elif sql.startswith("::", i):               # a cast: `x::date`
            i += 2
            while i < n and (sql[i].isalnum() or sql[i] == "_"):
                i += 1
        elif c == ":":
            m = _IDENT.match(sql, i + 1)
            if m:
                yield m.group(0), line
                i = m.end()
            else:
                i += 1
        else:
            if c == "\n":
                line += 1
            i += 1


def _check_markers(sql: str, path: Path, declared: list[str]) -> None:
    used: dict[str, int] = {}
    for name, line in markers(sql):
        used.setdefault(name, line)
    for name, line in used.items():
        if name not in declared:
            raise QueryError(f"{path}:{line}: :{name} is not a declared parameter "
                             f"(declared: {', '.join(declared) or 'none'}); add a `-- param:` line")
    unused = [name for name in declared if name not in used]
    if unused:
        raise QueryError(f"{path}: declared but not used in the statement: {', '.join(unused)}")


def query_names(root: Path | None = None) -> list[str]:
    """The names of the queries under `root` (default QUERIES_DIR), sorted; no file is parsed."""
    return sorted(p.stem for p in (root or QUERIES_DIR).glob("*.sql"))


def load_query(name: str, root: Path | None = None) -> Query:
    """The query `<root>/<name>.sql` (default root QUERIES_DIR), parsed and checked."""
    root = root or QUERIES_DIR
    path = root / f"{name}.sql"
    if not _NAME.match(name) or not path.is_file():
        known = query_names(root)
        raise QueryError(f"unknown query {name!r}; " + (f"known queries: {', '.join(known)}" if known
                                                        else f"there are no queries in {root}"))
    return parse_query(path.read_text(encoding="utf-8"), path)


def list_queries(root: Path | None = None) -> list[Query]:
    """Every query under `root` (default QUERIES_DIR), sorted by name; the first malformed file raises."""
    return [load_query(name, root) for name in query_names(root)]


def parse_param_args(items: Iterable[str]) -> dict[str, str]:
    """`["k=v", …]` (repeated `--param k=v`) as a dict; the value may contain `=` and may be empty."""
    given: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise QueryError(f"--param {item!r}: expected NAME=VALUE")
        if key in given:
            raise QueryError(f"--param {key!r} is given twice")
        given[key] = value
    return given


def bind(query: Query, given: Mapping[str, str]) -> dict[str, Any]:
    """Every declared parameter's value: the given text converted to its type, else its default (None
    for an optional one). QueryError for an unknown name, a missing required one or an unconvertible value."""
    declared = {p.name: p for p in query.params}
    unknown = [k for k in given if k not in declared]
    if unknown:
        raise QueryError(f"query {query.name!r} has no parameter {', '.join(map(repr, unknown))}; "
                         f"its parameters: {', '.join(declared) or 'none'}")
    missing = [p for p in query.params if p.required and p.name not in given]
    if missing:
        raise QueryError(f"query {query.name!r} needs " + ", ".join(
            f"--param {p.name}=<{p.type}>" for p in missing))
    try:
        return {p.name: convert(p, given[p.name]) if p.name in given else p.default for p in query.params}
    except QueryError as e:
        raise QueryError(f"query {query.name!r}: {e}") from None


@contextlib.contextmanager
def _constants_only_parameters(spark: SparkSession) -> Iterator[None]:
    before = spark.conf.get(CONSTANTS_ONLY)
    spark.conf.set(CONSTANTS_ONLY, "true")
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(CONSTANTS_ONLY)
        else:
            spark.conf.set(CONSTANTS_ONLY, before)


def run(spark: SparkSession, query: Query, values: Mapping[str, Any]) -> DataFrame:
    """`query` with `values` (from `bind`) bound to its markers by Spark as literals.

    A None value binds as an untyped NULL (Spark's VOID): `:p IS NULL` and comparisons work; a marker
    selected as a column should be written `CAST(:p AS <type>)` to give the column a type. The plan is
    analysed (and the values bound) here, so the returned DataFrame does not depend on the flag.
    """
    with _constants_only_parameters(spark):
        return spark.sql(query.sql, args=dict(values))
