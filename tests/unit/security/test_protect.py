"""security.protect: exact silver rows (pseudonyms computed independently in Python), decryption round
trips, erased customers, nested event fields, comparable == protect without ciphertext, no key in plans."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.utils import AnalysisException

from lakehouse.oltp.vault import luhn_check_digit
from lakehouse.security.classification import Kind
from lakehouse.security.keys import DataKeys, MasterKey, master_key_id
from lakehouse.security.protect import (
    _pads,
    comparable,
    normalized_py,
    protect,
    pseudonym,
    pseudonym_of,
    reveal,
    subject_ids,
)

MASTER = MasterKey(master_key_id(bytes(range(7, 39))), bytes(range(7, 39)))
PSEUDO = MASTER.pseudonym_key
DATA_KEYS = {1: os.urandom(32), 2: os.urandom(32)}
KEYS = DataKeys(MASTER.key_id, DATA_KEYS, PSEUDO, destroyed=frozenset({3}))
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
PAN = "4000056655665" + luhn_check_digit("4000056655665")   # test BIN, 14 digits

CUSTOMERS_SCHEMA = ("customer_id long, external_ref string, email string, full_name string, phone string, "
                    "country_code string, created_at timestamp, updated_at timestamp")
CUSTOMERS = [
    (1, "crm-1", " Ann.Lee@Example.com", "Ann  Lee", "+44 20 7946 0958", "GB", T0, T0),
    (2, None, "bo@example.net", "Bo Ek", None, "SE", T0, T0),
    (3, "crm-3", "erased@example.org", "Cy Erased", "555-0100", "US", T0, T0),     # key destroyed
]


def p(kind: Kind, value: str | None) -> str | None:
    return None if value is None else pseudonym_of(PSEUDO, kind, value)


def customers(spark) -> DataFrame:
    return spark.createDataFrame(CUSTOMERS, CUSTOMERS_SCHEMA)


def without_enc(df: DataFrame) -> DataFrame:
    return df.drop(*[c for c in df.columns if c.endswith("_enc")])


def test_spark_pseudonym_is_hmac_sha256_as_letters(spark) -> None:
    values = [("email", " A@B.io "), ("phone", "+1 (555) 010-9999"), ("name", "Ann \t Lee"), ("ip", "10.1.2.3/32"),
              ("ref", "x-1"), ("email", "")]
    ipad, opad = _pads(PSEUDO)
    df = spark.createDataFrame([(k, v, bytearray(ipad), bytearray(opad)) for k, v in values],
                               "kind string, v string, ipad binary, opad binary")
    got = {}
    for kind in Kind:
        rows = df.where(F.col("kind") == kind.value).select(
            "v", pseudonym(F.col("v"), kind, F.col("ipad"), F.col("opad")).alias("p")).collect()
        got.update({(kind, r["v"]): r["p"] for r in rows})
    assert got == {(Kind(k), v): pseudonym_of(PSEUDO, Kind(k), v) for k, v in values}
    assert all(len(x) == 32 and set(x) <= set("abcdefghijklmnop") for x in got.values())


def test_normalization_makes_spellings_of_one_value_equal() -> None:
    assert normalized_py(" Ann.Lee@Example.COM ", Kind.EMAIL) == "ann.lee@example.com"
    assert normalized_py("+1 (555) 010-9999", Kind.PHONE) == "15550109999"
    assert normalized_py("  Ann \t\n Lee ", Kind.NAME) == "ann lee"
    assert normalized_py("10.1.2.3/32", Kind.IP) == "10.1.2.3"
    assert pseudonym_of(PSEUDO, Kind.EMAIL, "ANN.lee@example.com ") == \
        pseudonym_of(PSEUDO, Kind.EMAIL, "ann.lee@example.com")
    # the kind is part of the message: the same string as a name and as a reference differ
    assert pseudonym_of(PSEUDO, Kind.NAME, "x") != pseudonym_of(PSEUDO, Kind.REF, "x")


def test_protect_customers_gives_the_exact_silver_rows_and_reveal_the_plain_ones(spark) -> None:
    silver = customers(spark).transform(protect("customers", KEYS))
    assert silver.columns == ["customer_id", "external_ref_pseudo", "email_enc", "email_pseudo", "full_name_enc",
                              "full_name_pseudo", "phone_enc", "phone_pseudo", "country_code", "created_at",
                              "updated_at"]
    assert dict(silver.dtypes)["email_enc"] == "binary" and dict(silver.dtypes)["email_pseudo"] == "string"
    expected = spark.createDataFrame([
        (1, p(Kind.REF, "crm-1"), p(Kind.EMAIL, "ann.lee@example.com"), p(Kind.NAME, "ann lee"),
         p(Kind.PHONE, "442079460958"), "GB", T0, T0),
        (2, None, p(Kind.EMAIL, "bo@example.net"), p(Kind.NAME, "Bo Ek"), None, "SE", T0, T0),
        (3, None, None, None, None, "US", T0, T0)],
        "customer_id long, external_ref_pseudo string, email_pseudo string, full_name_pseudo string, "
        "phone_pseudo string, country_code string, created_at timestamp, updated_at timestamp")
    assert_df_equality(without_enc(silver), expected, ignore_row_order=True, ignore_nullable=True)

    # ciphertext: 12-byte IV + plaintext + 16-byte tag; nothing for the erased customer or a NULL value
    lengths = {r[0]: tuple(r[1:]) for r in silver.select(
        "customer_id", F.length("email_enc"), F.length("full_name_enc"), F.length("phone_enc")).collect()}
    assert lengths == {1: (28 + 20, 28 + 8, 28 + 16), 2: (28 + 14, 28 + 5, None), 3: (None, None, None)}

    plain = silver.transform(reveal("customers", KEYS))
    assert plain.columns == ["customer_id", "external_ref_pseudo", "email", "email_pseudo", "full_name",
                             "full_name_pseudo", "phone", "phone_pseudo", "country_code", "created_at", "updated_at"]
    assert sorted(tuple(r) for r in plain.select("customer_id", "email", "full_name", "phone").collect()) == [
        (1, " Ann.Lee@Example.com", "Ann  Lee", "+44 20 7946 0958"), (2, "bo@example.net", "Bo Ek", None),
        (3, None, None, None)]


def test_ciphertext_is_bound_to_its_customer_key_and_column(spark) -> None:
    silver = customers(spark).where("customer_id = 1").transform(protect("customers", KEYS))
    swapped = silver.withColumn("full_name_enc", F.col("email_enc"))            # moved to another column
    assert swapped.transform(reveal("customers", KEYS)).select("full_name").first()[0] is None
    other = DataKeys(MASTER.key_id, {1: DATA_KEYS[2]}, PSEUDO)                 # another customer's key
    assert silver.transform(reveal("customers", other)).select("email").first()[0] is None
    gone = DataKeys(MASTER.key_id, {}, PSEUDO, destroyed=frozenset({1}))       # destroyed since
    assert silver.transform(reveal("customers", gone)).select("email").first()[0] is None


def test_a_customer_without_a_key_fails_the_batch_naming_them(spark) -> None:
    df = customers(spark).union(spark.createDataFrame([(4, None, "d@e.fr", "Di", None, "FR", T0, T0)],
                                                      CUSTOMERS_SCHEMA))
    assert subject_ids("customers", df) == [1, 2, 3, 4]
    with pytest.raises(Exception, match="protect\\(customers\\): no data key for customer 4: call ensure_data_keys"):
        df.transform(protect("customers", KEYS)).collect()


def test_charges_cards_and_payment_references(spark) -> None:
    charges = spark.createDataFrame(
        [(10, T0, 1, "203.0.113.7", f"order 123 card {PAN} x@y.org", "DE"),
         (11, T0, 2, None, None, None)],
        "charge_id long, created_at timestamp, customer_id long, ip_address string, description string, "
        "ip_country string")
    silver = charges.transform(protect("charges", KEYS))
    assert silver.columns == ["charge_id", "created_at", "customer_id", "ip_address_enc", "ip_address_pseudo",
                              "description", "ip_country"]
    # long digit runs masked before comparing, so that a failure never prints the card number
    masked = without_enc(silver).withColumn("description", F.regexp_replace("description", "[0-9]{13,}", "<digits>"))
    assert_df_equality(masked, spark.createDataFrame(
        [(10, T0, 1, p(Kind.IP, "203.0.113.7"), "order 123 card [REDACTED_PAN] [REDACTED_EMAIL]", "DE"),
         (11, T0, 2, None, None, None)],
        "charge_id long, created_at timestamp, customer_id long, ip_address_pseudo string, description string, "
        "ip_country string"), ignore_row_order=True, ignore_nullable=True)
    assert silver.transform(reveal("charges", KEYS)).where("charge_id = 10").select("ip_address").first()[0] == \
        "203.0.113.7"

    cards = spark.createDataFrame([(5, "tok_abc", "visa", "400005", "1234", 12, 2030, "abcd", "US")],
                                  "payment_method_id long, token string, brand string, bin string, last4 string, "
                                  "exp_month short, exp_year short, fingerprint string, issuing_country string")
    assert_df_equality(cards.transform(protect("cards", KEYS)), cards.drop("exp_month", "exp_year"))

    wallets = spark.createDataFrame([(6, "wallet", "paypal", "PAYER-77")],
                                    "payment_method_id long, kind string, provider string, account_ref string")
    assert_df_equality(wallets.transform(protect("wallets", KEYS)), spark.createDataFrame(
        [(6, "wallet", "paypal", p(Kind.REF, "PAYER-77"))],
        "payment_method_id long, kind string, provider string, account_ref_pseudo string"), ignore_nullable=True)


EVENT_SCHEMA = ("event_id string, customer_id long, payload struct<kind:string, text:string, "
                "geo:struct<ip:string, country:string, city:string>>")


def test_nested_event_fields_are_protected_inside_their_struct(spark) -> None:
    events = spark.createDataFrame([
        ("e1", 1, ("review", "my mail is a@b.co", ("35.10.3.156", "DE", "Berlin"))),
        ("e2", None, ("review", "fine", ("35.10.9.9", "DE", "Berlin"))),            # anonymous: pseudonym only
        ("e3", 3, ("review", "bye", ("35.10.1.1", "DE", "Berlin")))], EVENT_SCHEMA)   # erased customer
    clicks = events.transform(protect("clickstream", KEYS))
    assert clicks.schema["payload"].dataType.simpleString() == \
        "struct<kind:string,text:string,geo:struct<country:string,city:string,ip_enc:binary,ip_pseudo:string>>"
    rows = {r["event_id"]: (r["pseudo"], r["has_enc"]) for r in clicks.select(
        "event_id", F.col("payload.geo.ip_pseudo").alias("pseudo"),
        F.col("payload.geo.ip_enc").isNotNull().alias("has_enc")).collect()}
    assert rows == {"e1": (p(Kind.IP, "35.10.3.156"), True), "e2": (p(Kind.IP, "35.10.9.9"), False),
                    "e3": (None, False)}
    back = clicks.transform(reveal("clickstream", KEYS)).where("event_id = 'e1'").select("payload.geo.ip").first()
    assert back[0] == "35.10.3.156"

    feedback = events.select("event_id", "customer_id", F.col("payload").dropFields("geo").alias("payload"))
    assert_df_equality(feedback.transform(protect("feedback", KEYS)), spark.createDataFrame(
        [("e1", 1, ("review", "my mail is [REDACTED_EMAIL]")), ("e2", None, ("review", "fine")),
         ("e3", 3, ("review", "bye"))], "event_id string, customer_id long, payload struct<kind:string, text:string>"),
        ignore_row_order=True, ignore_nullable=True)


def test_comparable_gives_protect_s_rows_without_ciphertext(spark) -> None:
    live = customers(spark).where("customer_id <> 3")      # erased customers differ by design
    assert_df_equality(live.transform(comparable("customers", PSEUDO)),
                       without_enc(live.transform(protect("customers", KEYS))), ignore_row_order=True,
                       ignore_nullable=True)
    charges = spark.createDataFrame([(10, 1, "203.0.113.7", f"card {PAN}")],
                                    "charge_id long, customer_id long, ip_address string, description string")
    assert comparable("charges", PSEUDO)(charges).collect() == \
        without_enc(protect("charges", KEYS)(charges)).collect()


def test_no_key_material_in_the_plan(spark, capsys: pytest.CaptureFixture[str]) -> None:
    silver = customers(spark).transform(protect("customers", KEYS))
    silver.explain("extended")
    silver.transform(reveal("customers", KEYS)).explain("extended")
    customers(spark).transform(comparable("customers", PSEUDO)).explain("extended")
    plans = capsys.readouterr().out.lower()
    assert "aes_encrypt" in plans and "_dk_key" in plans       # the plans were printed
    secrets = [k.hex() for k in DATA_KEYS.values()] + [x.hex() for x in _pads(PSEUDO)] + [MASTER.key.hex()]
    assert not [s for s in secrets if s[:16] in plans.replace("0x", "")]


def test_encrypting_needs_the_subject_column(spark) -> None:
    no_subject = spark.createDataFrame([("a@b.io",)], "email string")
    with pytest.raises(ValueError, match="protect\\(customers\\): the frame has no 'customer_id' column"):
        no_subject.transform(protect("customers", KEYS))
    with pytest.raises((ValueError, AnalysisException)):
        no_subject.transform(reveal("customers", KEYS))
