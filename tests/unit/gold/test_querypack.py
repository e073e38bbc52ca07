"""gold.querypack: the header of a query file, binding `--param` values to typed values, every error a user
or a query author can make, and running a query through the project's Spark session (and `lakehouse query`)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest
from chispa import assert_df_equality

from lakehouse.cli import build_parser, main
from lakehouse.gold import querypack
from lakehouse.gold.querypack import (
    Param,
    Query,
    QueryError,
    bind,
    list_queries,
    load_query,
    markers,
    parse_param_args,
    run,
)

REVENUE = """\
-- name: revenue_daily
-- description: Gross and net revenue in USD per day and merchant.
-- (a free comment line)

-- param: start_date date 2000-01-01  first day (inclusive)
-- param: end_date date required  last day (inclusive)
-- param: merchant_id bigint -  one merchant, or all when omitted
SELECT d.date, f.merchant_id::string AS merchant, ':not_a_param' AS s  -- :nor_this
FROM gold.fact_charges f /* :nor /* nested :this */ one */ JOIN gold.dim_date d ON d.date_key = f.date_key
WHERE d.date BETWEEN :start_date AND :end_date
  AND (:merchant_id IS NULL OR f.merchant_id = :merchant_id)
"""


def write(root: Path, name: str, text: str) -> Path:
    path = root / f"{name}.sql"
    path.write_text(text, encoding="utf-8")
    return path


def one_param(type_: str, default: str = "-") -> Query:
    return Query("q", "d", (Param("p", type_, None, default == "required", "x"),), "SELECT :p", Path("q.sql"))


# --- parsing ------------------------------------------------------------------------------------
def test_header_gives_the_query_its_name_description_and_typed_params(tmp_path: Path) -> None:
    path = write(tmp_path, "revenue_daily", REVENUE)
    assert load_query("revenue_daily", tmp_path) == Query(
        name="revenue_daily",
        description="Gross and net revenue in USD per day and merchant.",
        params=(Param("start_date", "date", dt.date(2000, 1, 1), False, "first day (inclusive)"),
                Param("end_date", "date", None, True, "last day (inclusive)"),
                Param("merchant_id", "bigint", None, False, "one merchant, or all when omitted")),
        sql=REVENUE, path=path)


def test_markers_skip_literals_comments_and_casts_and_give_their_lines() -> None:
    assert list(markers(REVENUE)) == [("start_date", 10), ("end_date", 10), ("merchant_id", 11),
                                      ("merchant_id", 11)]
    assert list(markers("SELECT 'it\\'s :a', \"b:c\", `d:e`, x::int, :f\n/* :g\n */ :h")) == [("f", 1), ("h", 3)]


def test_list_queries_loads_every_file_sorted_by_name(tmp_path: Path) -> None:
    write(tmp_path, "b_query", "-- name: b_query\n-- description: second\nSELECT 2")
    write(tmp_path, "a_query", "-- name: a_query\n-- description: first\n-- param: n int 1  a number\nSELECT :n")
    (tmp_path / "README.md").write_text("not a query")
    assert [(q.name, q.description, [p.name for p in q.params]) for q in list_queries(tmp_path)] == [
        ("a_query", "first", ["n"]), ("b_query", "second", [])]
    assert list_queries(tmp_path / "missing") == []


def test_every_query_in_the_pack_loads() -> None:
    """The shipped queries/*.sql: headers well formed, markers and params agree."""
    assert [q.name for q in list_queries()] == sorted(p.stem for p in querypack.QUERIES_DIR.glob("*.sql"))


# --- binding ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("type_", "text", "value"), [
    ("string", " a b=c ", " a b=c "),
    ("string", "", ""),
    ("int", "-42", -42),
    ("int", "2147483647", 2147483647),
    ("bigint", "9223372036854775807", 9223372036854775807),
    ("bigint", "+7", 7),
    ("double", "1.5", 1.5),
    ("double", "2e-3", 0.002),
    ("decimal", "12.50", Decimal("12.50")),
    ("decimal", "-.5", Decimal("-0.5")),
    ("date", "2024-02-29", dt.date(2024, 2, 29)),
    ("timestamp", "2024-01-02 03:04:05", dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)),
    ("timestamp", "2024-01-02T03:04:05.250+02:00", dt.datetime(2024, 1, 2, 1, 4, 5, 250000, tzinfo=dt.UTC)),
    ("timestamp", "2024-01-02", dt.datetime(2024, 1, 2, tzinfo=dt.UTC)),
    ("boolean", "true", True), ("boolean", "YES", True), ("boolean", "1", True),
    ("boolean", "False", False), ("boolean", "no", False), ("boolean", "0", False),
])
def test_bind_converts_each_type(type_: str, text: str, value: object) -> None:
    bound = bind(one_param(type_), {"p": text})
    assert bound == {"p": value}
    assert type(bound["p"]) is type(value)
    if isinstance(value, Decimal):
        assert str(bound["p"]) == str(value)            # the scale is kept: 12.50, not 12.5


def test_bind_applies_defaults_and_given_values_win(tmp_path: Path) -> None:
    write(tmp_path, "revenue_daily", REVENUE)
    query = load_query("revenue_daily", tmp_path)
    assert bind(query, {"end_date": "2024-01-31"}) == {
        "start_date": dt.date(2000, 1, 1), "end_date": dt.date(2024, 1, 31), "merchant_id": None}
    assert bind(query, {"end_date": "2024-01-31", "start_date": "2024-01-01", "merchant_id": "7"}) == {
        "start_date": dt.date(2024, 1, 1), "end_date": dt.date(2024, 1, 31), "merchant_id": 7}


@pytest.mark.parametrize(("type_", "text"), [
    ("int", "1.5"), ("int", "2147483648"), ("int", "1_000"), ("int", ""), ("bigint", "9223372036854775808"),
    ("double", "abc"), ("double", "1_0"), ("decimal", "1e5"), ("decimal", "NaN"), ("decimal", "1" * 39),
    ("date", "2024-13-01"), ("date", "20240102"), ("date", "2024-02-30"), ("timestamp", "yesterday"),
    ("boolean", "maybe"), ("boolean", ""),
])
def test_a_value_that_is_not_of_the_type_names_param_value_and_type(type_: str, text: str) -> None:
    with pytest.raises(QueryError, match=rf"^query 'q': parameter 'p': {text!r} is not a {type_} \("):
        bind(one_param(type_), {"p": text})


def test_bad_date_message_in_full() -> None:
    with pytest.raises(QueryError) as e:
        bind(one_param("date"), {"p": "2024-13-01"})
    assert str(e.value) == "query 'q': parameter 'p': '2024-13-01' is not a date (YYYY-MM-DD)"


def test_unknown_parameter_lists_the_declared_ones(tmp_path: Path) -> None:
    write(tmp_path, "revenue_daily", REVENUE)
    with pytest.raises(QueryError) as e:
        bind(load_query("revenue_daily", tmp_path), {"end_date": "2024-01-31", "merchant": "7"})
    assert str(e.value) == ("query 'revenue_daily' has no parameter 'merchant'; its parameters: start_date, "
                            "end_date, merchant_id")


def test_missing_required_parameter(tmp_path: Path) -> None:
    write(tmp_path, "revenue_daily", REVENUE)
    with pytest.raises(QueryError) as e:
        bind(load_query("revenue_daily", tmp_path), {"start_date": "2024-01-01"})
    assert str(e.value) == "query 'revenue_daily' needs --param end_date=<date>"


def test_param_args_split_on_the_first_equals_sign() -> None:
    assert parse_param_args(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(QueryError, match=r"^--param 'a': expected NAME=VALUE$"):
        parse_param_args(["a"])
    with pytest.raises(QueryError, match=r"^--param '=1': expected NAME=VALUE$"):
        parse_param_args(["=1"])
    with pytest.raises(QueryError, match=r"^--param 'a' is given twice$"):
        parse_param_args(["a=1", "a=2"])


# --- errors in the pack -------------------------------------------------------------------------
def test_unknown_query_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(QueryError) as e:
        load_query("revenue", tmp_path)
    assert str(e.value) == f"unknown query 'revenue'; there are no queries in {tmp_path}"
    write(tmp_path, "revenue_daily", REVENUE)
    write(tmp_path, "broken", "not even a header")     # not parsed to list the names
    for name in ("revenue", "../revenue_daily", "revenue_daily.sql"):
        with pytest.raises(QueryError) as e:
            load_query(name, tmp_path)
        assert str(e.value) == f"unknown query {name!r}; known queries: broken, revenue_daily"


HEAD = "-- name: q\n-- description: d\n"


@pytest.mark.parametrize(("text", "message"), [
    (HEAD + "-- param: p date\nSELECT :p",
     "{path}:3: a param line is `-- param: <name> <type> <default|-|required> <description>`, got 'p date'"),
    (HEAD + "-- param: p date -\nSELECT :p",
     "{path}:3: a param line is `-- param: <name> <type> <default|-|required> <description>`, got 'p date -'"),
    (HEAD + "-- param: p datetime - when\nSELECT :p",
     "{path}:3: parameter 'p' has unknown type 'datetime'; types: string, int, bigint, double, decimal, date, "
     "timestamp, boolean"),
    (HEAD + "-- param: 1p int - one\nSELECT 1",
     "{path}:3: '1p' is not a parameter name (letters, digits, _)"),
    (HEAD + "-- param: p date 2024-13-01  when\nSELECT :p",
     "{path}:3: default of parameter 'p': '2024-13-01' is not a date (YYYY-MM-DD)"),
    (HEAD + "-- param: p int 1 one\n-- param: p int 2 two\nSELECT :p",
     "{path}:4: parameter 'p' is declared twice"),
    (HEAD + "-- name: q\nSELECT 1", "{path}:3: `name:` appears twice in the header"),
    ("-- name: q\n-- description:\nSELECT 1", "{path}:2: `description:` is empty"),
    ("-- description: d\nSELECT 1", "{path}: the header has no `-- name: …` line"),
    ("SELECT 1", "{path}: the header has no `-- name: …` line"),
    ("-- name: q\nSELECT 1", "{path}: the header has no `-- description: …` line"),
    ("-- name: revenue\n-- description: d\nSELECT 1",
     "{path}: the header says name 'revenue', the file is 'q.sql'; they must match"),
    (HEAD + "-- param: a int 1 one\nSELECT :a,\n  :b",
     "{path}:5: :b is not a declared parameter (declared: a); add a `-- param:` line"),
    (HEAD + "-- parm: a int 1 one\nSELECT :a",
     "{path}:4: :a is not a declared parameter (declared: none); add a `-- param:` line"),
    (HEAD + "-- param: a int 1 one\n-- param: b int 1 two\n-- param: c int 1 three\nSELECT :b -- :a",
     "{path}: declared but not used in the statement: a, c"),
])
def test_a_malformed_query_file_is_named_with_its_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "q", text)
    with pytest.raises(QueryError) as e:
        load_query("q", tmp_path)
    assert str(e.value) == message.format(path=path)
    with pytest.raises(QueryError):
        list_queries(tmp_path)


# --- Spark --------------------------------------------------------------------------------------
def test_run_binds_a_date_and_a_null(spark, tmp_path: Path) -> None:
    write(tmp_path, "probe", "-- name: probe\n-- description: d\n-- param: d date required  a day\n"
                             "-- param: m bigint -  optional\nSELECT :d AS d, :m IS NULL AS none;\n")
    query = load_query("probe", tmp_path)
    before = spark.conf.get(querypack.CONSTANTS_ONLY)
    actual = run(spark, query, bind(query, {"d": "2024-01-02"}))
    assert spark.conf.get(querypack.CONSTANTS_ONLY) == before          # the flag is the session's again
    assert_df_equality(actual, spark.createDataFrame([(dt.date(2024, 1, 2), True)], "d date, none boolean"),
                       ignore_nullable=True)


def test_run_binds_every_type_as_spark_literals(spark, tmp_path: Path) -> None:
    params = [("s", "string"), ("i", "int"), ("b", "bigint"), ("f", "double"), ("x", "decimal"), ("d", "date"),
              ("t", "timestamp"), ("o", "boolean"), ("m", "bigint")]
    header = "".join(f"-- param: {n} {t} -  {t}\n" for n, t in params)
    write(tmp_path, "types", "-- name: types\n-- description: d\n" + header +
          "SELECT :s AS s, :i AS i, :b AS b, :f AS f, :x AS x, :d AS d, CAST(:t AS STRING) AS t, :o AS o,\n"
          "  (:m IS NULL OR 5 = :m) AS m_matches, CAST(:m AS BIGINT) AS m")
    query = load_query("types", tmp_path)
    given = {"s": "it's", "i": "7", "b": "9000000000", "f": "1.5", "x": "12.50", "d": "2024-02-29",
             "t": "2024-01-02T03:04:05+02:00", "o": "yes"}
    actual = run(spark, query, bind(query, given))
    expected = spark.createDataFrame(
        [("it's", 7, 9000000000, 1.5, Decimal("12.50"), dt.date(2024, 2, 29), "2024-01-02 01:04:05", True, True,
          None)],
        "s string, i int, b bigint, f double, x decimal(4,2), d date, t string, o boolean, m_matches boolean, "
        "m bigint")
    assert_df_equality(actual, expected, ignore_nullable=True)


# --- lakehouse query ----------------------------------------------------------------------------
def test_parser_knows_query() -> None:
    args = build_parser().parse_args(["query", "revenue_daily", "--param", "a=1", "--param", "b=2", "--json"])
    assert (args.name, args.param, args.json, args.list, args.max_rows) == ("revenue_daily", ["a=1", "b=2"], True,
                                                                             False, 100)
    assert build_parser().parse_args(["query", "--list"]).list is True


def test_cli_lists_the_queries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "revenue_daily", REVENUE)
    write(tmp_path, "flags", "-- name: flags\n-- description: Flags.\n-- param: on boolean true  on?\n"
                             "-- param: who string required  whom\nSELECT :on, :who")
    monkeypatch.setattr(querypack, "QUERIES_DIR", tmp_path)
    assert main(["query", "--list"]) == 0
    revenue_params = "start_date date = 2000-01-01, end_date date (required), merchant_id bigint = NULL"
    revenue_description = "Gross and net revenue in USD per day and merchant."
    w1, w2 = len(revenue_params), len(revenue_description)
    assert capsys.readouterr().out.splitlines() == [
        f"query         | {'parameters':<{w1}} | {'description':<{w2}}",
        f"{'-' * 13}-+-{'-' * w1}-+-{'-' * w2}",
        f"flags         | {'on boolean = true, who string (required)':<{w1}} | {'Flags.':<{w2}}",
        f"revenue_daily | {revenue_params} | {revenue_description}",
        "(2 rows)"]
    assert main(["query", "--list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[1]["params"][0] == {
        "name": "start_date", "type": "date", "default": "2000-01-01", "required": False,
        "description": "first day (inclusive)"}


@pytest.mark.parametrize(("argv", "message"), [
    (["query", "nope"], "error: unknown query 'nope'; known queries: revenue_daily\n"),
    (["query", "revenue_daily"], "error: query 'revenue_daily' needs --param end_date=<date>\n"),
    (["query", "revenue_daily", "--param", "end_date=soon"],
     "error: query 'revenue_daily': parameter 'end_date': 'soon' is not a date (YYYY-MM-DD)\n"),
    (["query"], "error: give a query name, or --list to see the queries\n"),
    (["query", "--list", "revenue_daily"], "error: --list takes no query name and no --param\n"),
])
def test_cli_bad_input_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    write(tmp_path, "revenue_daily", REVENUE)
    monkeypatch.setattr(querypack, "QUERIES_DIR", tmp_path)
    assert main(argv) == 2
    out = capsys.readouterr()
    assert (out.out, out.err) == ("", message)


def test_cli_runs_a_query(spark, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "days", "-- name: days\n-- description: d\n-- param: start date required  first\n"
                            "-- param: n int 3  how many\n"
                            "SELECT explode(sequence(:start, date_add(:start, :n - 1))) AS day")
    monkeypatch.setattr(querypack, "QUERIES_DIR", tmp_path)
    assert main(["query", "days", "--param", "start=2024-02-28", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"day": "2024-02-28"}, {"day": "2024-02-29"},
                                                   {"day": "2024-03-01"}]
    assert main(["query", "days", "--param", "start=2024-02-28", "--max-rows", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "day       ", "----------", "2024-02-28", "2024-02-29", "(2 rows)",
        "(only the first 2 rows shown; use --max-rows or --json)"]
