"""The import's pure parts: mapping validation, exact amounts, timestamps, labels, row parsing, CSV lines."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from pathlib import Path

import pytest

from lakehouse.oltp.importer import (
    CsvSource,
    ImportReport,
    MappingError,
    Reference,
    RowError,
    RowParser,
    TimestampParser,
    ValueProblem,
    format_report,
    import_card_fingerprint,
    load_mapping,
    parse_decimal,
    parse_id,
    parse_label,
    parse_mapping,
    to_minor,
)
from lakehouse.oltp.service import platform_fee

UTC = dt.UTC
BASE = {"columns": {"transaction_id": "TX", "timestamp": "TS", "customer": "C", "terminal": "T", "amount": "A"},
        "currency": "EUR", "defaults": {"country": "FR"}}
REF = Reference({"EUR": 2, "JPY": 0, "BHD": 3, "USD": 2}, frozenset({"FR", "US"}), frozenset({"5999", "5411"}))


def mapping(**changes: object) -> dict:
    doc = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    for key, value in changes.items():
        section, _, sub = key.partition("__")
        if sub:
            doc.setdefault(section, {})[sub] = value
        else:
            doc[section] = value
    return doc


# ------------------------------------------------------------------------------------------ mapping
def test_minimal_mapping_gets_the_documented_defaults() -> None:
    m = parse_mapping(mapping())
    assert m.columns == {"transaction_id": "TX", "timestamp": "TS", "customer": "C", "terminal": "T", "amount": "A"}
    assert (m.currency, m.country, m.mcc, m.device_type, m.terminal_kind) == ("EUR", "FR", "5999", "unknown", "pos")
    assert (m.timestamp_format, m.timezone, m.amount_unit, m.status_default) == ("iso", "UTC", "major", "captured")
    assert m.merchant is None and not m.merchant_explicit and m.ref_prefix == ""


@pytest.mark.parametrize(("doc", "message"), [
    (mapping(columns__amout="X"), "columns.amout: unknown key; did you mean 'amount'?"),
    (mapping(colums={"a": 1}), "colums: unknown key; did you mean 'columns'?"),
    (mapping(defaults__contry="FR"), "defaults.contry: unknown key; did you mean 'country'?"),
    (mapping(zzz=1), "zzz: unknown key (known: version, format, ref_prefix, csv, columns, timestamp, amount, "
                     "currency, fraud, status, defaults)"),
    ({**mapping(), "columns": {"timestamp": "TS", "customer": "C", "terminal": "T"}},
     "columns.amount: required (the source column holding the amount)"),
    ({**mapping(), "columns": {"timestamp": "TS", "customer": "C", "amount": "A"}},
     "columns: map columns.merchant or columns.terminal (or both)"),
    ({k: v for k, v in mapping().items() if k != "currency"},
     "currency: required: a constant currency code (e.g. EUR) or columns.currency"),
    (mapping(columns__currency="CUR"),
     "currency: set either columns.currency (a column) or currency (a constant), not both"),
    (mapping(currency="euro"), "currency: expected an ISO 4217 code such as EUR, got 'euro'"),
    (mapping(defaults={}), "defaults.country: required (ISO 3166 alpha-2 code of created customers, merchants "
                           "and placeholder cards, e.g. FR)"),
    (mapping(defaults__mcc=742), "defaults.mcc: expected 4 digits as a quoted string (e.g. '5999'), got 742"),
    (mapping(defaults__device_type="phone"),
     "defaults.device_type: expected one of mobile, desktop, tablet, pos, unknown, got 'phone'"),
    (mapping(amount__unit="cents"), "amount.unit: expected major (e.g. 12.34) or minor (e.g. 1234), got 'cents'"),
    (mapping(timestamp__timezone="Mars/Olympus"), "timestamp.timezone: unknown time zone 'Mars/Olympus'"),
    (mapping(timestamp__format="yyyy-mm-dd"), "timestamp.format: expected iso, epoch_s, epoch_ms, epoch_us or a "
                                              "strptime pattern such as '%Y-%m-%d %H:%M:%S', got 'yyyy-mm-dd'"),
    (mapping(fraud__true_values=[1]), "fraud: set columns.fraud to the label column to use these options"),
    (mapping(columns__fraud="F", fraud__true_values=["1"], fraud__false_values=["0", "1"]),
     "fraud: ['1'] listed as both true and false"),
    (mapping(status__default="settled"),
     "status.default: expected one of pending, authorized, captured, failed, canceled, got 'settled'"),
    (mapping(columns__merchant="M", defaults__merchant="X"),
     "defaults.merchant: applies only when columns.merchant is not mapped"),
    (mapping(columns={"a": ["list"]}), "columns.a: unknown key (known: transaction_id, timestamp, customer, "
                                       "merchant, terminal, amount, currency, fraud, status, device_type)"),
    (mapping(columns__amount=["A"]), "columns.amount: expected a string, got ['A']"),
    (mapping(version=2), "version: only version 1 is supported, got 2"),
    (["not", "a", "mapping"], "mapping: expected a mapping of keys, got list"),
])
def test_bad_mappings_name_the_key(doc: object, message: str) -> None:
    with pytest.raises(MappingError) as e:
        parse_mapping(doc)
    assert str(e.value) == message


def test_load_mapping_prefixes_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("columns:\n  timestamp: TS\n  customer: C\n  terminal: T\n  amount: A\n  amout: B\n"
                    "currency: EUR\ndefaults: {country: FR}\n")
    with pytest.raises(MappingError, match=r"m\.yaml: columns\.amout: unknown key; did you mean 'amount'\?$"):
        load_mapping(path)
    path.write_text("")
    with pytest.raises(MappingError, match="empty mapping"):
        load_mapping(path)


# ------------------------------------------------------------------------------------------ amounts
@pytest.mark.parametrize(("raw", "unit", "currency", "minor"), [
    ("12.34", "major", "EUR", 1234), ("0.01", "major", "EUR", 1), ("12", "major", "EUR", 1200),
    ("12.3", "major", "EUR", 1230), ("012.30", "major", "EUR", 1230), ("1e3", "major", "EUR", 100000),
    ("100", "major", "JPY", 100), ("100.00", "major", "JPY", 100), ("1.234", "major", "BHD", 1234),
    ("1234", "minor", "EUR", 1234), ("1234.0", "minor", "EUR", 1234), (0.1 + 0.2 - 0.3 + 12.34, "major", "EUR", 1234),
    (12.34, "major", "EUR", 1234), (Decimal("99999999999.99"), "major", "USD", 9999999999999), (7, "major", "JPY", 7),
])
def test_amounts_convert_exactly(raw: object, unit: str, currency: str, minor: int) -> None:
    assert to_minor(parse_decimal(raw), unit, currency, REF.currencies[currency]) == minor


@pytest.mark.parametrize(("raw", "unit", "currency", "reason"), [
    ("-5.00", "major", "EUR", "amount -5.00 is not positive"),
    ("0", "major", "EUR", "amount 0 is not positive"),
    ("12.345", "major", "EUR", "amount 12.345 has more decimals than EUR allows (2)"),
    ("12.5", "major", "JPY", "amount 12.5 has more decimals than JPY allows (0)"),
    ("1.2345", "major", "BHD", "amount 1.2345 has more decimals than BHD allows (3)"),
    ("12.5", "minor", "EUR", "amount 12.5 is not a whole number of minor units"),
    ("1e30", "minor", "EUR", "amount 1E+30 is too large"),
])
def test_bad_amounts_say_why(raw: str, unit: str, currency: str, reason: str) -> None:
    with pytest.raises(ValueProblem) as e:
        to_minor(parse_decimal(raw), unit, currency, REF.currencies[currency])
    assert str(e.value) == reason


@pytest.mark.parametrize("raw", ["12,34", "1 234", "NaN", "inf", "12.3.4", "", "abc", "١٢"])
def test_non_numbers_are_rejected(raw: str) -> None:
    with pytest.raises(ValueProblem, match="is not a"):
        parse_decimal(raw)


def test_comma_decimal_separator() -> None:
    assert parse_decimal("12,34", ",") == Decimal("12.34")
    with pytest.raises(ValueProblem):
        parse_decimal("1.234,5", ",")


# ------------------------------------------------------------------------------------------ timestamps
def test_timestamps_in_formats_and_zones() -> None:
    fmt = TimestampParser("%Y-%m-%d %H:%M:%S")
    assert fmt("2024-03-01 12:00:05") == dt.datetime(2024, 3, 1, 12, 0, 5, tzinfo=UTC)
    assert TimestampParser("%d/%m/%Y %H:%M")("01/03/2024 12:00") == dt.datetime(2024, 3, 1, 12, tzinfo=UTC)
    iso = TimestampParser("iso")
    assert iso("2024-03-01T12:00:00+02:00") == dt.datetime(2024, 3, 1, 10, tzinfo=UTC)
    assert iso("2024-03-01T12:00:00Z") == dt.datetime(2024, 3, 1, 12, tzinfo=UTC)
    paris = TimestampParser("iso", "Europe/Paris")
    assert paris("2024-07-01 12:00:00") == dt.datetime(2024, 7, 1, 10, tzinfo=UTC)       # CEST
    assert paris(dt.datetime(2024, 1, 1, 12)) == dt.datetime(2024, 1, 1, 11, tzinfo=UTC)  # CET
    assert paris(dt.datetime(2024, 1, 1, 12, tzinfo=UTC)) == dt.datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert TimestampParser("epoch_s")("86400") == dt.datetime(1970, 1, 2, tzinfo=UTC)
    assert TimestampParser("epoch_ms")(1_700_000_000_123) == dt.datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
    assert TimestampParser("iso")(dt.date(2024, 5, 6)) == dt.datetime(2024, 5, 6, tzinfo=UTC)


@pytest.mark.parametrize(("parser", "raw", "reason"), [
    (TimestampParser("%Y-%m-%d %H:%M:%S"), "2024-13-01 00:00:00",
     "timestamp '2024-13-01 00:00:00' does not match format '%Y-%m-%d %H:%M:%S'"),
    (TimestampParser("%Y-%m-%d %H:%M:%S"), "2024-02-30 00:00:00",
     "timestamp '2024-02-30 00:00:00' does not match format '%Y-%m-%d %H:%M:%S'"),
    (TimestampParser("iso"), "yesterday", "timestamp 'yesterday' does not match ISO 8601"),
    (TimestampParser("iso"), "", "timestamp is missing"),
    (TimestampParser("epoch_s"), "soon", "timestamp 'soon' is not a number of s since 1970-01-01"),
    (TimestampParser("iso", "Europe/Paris"), "2024-03-31 02:30:00",
     "timestamp 2024-03-31 02:30:00 does not exist in Europe/Paris (skipped by a daylight-saving change)"),
])
def test_bad_timestamps_say_why(parser: TimestampParser, raw: str, reason: str) -> None:
    with pytest.raises(ValueProblem) as e:
        parser(raw)
    assert str(e.value) == reason


# ------------------------------------------------------------------------------------------ ids, labels
def test_ids_and_labels() -> None:
    assert parse_id(" C1 ", "customer id") == "C1"
    assert parse_id(42, "customer id") == "42" and parse_id(42.0, "customer id") == "42"
    for missing in (None, "", "  ", float("nan")):
        with pytest.raises(ValueProblem, match=r"^customer id is missing$"):
            parse_id(missing, "customer id")
    yes, no = ("1", "true", "yes"), ("0", "false", "no")
    assert [parse_label(v, yes, no) for v in ("1", " YES ", True, 1, 1.0, "0", False, 0, "No")] == \
        [True] * 5 + [False] * 4
    with pytest.raises(ValueProblem) as e:
        parse_label("maybe", yes, no)
    assert str(e.value) == "fraud label 'maybe' is neither true (1, true, yes) nor false (0, false, no)"
    with pytest.raises(ValueProblem, match="fraud label an empty value is neither"):
        parse_label("", yes, no)


def test_placeholder_card_fingerprint_is_32_letter_hex_and_deterministic() -> None:
    fp = import_card_fingerprint("sim:42")
    assert fp == import_card_fingerprint("sim:42") != import_card_fingerprint("sim:43")
    assert len(fp) == 32 and all(c in "abcdefghijklmnop" for c in fp)   # hex spelled a-p: never a digit run


# ------------------------------------------------------------------------------------------ rows
def parser_for(doc: dict) -> RowParser:
    return RowParser(parse_mapping(doc), REF, platform_fee)


def test_row_becomes_a_staging_tuple() -> None:
    p = parser_for(mapping(ref_prefix="s:", columns__fraud="F", timestamp__format="%Y-%m-%d %H:%M:%S"))
    staged, errors = p.parse_dict(7, {"transaction_id": "9", "timestamp": "2024-03-01 12:00:05", "customer": "C1",
                                      "terminal": "T1", "amount": "12.34", "fraud": "1"})
    assert errors == []
    assert staged == (7, "s:9", dt.datetime(2024, 3, 1, 12, 0, 5, tzinfo=UTC), "s:C1", "s:terminal:T1", "s:T1",
                      1234, "EUR", platform_fee(1234), "captured", True, "unknown")


def test_merchant_policies() -> None:
    row = {"transaction_id": "1", "timestamp": "2024-03-01T00:00:00", "customer": "C", "terminal": "T",
           "merchant": "M", "amount": "1"}
    per_terminal = parser_for(mapping()).parse_dict(2, row)[0]
    default = parser_for(mapping(defaults__merchant="ACME")).parse_dict(2, row)[0]
    explicit = parser_for(mapping(columns__merchant="M")).parse_dict(2, row)[0]
    no_terminal = parser_for(mapping(columns__merchant="M")).parse_dict(2, {**row, "terminal": ""})[0]
    assert per_terminal is not None and default is not None and explicit is not None and no_terminal is not None
    assert [r[4:6] for r in (per_terminal, default, explicit, no_terminal)] == [
        ("terminal:T", "T"), ("ACME", "T"), ("M", "T"), ("M", None)]


def test_a_bad_row_reports_every_problem() -> None:
    p = parser_for(mapping(columns__fraud="F", currency=None, columns__currency="CUR"))
    staged, errors = p.parse_dict(5, {"transaction_id": "", "timestamp": "nope", "customer": " ", "terminal": "T",
                                      "amount": "-1", "currency": "XYZ", "fraud": "maybe"})
    assert staged is None
    assert errors == [
        RowError(5, "transaction_id", "", "transaction id is missing"),
        RowError(5, "timestamp", "nope", "timestamp 'nope' does not match ISO 8601"),
        RowError(5, "customer", " ", "customer id is missing"),
        RowError(5, "currency", "XYZ", "currency 'XYZ' not in ref.currencies"),
        RowError(5, "amount", "-1", "amount -1 is not positive"),
        RowError(5, "fraud", "maybe", "fraud label 'maybe' is neither true (1, true, t, yes, y) "
                                      "nor false (0, false, f, no, n)"),
    ]


def test_without_transaction_ids_the_key_is_the_rows_content() -> None:
    doc = mapping()
    del doc["columns"]["transaction_id"]
    p = parser_for(doc)
    row = {"timestamp": "2024-03-01T00:00:00", "customer": "C", "terminal": "T", "amount": "1.00"}
    a, b = p.parse_dict(2, row)[0], p.parse_dict(3, dict(row))[0]
    c = p.parse_dict(4, {**row, "amount": "1.01"})[0]
    assert a is not None and b is not None and c is not None
    assert a[1] == b[1] != c[1] and a[1].startswith("row:") and len(a[1]) == 4 + 32


# The fused fast path must agree with the detailed path on every value, valid or not.
VALUES = {
    "transaction_id": ["7", " 8 ", "", None, 9, True],
    "timestamp": ["2024-03-01 12:00:05", "2024-03-01T12:00:05", "2024-13-01 00:00:00", " 2024-03-01 12:00:05",
                  "2024-03-31 02:30:00", dt.datetime(2024, 3, 1, 1), None, "2024-03-01 12:00:05+01:00"],
    "customer": ["C1", " C1", "", 5, 5.0, None],
    "terminal": ["T1", "", None, 3],
    "merchant": ["M1", "", 4],
    "amount": ["12.34", "12.345", "100.00", "-1", "0", "0.00", "12.", " 12.3", "1e2", 12.34, 7, -7, Decimal("1.5"),
               "99999999999999999999", "١٢", True],
    "currency": ["EUR", "eur", "JPY", "BHD", "XYZ", "", None],
    "fraud": ["1", "0", "TRUE", " no ", "maybe", True, 0, 1.0, None],
}


@pytest.mark.parametrize("doc", [
    mapping(columns__fraud="F", timestamp__format="%Y-%m-%d %H:%M:%S"),
    mapping(columns__fraud="F", currency=None, columns__currency="CUR", timestamp__timezone="Europe/Paris",
            timestamp__format="%Y-%m-%d %H:%M:%S"),
    mapping(columns__merchant="M", amount__unit="minor"),
])
def test_fast_path_agrees_with_the_detailed_path(doc: dict) -> None:
    p = parser_for(doc)
    fields = p.fields
    combos = itertools.product(*(VALUES[f] for f in fields))
    checked = 0
    for values in itertools.islice(combos, 0, None, 97):   # a spread sample of the cartesian product
        fast = p.parse(2, values)
        slow = p.parse_dict(2, dict(zip(fields, values, strict=True)))
        assert fast == slow, values
        checked += 1
    for f in fields:                                       # and every value of each field in a good row
        for v in VALUES[f]:
            good = {g: VALUES[g][0] for g in fields}
            good[f] = v
            values = tuple(good[g] for g in fields)
            assert p.parse(2, values) == p.parse_dict(2, good), (f, v)
    assert checked > 100


# ------------------------------------------------------------------------------------------ CSV lines
def test_csv_lines_count_the_header_and_multiline_fields(tmp_path: Path) -> None:
    path = tmp_path / "tx.csv"
    path.write_text('TX,TS,C,T,A,NOTE\n'
                    '1,2024-03-01T00:00:00,C1,T1,1.00,"two\nlines"\n'
                    '\n'
                    '2,2024-03-01T00:00:00,C1,T1,1.00,x\n'
                    '3,2024-03-01T00:00:00,C1,T1\n'
                    '4,2024-03-01T00:00:00,C1,T1,1.00,"a\n\nb"\n'
                    '5,2024-03-01T00:00:00,C1,T1,1.00,y\n')
    src = CsvSource(path, parse_mapping(mapping()))
    assert src.fields == ("transaction_id", "timestamp", "customer", "terminal", "amount")
    rows = list(src.rows())
    assert [(r.line, r.values[0] if r.values else r.problem) for r in rows] == [
        (2, "1"), (5, "2"), (6, "the row has 4 fields, the header 6"), (7, "4"), (10, "5")]


def test_a_mapped_column_missing_from_the_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "tx.csv"
    path.write_text("TX,TS,C,A\n")
    with pytest.raises(MappingError) as e:
        CsvSource(path, parse_mapping(mapping()))
    assert str(e.value) == "columns.terminal: 'T' not in the file's columns ('TX', 'TS', 'C', 'A')"


def test_report_text_lists_bad_rows() -> None:
    report = ImportReport(file="tx.csv", format="csv", rows_read=9, errors=[
        RowError(3, "currency", "XYZ", "currency 'XYZ' not in ref.currencies"),
        RowError(7, "customer", "", "customer id is missing"),
        RowError(7, "amount", "-1", "amount -1 is not positive")])
    assert format_report(report, max_errors=2).splitlines() == [
        "error: 2 bad row(s) in tx.csv (9 read); nothing was loaded",
        "  line 3: currency = 'XYZ': currency 'XYZ' not in ref.currencies",
        "  line 7: customer = '': customer id is missing",
        "  … and 1 more (--max-errors N, or --json for all)"]
    assert report.as_dict()["bad_rows"] == 2
