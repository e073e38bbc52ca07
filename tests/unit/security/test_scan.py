"""security.scan on small Delta tables written here: planted plaintext is found in the data files and in
the log's statistics, the protected table has nothing, and no finding shows a value."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lakehouse.oltp.vault import luhn_check_digit
from lakehouse.security.keys import DataKeys, MasterKey, master_key_id
from lakehouse.security.protect import protect
from lakehouse.security.redact import find_pans
from lakehouse.security.scan import Finding, mask, scan_silver

PAN = "4000002760003" + luhn_check_digit("4000002760003")      # 14-digit test number
EMAIL = "planted.person@example.com"
NAME = "Planted Person"
PHONE = "+44 20 7946 0123"
MASTER = MasterKey(master_key_id(bytes(32)), bytes(32))
KEYS = DataKeys(MASTER.key_id, {1: os.urandom(32)}, MASTER.pseudonym_key)
SCHEMA = "customer_id long, external_ref string, email string, full_name string, phone string, country_code string"


def write(df, path: Path) -> None:
    df.coalesce(1).write.format("delta").save(str(path))


def test_planted_values_are_found_in_files_and_stats_and_protected_ones_are_not(spark, tmp_path: Path) -> None:
    rows = [(1, None, EMAIL, NAME, PHONE, "GB")]
    write(spark.createDataFrame(rows, SCHEMA).transform(protect("customers", KEYS)), tmp_path / "customers")
    note = f"call me, card {PAN[:4]} {PAN[4:10]} {PAN[10:]}"
    plain = spark.createDataFrame([(7, EMAIL, note, "order 1234567812345678")],
                                  "id long, contact string, note string, ref string")
    write(plain, tmp_path / "leaky")
    findings = scan_silver(str(tmp_path), needles=[EMAIL, NAME, PHONE, PAN])

    assert not [f for f in findings if f.file.startswith("customers/")]
    by_place = {(f.file.split("/")[1] if f.file.split("/")[1] == "_delta_log" else "data", f.column, f.kind)
                for f in findings}
    in_stats = {("_delta_log", f"{action}.stats.{bound}.{column}", kind)
                for action in ("add", "allFiles[]")       # the commit's add, and the version's checksum (.crc)
                for bound in ("minValues", "maxValues")
                for column, kind in (("contact", "known_value"), ("contact", "email"), ("note", "known_value"),
                                     ("note", "card_number"))}
    assert by_place == {("data", "contact", "known_value"), ("data", "contact", "email"),
                        ("data", "note", "known_value"), ("data", "note", "card_number")} | in_stats
    assert all(f.values == 1 for f in findings)
    printed = "\n".join(str(f) for f in findings) + repr(findings)
    assert EMAIL not in printed and PAN not in printed and PAN[4:10] not in printed


def test_nested_and_binary_values_and_checkpoints_are_read(tmp_path: Path) -> None:
    table = pa.table({
        "payload": pa.array([{"geo": {"ip": "10.0.0.1"}, "tags": [EMAIL]}]),
        "blob": pa.array([f"x{PAN}y".encode()], pa.binary()),
        "ok": pa.array(["nothing here"]),
    })
    (tmp_path / "t" / "_delta_log").mkdir(parents=True)
    pq.write_table(table, tmp_path / "t" / "part-0.parquet")
    pq.write_table(pa.table({"add": pa.array([{"path": "p", "stats": json.dumps({"maxValues": {"e": EMAIL}})}])}),
                   tmp_path / "t" / "_delta_log" / "00000000000000000010.checkpoint.parquet")
    (tmp_path / "t" / "_delta_log" / "00000000000000000011.json").write_text(
        json.dumps({"commitInfo": {"operation": "MERGE", "timestamp": 4000002760003123,
                                   "operationParameters": {"predicate": f"email = '{EMAIL}'"}}}) + "\n")
    found = {(f.file, f.column, f.kind) for f in scan_silver(str(tmp_path), needles=["10.0.0.1"])}
    assert found == {
        ("t/part-0.parquet", "payload.geo.ip", "known_value"),
        ("t/part-0.parquet", "payload.tags[]", "email"),
        ("t/part-0.parquet", "blob", "card_number"),
        ("t/_delta_log/00000000000000000010.checkpoint.parquet", "add.stats", "email"),
        ("t/_delta_log/00000000000000000011.json", "commitInfo.operationParameters.predicate", "email"),
    }


def test_mask_and_str() -> None:
    assert mask(PAN) == PAN[0] + "*" * (len(PAN) - 3) + PAN[-2:]
    assert mask("a@b.c") == "*****"
    assert str(Finding("t/x.parquet", "email", "email", 3, mask(EMAIL))) == \
        f"t/x.parquet: email: email ×3 (e.g. {mask(EMAIL)})"
    assert scan_silver(str(Path("/nonexistent/silver"))) == []


def test_a_uuid_whose_digit_groups_pass_luhn_is_not_a_card_number(tmp_path: Path) -> None:
    # 12345678-1234-5678-... : the first three groups are 16 digits; the last digit makes them pass Luhn
    digits = "123456781234567"
    check = luhn_check_digit(digits)
    uuid = f"{digits[:8]}-{digits[8:12]}-{digits[12:]}{check}-abcd-0123456789ab"
    assert find_pans(uuid) == [digits + check]                 # the plain rule would flag it
    pq.write_table(pa.table({"event_id": [uuid], "note": [f"card {PAN} in {uuid}"]}), tmp_path / "t.parquet")
    findings = scan_silver(str(tmp_path))
    assert [(f.column, f.kind, f.values) for f in findings] == [("note", "card_number", 1)]
