"""`lakehouse oltp import` against the real PostgreSQL: exact loads, every bad row reported with its
line and nothing written, idempotent re-imports, mapping errors naming the key.

Every test works in a fresh database of its own (created from the `oltp` server), so counts are absolute.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from lakehouse.cli import main
from lakehouse.common.config import Settings
from lakehouse.oltp import importer
from lakehouse.oltp.db import admin_connect, connect
from lakehouse.oltp.importer import (
    ImportFailed,
    ImportReport,
    MappingError,
    RowError,
    import_card_fingerprint,
    import_file,
    parse_mapping,
)
from lakehouse.oltp.service import platform_fee
from tests.integration import helpers

UTC = dt.UTC

SIM_CSV = """TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_FRAUD
1,2019-03-01 10:00:00,C1,T1,10.00,0
2,2019-03-01 11:30:00,C2,T1,0.99,0
3,2019-03-15 09:00:00,C1,T2,120.50,1
4,2019-04-02 23:59:59,C3,T2,5,0
5,2019-04-03 00:00:00,C2,T1,1234.56,1
6,2019-04-03 00:00:01,C1,T1,0.01,0
"""
SIM_MAPPING = {
    "ref_prefix": "csv:",
    "columns": {"transaction_id": "TRANSACTION_ID", "timestamp": "TX_DATETIME", "customer": "CUSTOMER_ID",
                "terminal": "TERMINAL_ID", "amount": "TX_AMOUNT", "fraud": "TX_FRAUD"},
    "timestamp": {"format": "%Y-%m-%d %H:%M:%S"},
    "currency": "EUR",
    "defaults": {"country": "FR", "mcc": "5411", "device_type": "pos"},
}
SIM_AMOUNTS = [1000, 99, 12050, 500, 123456, 1]


def fresh_database(settings: Settings, name: str, seed_reference: bool = True) -> Settings:
    return helpers.fresh_database(settings, name, seed_reference=seed_reference)  # type: ignore[no-any-return]


def snapshot(db: Settings) -> dict[str, Any]:
    """Count and checksum of every table (ref, payments, labels, vault) and the list of partitions."""
    with admin_connect(db) as conn:
        tables = [f"{s}.{t}" for s, t in conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname IN ('ref', 'payments', 'labels', 'vault') AND c.relkind IN ('r', 'p') "
            "AND NOT c.relispartition ORDER BY 1, 2")]
        out: dict[str, Any] = {t: conn.execute(  # type: ignore[call-overload]
            f"SELECT count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {t} x").fetchone()
            for t in tables}
        out["partitions"] = [r[0] for r in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid ORDER BY 1")]
    assert len(tables) >= 20
    return out


def one(conn: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0] if len(row) == 1 else row


def run_import(db: Settings, path: Path, mapping: dict[str, Any], **kw: Any) -> ImportReport:
    with connect(db) as conn:
        return import_file(conn, path, parse_mapping(mapping), **kw)


def cli(db: Settings, *args: str) -> int:
    return main(["--set", f"services.postgres.database={db.services.postgres.database}", "oltp", "import", *args])


@pytest.fixture(scope="module")
def sim_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("import") / "sim.csv"
    path.write_text(SIM_CSV)
    return path


def test_csv_import_creates_exactly_the_parties_charges_ledger_and_labels(oltp: Settings, sim_csv: Path) -> None:
    db = fresh_database(oltp, "import_csv")
    report = run_import(db, sim_csv, SIM_MAPPING)
    assert report.errors == [] and report.loaded
    assert (report.rows_read, report.charges_created, report.rows_skipped) == (6, 6, 0)
    assert (report.customers_created, report.merchants_created, report.terminals_created,
            report.payment_methods_created) == (3, 2, 2, 3)
    assert (report.balance_transactions_created, report.labels_created, report.fraud_labels) == (6, 6, 2)
    assert report.amount_minor_by_currency == {"EUR": sum(SIM_AMOUNTS)}

    with connect(db) as conn:
        assert conn.execute("SELECT external_ref, country_code, email LIKE '%%@import.invalid', created_at "
                            "FROM payments.customers ORDER BY external_ref").fetchall() == [
            ("csv:C1", "FR", True, dt.datetime(2019, 3, 1, 10, tzinfo=UTC)),
            ("csv:C2", "FR", True, dt.datetime(2019, 3, 1, 11, 30, tzinfo=UTC)),
            ("csv:C3", "FR", True, dt.datetime(2019, 4, 2, 23, 59, 59, tzinfo=UTC))]
        # terminals only: one merchant per terminal, named after it
        assert conn.execute("SELECT t.external_ref, t.kind, m.external_ref, m.country_code, m.mcc, "
                            "m.default_currency FROM payments.terminals t JOIN payments.merchants m USING (merchant_id)"
                            " ORDER BY 1").fetchall() == [
            ("csv:T1", "pos", "csv:terminal:T1", "FR", "5411", "EUR"),
            ("csv:T2", "pos", "csv:terminal:T2", "FR", "5411", "EUR")]
        assert one(conn, "SELECT count(*) FROM payments.merchants") == 2
        # one placeholder card per customer: no card data, a fingerprint from the customer's ref
        assert conn.execute("SELECT cu.external_ref, pm.kind, cd.brand, cd.bin, cd.last4, cd.fingerprint, "
                            "cd.issuing_country, cd.token ~ '^tok_[A-Za-z0-9]{24}$' FROM payments.cards cd "
                            "JOIN payments.payment_methods pm USING (payment_method_id) "
                            "JOIN payments.customers cu USING (customer_id) ORDER BY 1").fetchall() == [
            (f"csv:{c}", "card", "other", "000000", "0000", import_card_fingerprint(f"csv:{c}"), "FR", True)
            for c in ("C1", "C2", "C3")]
        charges = conn.execute(
            "SELECT ic.source_ref, ic.source_line, c.amount_minor, c.captured_amount_minor, c.status, c.currency_code,"
            " c.created_at = c.captured_at AND c.created_at = c.authorized_at, c.device_type, cu.external_ref,"
            " t.external_ref, c.payment_method_id = (SELECT pm.payment_method_id FROM payments.payment_methods pm"
            "   WHERE pm.customer_id = c.customer_id) "
            "FROM payments.charges c JOIN payments.imported_charges ic "
            "  ON ic.charge_id = c.charge_id AND ic.charge_created_at = c.created_at "
            "JOIN payments.customers cu USING (customer_id) JOIN payments.terminals t USING (terminal_id) "
            "ORDER BY c.charge_id").fetchall()
        assert charges == [
            ("csv:1", 2, 1000, 1000, "captured", "EUR", True, "pos", "csv:C1", "csv:T1", True),
            ("csv:2", 3, 99, 99, "captured", "EUR", True, "pos", "csv:C2", "csv:T1", True),
            ("csv:3", 4, 12050, 12050, "captured", "EUR", True, "pos", "csv:C1", "csv:T2", True),
            ("csv:4", 5, 500, 500, "captured", "EUR", True, "pos", "csv:C3", "csv:T2", True),
            ("csv:5", 6, 123456, 123456, "captured", "EUR", True, "pos", "csv:C2", "csv:T1", True),
            ("csv:6", 7, 1, 1, "captured", "EUR", True, "pos", "csv:C1", "csv:T1", True)]
        assert one(conn, "SELECT sum(amount_minor) FROM payments.charges") == sum(SIM_AMOUNTS)
        # the ledger: one entry per captured charge, the platform's fee rule, net = amount - fee
        assert conn.execute("SELECT b.amount_minor, b.fee_minor, b.net_minor, b.created_at = c.created_at, "
                            "b.merchant_id = c.merchant_id FROM payments.balance_transactions b "
                            "JOIN payments.charges c ON c.charge_id = b.charge_id "
                            "AND c.created_at = b.charge_created_at ORDER BY b.charge_id").fetchall() == [
            (a, platform_fee(a), a - platform_fee(a), True, True) for a in SIM_AMOUNTS]
        assert conn.execute("SELECT ic.source_ref, l.is_fraud, l.scenario, l.source FROM labels.fraud_ground_truth l "
                            "JOIN payments.imported_charges ic USING (charge_id) ORDER BY 1").fetchall() == [
            ("csv:1", False, None, "import"), ("csv:2", False, None, "import"), ("csv:3", True, "imported", "import"),
            ("csv:4", False, None, "import"), ("csv:5", True, "imported", "import"), ("csv:6", False, None, "import")]
        assert one(conn, "SELECT count(*) FROM payments.charges_2019_03") == 3
        assert one(conn, "SELECT count(*) FROM payments.charges_2019_04") == 3
        assert one(conn, "SELECT count(*) FROM payments.balance_transactions_2019_04") == 3
        assert one(conn, "SELECT count(*) FROM payments.charges_default") == 0
        assert one(conn, "SELECT (source_file, source_format, rows_read, charges_created, rows_skipped, "
                         "mapping->>'ref_prefix', length(source_sha256)) FROM payments.import_batches") == \
            (str(sim_csv), "csv", "6", "6", "0", "csv:", "64")
    with admin_connect(db) as admin:
        assert one(admin, "SELECT count(*) FROM vault.card_pans") == 0   # nothing in the vault, no PAN anywhere


def test_parquet_with_merchants_currencies_time_zone_and_statuses(oltp: Settings, tmp_path: Path) -> None:
    db = fresh_database(oltp, "import_parquet")
    paris = [dt.datetime(2019, 6, 1, 12), dt.datetime(2019, 6, 1, 12, 5), dt.datetime(2019, 12, 24, 18),
             dt.datetime(2019, 12, 31, 23, 30), dt.datetime(2020, 1, 1, 0, 30)]
    table = pa.table({
        "id": pa.array(["P1", "P2", "P3", "P4", "P5"]),
        "ts": pa.array(paris, pa.timestamp("ns")),
        "customer": pa.array([100, 101, 100, 102, 101], pa.int64()),
        "merchant": pa.array(["M1", "M1", "M2", "M2", "M1"]),
        "terminal": pa.array(["M1-POS", "M1-POS", None, "M2-WEB", "M1-POS"]),
        "amount": pa.array([12.34, 500.0, 1.234, 99.99, 5.0], pa.float64()),
        "cur": pa.array(["EUR", "JPY", "BHD", "EUR", "USD"]),
        "fraud": pa.array([False, False, True, False, True]),
        "state": pa.array(["OK", "OK", "OK", "DECLINED", "OK"]),
    })
    path = tmp_path / "tx.parquet"
    pq.write_table(table, path)
    mapping = {
        "ref_prefix": "pq:",
        "columns": {"transaction_id": "id", "timestamp": "ts", "customer": "customer", "merchant": "merchant",
                    "terminal": "terminal", "amount": "amount", "currency": "cur", "fraud": "fraud",
                    "status": "state"},
        "timestamp": {"timezone": "Europe/Paris"},
        "status": {"values": {"OK": "captured", "DECLINED": "failed"}, "failure_code": "do_not_honor"},
        "defaults": {"country": "DE", "terminal_kind": "ecommerce", "device_type": "desktop"},
    }
    report = run_import(db, path, mapping)
    assert report.errors == []
    assert (report.rows_read, report.charges_created, report.customers_created, report.merchants_created,
            report.terminals_created, report.balance_transactions_created, report.labels_created,
            report.fraud_labels) == (5, 5, 3, 2, 2, 4, 5, 2)
    assert report.amount_minor_by_currency == {"BHD": 1234, "EUR": 1234 + 9999, "JPY": 500, "USD": 500}
    with connect(db) as conn:
        rows = conn.execute(
            "SELECT ic.source_ref, ic.source_line, c.created_at, cu.external_ref, m.external_ref, t.external_ref, "
            "c.amount_minor, c.currency_code, c.status, c.captured_amount_minor, c.failure_code, c.failed_at, "
            "c.device_type FROM payments.charges c JOIN payments.imported_charges ic "
            "ON ic.charge_id = c.charge_id AND ic.charge_created_at = c.created_at "
            "JOIN payments.customers cu USING (customer_id) JOIN payments.merchants m USING (merchant_id) "
            "LEFT JOIN payments.terminals t USING (terminal_id) ORDER BY ic.source_line").fetchall()
        t = [dt.datetime(2019, 6, 1, 10), dt.datetime(2019, 6, 1, 10, 5), dt.datetime(2019, 12, 24, 17),
             dt.datetime(2019, 12, 31, 22, 30), dt.datetime(2019, 12, 31, 23, 30)]
        utc = [x.replace(tzinfo=UTC) for x in t]
        assert rows == [
            ("pq:P1", 1, utc[0], "pq:100", "pq:M1", "pq:M1-POS", 1234, "EUR", "captured", 1234, None, None, "desktop"),
            ("pq:P2", 2, utc[1], "pq:101", "pq:M1", "pq:M1-POS", 500, "JPY", "captured", 500, None, None, "desktop"),
            ("pq:P3", 3, utc[2], "pq:100", "pq:M2", None, 1234, "BHD", "captured", 1234, None, None, "desktop"),
            ("pq:P4", 4, utc[3], "pq:102", "pq:M2", "pq:M2-WEB", 9999, "EUR", "failed", 0, "do_not_honor", utc[3],
             "desktop"),
            ("pq:P5", 5, utc[4], "pq:101", "pq:M1", "pq:M1-POS", 500, "USD", "captured", 500, None, None, "desktop")]
        assert conn.execute("SELECT currency_code, sum(amount_minor) FROM payments.balance_transactions "
                            "GROUP BY 1 ORDER BY 1").fetchall() == [("BHD", 1234), ("EUR", 1234), ("JPY", 500),
                                                                    ("USD", 500)]
        assert conn.execute("SELECT m.external_ref, m.default_currency, m.country_code, t.external_ref, t.kind "
                            "FROM payments.terminals t JOIN payments.merchants m USING (merchant_id) "
                            "ORDER BY 1").fetchall() == [("pq:M1", "EUR", "DE", "pq:M1-POS", "ecommerce"),
                                                         ("pq:M2", "BHD", "DE", "pq:M2-WEB", "ecommerce")]
        assert one(conn, "SELECT count(*) FROM payments.charges_2019_12") == 3   # 2020-01-01 00:30 Paris is 2019 UTC
        assert one(conn, "SELECT count(*) FILTER (WHERE is_fraud) FROM labels.fraud_ground_truth") == 2


BAD_CSV = """TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,CURRENCY,NOTE
1,2019-05-01 10:00:00,C1,T1,10.00,EUR,"a note
over two lines"
2,2019-05-01 10:00:00,C1,T1,10.00,XYZ,
3,2019-05-32 10:00:00,C1,T1,10.00,EUR,
4,2019-05-01 10:00:00,C1,T1,-5.00,EUR,
5,2019-05-01 10:00:00,C1,T1,12.345,EUR,
6,2019-05-01 10:00:00,,T1,1.00,EUR,
7,2019-05-01 10:00:00,C2,T2,3.00,JPY,
1,2019-05-01 10:00:00,C2,T2,3,JPY,
"""
BAD_MAPPING = {**SIM_MAPPING, "ref_prefix": "bad:", "currency": None,
               "columns": {**{k: v for k, v in SIM_MAPPING["columns"].items() if k != "fraud"},
                           "currency": "CURRENCY"}}
BAD_EXPECTED = [
    RowError(4, "currency", "XYZ", "currency 'XYZ' not in ref.currencies"),
    RowError(5, "timestamp", "2019-05-32 10:00:00",
             "timestamp '2019-05-32 10:00:00' does not match format '%Y-%m-%d %H:%M:%S'"),
    RowError(6, "amount", "-5.00", "amount -5.00 is not positive"),
    RowError(7, "amount", "12.345", "amount 12.345 has more decimals than EUR allows (2)"),
    RowError(8, "customer", "", "customer id is missing"),
    RowError(10, "transaction_id", "1", "transaction id '1' repeats line 2"),
]


def test_every_bad_row_is_reported_with_its_line_and_nothing_is_written(
        oltp: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = fresh_database(oltp, "import_bad")
    path = tmp_path / "bad.csv"
    path.write_text(BAD_CSV)
    before = snapshot(db)
    report = run_import(db, path, BAD_MAPPING)
    assert report.errors == BAD_EXPECTED
    assert (report.rows_read, report.loaded, report.charges_created) == (8, False, 0)
    assert snapshot(db) == before

    mapping_path = tmp_path / "bad.yaml"
    mapping_path.write_text(json.dumps(BAD_MAPPING))   # JSON is YAML
    capsys.readouterr()
    assert cli(db, str(path), "--mapping", str(mapping_path), "--json") == 1
    doc = json.loads(capsys.readouterr().out)
    assert (doc["ok"], doc["loaded"], doc["bad_rows"], doc["rows_read"]) == (False, False, 6, 8)
    assert doc["errors"] == [dataclasses.asdict(e) for e in BAD_EXPECTED]
    assert cli(db, str(path), "--mapping", str(mapping_path)) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"error: 6 bad row(s) in {path} (8 read); nothing was loaded",
        "  line 4: currency = 'XYZ': currency 'XYZ' not in ref.currencies",
        "  line 5: timestamp = '2019-05-32 10:00:00': timestamp '2019-05-32 10:00:00' does not match format "
        "'%Y-%m-%d %H:%M:%S'",
        "  line 6: amount = '-5.00': amount -5.00 is not positive",
        "  line 7: amount = '12.345': amount 12.345 has more decimals than EUR allows (2)",
        "  line 8: customer = '': customer id is missing",
        "  line 10: transaction_id = '1': transaction id '1' repeats line 2"]
    assert snapshot(db) == before
    assert "charges_2019_05" not in before["partitions"]


def test_reimport_skips_what_was_imported_and_reuses_parties(oltp: Settings, sim_csv: Path, tmp_path: Path) -> None:
    db = fresh_database(oltp, "import_again")
    first = run_import(db, sim_csv, SIM_MAPPING)
    assert first.charges_created == 6
    state = snapshot(db)

    again = run_import(db, sim_csv, SIM_MAPPING)
    assert again.errors == []
    assert (again.charges_created, again.rows_skipped, again.customers_created, again.merchants_created,
            again.terminals_created, again.payment_methods_created, again.balance_transactions_created,
            again.labels_created) == (0, 6, 0, 0, 0, 0, 0, 0)
    after = snapshot(db)
    assert after["payments.import_batches"][0] == state["payments.import_batches"][0] + 1   # the attempt is recorded
    assert {k: v for k, v in after.items() if k != "payments.import_batches"} == \
        {k: v for k, v in state.items() if k != "payments.import_batches"}

    # overlapping: two rows known, one new row of a new customer at a known terminal
    overlap = tmp_path / "overlap.csv"
    lines = SIM_CSV.splitlines()
    overlap.write_text("\n".join([lines[0], lines[5], lines[6], "7,2019-04-05 08:00:00,C4,T2,42.00,1"]) + "\n")
    more = run_import(db, overlap, SIM_MAPPING)
    assert (more.charges_created, more.rows_skipped, more.customers_created, more.merchants_created,
            more.terminals_created, more.payment_methods_created, more.labels_created,
            more.amount_minor_by_currency) == (1, 2, 1, 0, 0, 1, 1, {"EUR": 4200})
    with connect(db) as conn:
        assert one(conn, "SELECT count(*) FROM payments.charges") == 7
        assert one(conn, "SELECT count(*) FROM payments.customers") == 4
        assert one(conn, "SELECT count(*) FROM payments.terminals") == 2
        assert one(conn, "SELECT sum(amount_minor) FROM payments.charges") == sum(SIM_AMOUNTS) + 4200
        assert one(conn, "SELECT count(*) FROM payments.imported_charges") == 7
        assert one(conn, "SELECT (t.external_ref, m.external_ref) FROM payments.charges c JOIN payments.terminals t "
                         "USING (terminal_id) JOIN payments.merchants m ON m.merchant_id = c.merchant_id "
                         "WHERE c.amount_minor = 4200") == ("csv:T2", "csv:terminal:T2")

    # a known transaction id with different data is an error, never an overwrite
    changed = tmp_path / "changed.csv"
    changed.write_text(lines[0] + "\n" + lines[1].replace(",10.00,", ",10.01,") + "\n")
    state = snapshot(db)
    conflict = run_import(db, changed, SIM_MAPPING)
    with connect(db) as conn:
        charge_id = one(conn, "SELECT charge_id FROM payments.imported_charges WHERE source_ref = 'csv:1'")
    assert conflict.errors == [RowError(2, "transaction_id", "1", f"transaction id '1' was imported before as charge "
                                        f"{charge_id} with different data (amount_minor 1000 <> 1001)")]
    assert snapshot(db) == state


def test_rows_without_ids_are_keyed_by_content(oltp: Settings, tmp_path: Path) -> None:
    db = fresh_database(oltp, "import_noid")
    path = tmp_path / "noid.csv"
    path.write_text("when,who,where,what\n2019-07-01T10:00:00Z,A,S1,1.50\n2019-07-01T10:00:00Z,A,S1,1.50\n"
                    "2019-07-01T10:00:01Z,A,S1,1.50\n")
    mapping = {"columns": {"timestamp": "when", "customer": "who", "merchant": "where", "amount": "what"},
               "currency": "USD", "defaults": {"country": "US"}}
    first = run_import(db, path, mapping)
    assert (first.errors, first.charges_created, first.merchants_created, first.terminals_created) == ([], 3, 1, 0)
    second = run_import(db, path, mapping)
    assert (second.charges_created, second.rows_skipped) == (0, 3)
    with connect(db) as conn:
        assert one(conn, "SELECT count(*) FROM payments.charges WHERE terminal_id IS NULL") == 3
        assert one(conn, "SELECT count(DISTINCT source_ref) FROM payments.imported_charges") == 3
        assert one(conn, "SELECT count(*) FROM labels.fraud_ground_truth") == 0   # no label column mapped


def test_dry_run_reports_and_writes_nothing(oltp: Settings, sim_csv: Path) -> None:
    db = fresh_database(oltp, "import_dry")
    before = snapshot(db)
    report = run_import(db, sim_csv, SIM_MAPPING, dry_run=True)
    assert (report.errors, report.loaded, report.dry_run, report.charges_created, report.customers_created) == \
        ([], False, True, 6, 3)
    assert snapshot(db) == before


def test_missing_reference_data_is_named_and_can_be_seeded(oltp: Settings, sim_csv: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    db = fresh_database(oltp, "import_noref", seed_reference=False)
    with pytest.raises(MappingError, match=r"^currency: currency 'EUR' not in ref\.currencies$"):
        run_import(db, sim_csv, SIM_MAPPING)
    with pytest.raises(MappingError, match=r"^defaults\.country: country 'ZZ' not in ref\.countries$"):
        run_import(db, sim_csv, {**SIM_MAPPING, "defaults": {"country": "ZZ"}}, seed_reference=True)
    with connect(db) as conn:
        assert one(conn, "SELECT count(*) FROM ref.currencies") == 0   # the failed import seeded nothing
    report = run_import(db, sim_csv, SIM_MAPPING, seed_reference=True)
    assert (report.errors, report.charges_created) == ([], 6)


def test_cli_import_and_mapping_errors(oltp: Settings, sim_csv: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    db = fresh_database(oltp, "import_cli")
    good = tmp_path / "sim.yaml"
    good.write_text(json.dumps(SIM_MAPPING))
    capsys.readouterr()
    assert cli(db, str(sim_csv), "--mapping", str(good), "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["ok"], doc["loaded"], doc["charges_created"], doc["amount_minor_by_currency"]) == \
        (True, True, 6, {"EUR": sum(SIM_AMOUNTS)})

    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("columns:\n  timestamp: TX_DATETIME\n  customer: CUSTOMER_ID\n  terminal: TERMINAL_ID\n"
                       "  amout: TX_AMOUNT\ncurrency: EUR\ndefaults:\n  country: FR\n")
    before = snapshot(db)
    assert cli(db, str(sim_csv), "--mapping", str(unknown)) == 2
    err = capsys.readouterr().err
    assert err == f"error: mapping: {unknown}: columns.amout: unknown key; did you mean 'amount'?\n"

    wrong_column = tmp_path / "wrong.yaml"
    wrong_column.write_text(json.dumps({**SIM_MAPPING, "columns": {**SIM_MAPPING["columns"], "amount": "AMOUNT"}}))
    assert cli(db, str(sim_csv), "--mapping", str(wrong_column)) == 2
    assert "columns.amount: 'AMOUNT' not in the file's columns ('TRANSACTION_ID', 'TX_DATETIME'" in \
        capsys.readouterr().err
    assert snapshot(db) == before


def test_amount_units_and_decimal_exactness(oltp: Settings, tmp_path: Path) -> None:
    """Minor-unit sources; major amounts whose float would round wrong (0.29 * 100 = 28.999…); comma decimals."""
    db = fresh_database(oltp, "import_units")
    columns = {"transaction_id": "id", "timestamp": "ts", "customer": "c", "merchant": "m", "amount": "amt"}
    base = {"timestamp": {"format": "%Y-%m-%d"}, "columns": columns, "defaults": {"country": "US"}}
    minor = tmp_path / "minor.csv"
    minor.write_text("id;ts;c;m;amt\n1;2019-08-01;A;S;29\n2;2019-08-01;A;S;1\n3;2019-08-01;A;S;1000000000000\n")
    report = run_import(db, minor, {**base, "ref_prefix": "minor:", "csv": {"delimiter": ";"},
                                    "amount": {"unit": "minor"}, "currency": "USD"})
    assert report.errors == [] and report.amount_minor_by_currency == {"USD": 29 + 1 + 10**12}
    major = tmp_path / "major.csv"
    major.write_text("id,ts,c,m,amt\n1,2019-08-02,A,S,0.29\n2,2019-08-02,A,S,1.15\n3,2019-08-02,A,S,4.35\n")
    report = run_import(db, major, {**base, "ref_prefix": "major:", "currency": "USD"})
    assert report.errors == [] and report.amount_minor_by_currency == {"USD": 29 + 115 + 435}
    assert [int(float(x) * 100) for x in ("0.29", "1.15", "4.35")] == [28, 114, 434]   # what floats would do
    comma = tmp_path / "comma.csv"
    comma.write_text('id,ts,c,m,amt\n1,2019-08-03,A,S,"1,15"\n2,2019-08-03,A,S,0.29\n')
    report = run_import(db, comma, {**base, "ref_prefix": "comma:", "currency": "EUR",
                                    "amount": {"decimal_separator": ","}})
    assert report.errors == [RowError(3, "amount", "0.29", "'0.29' is not a number (the decimal separator is ',')")]
    with connect(db) as conn:
        assert one(conn, "SELECT sum(amount_minor) FROM payments.charges") == 29 + 1 + 10**12 + 29 + 115 + 435


def test_a_failure_while_loading_leaves_nothing_behind(oltp: Settings, sim_csv: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    db = fresh_database(oltp, "import_atomic")
    before = snapshot(db)
    seen: list[str] = []
    real_execute = psycopg.Connection.execute

    def failing_execute(self: psycopg.Connection[Any], query: Any, *args: Any, **kw: Any) -> Any:
        text = str(query)
        seen.append(text.split(" (")[0])
        if text.startswith("INSERT INTO labels.fraud_ground_truth"):   # charges and ledger are in by now
            raise RuntimeError("disk on fire")
        return real_execute(self, query, *args, **kw)

    monkeypatch.setattr(psycopg.Connection, "execute", failing_execute)
    with pytest.raises(RuntimeError, match="disk on fire"):
        run_import(db, sim_csv, SIM_MAPPING)
    monkeypatch.undo()
    assert "INSERT INTO payments.charges" in seen and "INSERT INTO payments.balance_transactions" in seen
    after = snapshot(db)
    assert {k: v for k, v in after.items() if k != "partitions"} == \
        {k: v for k, v in before.items() if k != "partitions"}
    # only the month partitions stay (empty): they are added in a short transaction before the load
    added = set(after["partitions"]) - set(before["partitions"])
    assert {p for p in added if not p.endswith(("_pkey", "_idx"))} == {
        "charges_2019_03", "charges_2019_04", "balance_transactions_2019_03", "balance_transactions_2019_04"}


def test_months_already_in_the_default_partition_stay_there(oltp: Settings, sim_csv: Path, tmp_path: Path) -> None:
    db = fresh_database(oltp, "import_default_part")
    first = run_import(db, sim_csv, SIM_MAPPING)   # parties and a card to reuse
    assert first.charges_created == 6
    with admin_connect(db) as admin:   # a November 2018 charge that arrived while its month had no partition
        admin.execute("INSERT INTO payments.charges (created_at, merchant_id, customer_id, payment_method_id, "
                      "amount_minor, currency_code, device_type) SELECT '2018-11-20 00:00:00+00', merchant_id, "
                      "customer_id, payment_method_id, 777, 'EUR', 'pos' FROM payments.charges LIMIT 1")
        admin.commit()
    late = tmp_path / "late.csv"
    late.write_text(SIM_CSV.splitlines()[0] + "\n7,2018-11-21 12:00:00,C1,T1,1.00,0\n"
                    "8,2019-04-09 12:00:00,C1,T1,2.00,0\n")
    report = run_import(db, late, SIM_MAPPING)
    # the pending charge has no ledger row: the ledger's November 2018 gets its own partition
    assert (report.errors, report.charges_created, report.partitions_created) == ([], 2, 1)
    with connect(db) as conn:
        assert one(conn, "SELECT count(*) FROM payments.charges_default") == 2
        assert one(conn, "SELECT count(*) FROM payments.balance_transactions_default") == 0
        assert one(conn, "SELECT count(*) FROM payments.balance_transactions_2018_11") == 1
        assert one(conn, "SELECT count(*) FROM payments.charges_2019_04") == 3 + 1
        assert one(conn, "SELECT to_regclass('payments.charges_2018_11')") is None


def test_live_payments_are_not_locked_out_while_history_loads(oltp: Settings, sim_csv: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Adding a partition locks all of payments.charges; it happens in a short transaction of its own, so
    during the (long) load other sessions still read and write charges."""
    db = fresh_database(oltp, "import_live")
    probes: list[int] = []
    real_execute = psycopg.Connection.execute

    def probing_execute(self: psycopg.Connection[Any], query: Any, *args: Any, **kw: Any) -> Any:
        if str(query).startswith("INSERT INTO labels.fraud_ground_truth"):   # mid-load: charges are in
            with connect(db, autocommit=True) as other:
                other.execute("SET lock_timeout = '2s'")
                probes.append(one(other, "SELECT count(*) FROM payments.charges"))
        return real_execute(self, query, *args, **kw)

    monkeypatch.setattr(psycopg.Connection, "execute", probing_execute)
    report = run_import(db, sim_csv, SIM_MAPPING)
    assert (report.errors, report.charges_created, report.partitions_created) == ([], 6, 4)
    assert probes == [0]   # not blocked, and the uncommitted load is invisible


def test_partitions_that_cannot_be_added_fail_the_import_cleanly(oltp: Settings, sim_csv: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    db = fresh_database(oltp, "import_locked")
    monkeypatch.setattr(importer, "_PARTITION_LOCK_TIMEOUT_MS", 200)
    monkeypatch.setattr(importer, "_PARTITION_ATTEMPTS", 2)
    mapping_path = tmp_path / "sim.yaml"
    mapping_path.write_text(json.dumps(SIM_MAPPING))
    before = snapshot(db)
    with connect(db) as blocker:   # a long reader elsewhere (a report, a snapshot) holding payments.charges
        blocker.execute("SELECT count(*) FROM payments.charges")
        with pytest.raises(ImportFailed, match=r"payments\.charges stayed locked by other sessions"):
            run_import(db, sim_csv, SIM_MAPPING)
        capsys.readouterr()
        assert cli(db, str(sim_csv), "--mapping", str(mapping_path)) == 1
        assert "error: could not add the month partitions" in capsys.readouterr().err
        blocker.rollback()
    assert snapshot(db) == before
    assert run_import(db, sim_csv, SIM_MAPPING).charges_created == 6
