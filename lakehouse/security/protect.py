"""PII protection of silver rows: encryption with per-customer data keys, pseudonyms, redaction, drops.

`protect(table, keys)` turns a row of the classified source columns (lakehouse.security.classification)
into its silver form; `reveal(table, keys)` decrypts for an authorized reader; `comparable(table, key)`
gives a plain frame (PostgreSQL's rows, for reconciliation) the silver form without encrypting, so that
silver and PostgreSQL compare column for column without decrypting anything.

Per classified column `c` (nested event fields `payload.x.c` get the same, inside their struct):

- encrypt+pseudonym: `c` -> `c_enc` BINARY: Spark's built-in `aes_encrypt(c, data key, 'GCM')` with a
  random 12-byte IV and `<table>.<column>` as associated data (a ciphertext moved to another column or
  table does not decrypt), and `c_pseudo` STRING (below);
- pseudonym: `c` -> `c_pseudo`;  redact: `c` -> `c` through `redact_free_text`;  drop: removed.

Pseudonyms are HMAC-SHA256(pseudonym key, "<kind>:" + normalized value) (lower-case trimmed e-mail,
digits-only phone, …), the first 32 hex digits spelled with the letters a-p (`letters_hex`), so that a
pseudonym never holds a digit run a PAN scanner would flag. The same value gives the same pseudonym in
every table and every run: joins and distinct counts work on pseudonyms. Spark has no HMAC function,
so it is spelled out with built-ins: sha2((K xor opad) || unhex(sha2((K xor ipad) || message))).

The row's customer is the table's `subject` column (`customer_id`). A customer whose data key was
destroyed gets NULL for both `c_enc` and `c_pseudo` (erased); a row without a customer (anonymous
browsing) gets a pseudonym and no ciphertext. A customer with no key at all is a caller's bug (call
`ensure_data_keys` for the batch's `subject_ids` first) and fails the job naming the customer.

How the keys reach the executors, and what that implies. Key material is never a literal of the plan:
`F.lit(key)` would print the key in `explain()`, in the Spark UI's SQL tab, in event logs and even in
the generated column names. Instead the unwrapped keys become a small DataFrame (`createDataFrame`
from driver memory: the plan shows `LogicalRDD`/`LocalRelation` with column names only), broadcast-
joined on the customer id; the HMAC pads are a one-row frame cross-joined the same way. So:

- keys are data in memory: in the driver (the Python process and the JVM), then as broadcast blocks on
  each executor for the job's duration; they are not written to Delta, Kafka or a log;
- Spark may still put broadcast or shuffle blocks on the executors' local disks (`spark.local.dir`)
  under memory pressure: on a shared cluster set `spark.io.encryption.enabled=true` (local disk blocks)
  and `spark.network.crypto.enabled=true` / TLS (blocks in transit);
- the key columns are dropped before the frame is returned, so nothing downstream (a write, a
  `show()`) sees them; `explain()` of the result shows `_dk_key` and the pad columns by name only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Sequence

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BinaryType, LongType, StructField, StructType

from lakehouse.oltp.vault import letters_hex
from lakehouse.security.classification import (
    ENC_SUFFIX,
    PSEUDO_SUFFIX,
    ColumnRule,
    Kind,
    Protection,
    table_rules,
)
from lakehouse.security.keys import DataKeys, PseudonymKey
from lakehouse.security.redact import redact_free_text

PSEUDONYM_HEX_DIGITS = 32
_BLOCK = 64                                   # SHA-256 block size, bytes
# Helper columns, dropped before a transform returns.
_DK_ID, _DK_KEY, _DK_LIVE = "_dk_customer_id", "_dk_key", "_dk_live"
_IPAD, _OPAD = "_ps_ipad", "_ps_opad"
_WHITE = r"[ \t\r\n]+"


# --- pseudonyms ---------------------------------------------------------------------------------

def normalized(value: Column, kind: Kind) -> Column:
    """The value a pseudonym is computed from (same value -> same pseudonym)."""
    if kind is Kind.EMAIL:
        return F.lower(F.trim(value))
    if kind is Kind.PHONE:
        return F.regexp_replace(value, "[^0-9]", "")
    if kind is Kind.NAME:
        return F.lower(F.trim(F.regexp_replace(value, _WHITE, " ")))
    if kind is Kind.IP:
        return F.regexp_replace(F.lower(F.trim(value)), "/(32|128)$", "")
    return F.trim(value)


def normalized_py(value: str, kind: Kind) -> str:
    """Python twin of `normalized` (same result for the same string)."""
    if kind is Kind.EMAIL:
        return value.strip(" ").lower()
    if kind is Kind.PHONE:
        return re.sub("[^0-9]", "", value)
    if kind is Kind.NAME:
        return re.sub(_WHITE, " ", value).strip(" ").lower()
    if kind is Kind.IP:
        return re.sub("/(32|128)$", "", value.strip(" ").lower())
    return value.strip(" ")


def pseudonym_of(key: PseudonymKey, kind: Kind, value: str) -> str:
    """The pseudonym of one value, in Python (lookups: "which rows are this e-mail's?")."""
    message = f"{kind}:{normalized_py(value, kind)}".encode()
    return letters_hex(hmac.new(key.key, message, hashlib.sha256).hexdigest()[:PSEUDONYM_HEX_DIGITS])


def _pads(key: PseudonymKey) -> tuple[bytes, bytes]:
    """HMAC's inner and outer padded keys (RFC 2104; the key is 32 bytes, shorter than a block)."""
    k = key.key.ljust(_BLOCK, b"\0")
    return bytes(b ^ 0x36 for b in k), bytes(b ^ 0x5C for b in k)


def pseudonym(value: Column, kind: Kind, ipad: Column, opad: Column) -> Column:
    """STRING: HMAC-SHA256 of "<kind>:" + the normalized value with the key whose pads are given, first
    32 hex digits as letters a-p; NULL for NULL."""
    message = F.encode(F.concat(F.lit(f"{kind}:"), normalized(value, kind)), "UTF-8")
    inner = F.unhex(F.sha2(F.concat(ipad, message), 256))
    digest = F.sha2(F.concat(opad, inner), 256)
    return F.translate(F.substring(digest, 1, PSEUDONYM_HEX_DIGITS), "0123456789abcdef", "abcdefghijklmnop")


def _with_pads(df: DataFrame, key: PseudonymKey) -> DataFrame:
    ipad, opad = _pads(key)
    schema = StructType([StructField(_IPAD, BinaryType(), False), StructField(_OPAD, BinaryType(), False)])
    pads = df.sparkSession.createDataFrame([(bytearray(ipad), bytearray(opad))], schema)
    return df.crossJoin(F.broadcast(pads))


# --- data keys ----------------------------------------------------------------------------------

def _key_frame(spark: SparkSession, keys: DataKeys) -> DataFrame:
    schema = StructType([StructField(_DK_ID, LongType(), False), StructField(_DK_KEY, BinaryType(), True),
                         StructField(_DK_LIVE, LongType(), False)])
    rows: list[tuple[int, bytearray | None, int]] = [(cid, bytearray(k), 1) for cid, k in sorted(keys.keys.items())]
    rows += [(cid, None, 0) for cid in sorted(keys.destroyed)]
    return spark.createDataFrame(rows, schema)


def _with_keys(df: DataFrame, subject: str, keys: DataKeys) -> DataFrame:
    keyed = F.broadcast(_key_frame(df.sparkSession, keys))
    return df.join(keyed, on=F.col(subject) == F.col(_DK_ID), how="left")


def aad(table: str, column: str) -> str:
    """The associated data of a column's ciphertext: `<silver table>.<column>`."""
    return f"{table}.{column}"


def subject_ids(table: str, df: DataFrame) -> list[int]:
    """The distinct customer ids of `df`'s subject column (an action): the ids to `ensure_data_keys` for."""
    subject = table_rules(table).subject
    if subject is None or subject not in df.columns:
        return []
    return sorted(r[0] for r in df.select(subject).where(F.col(subject).isNotNull()).distinct().collect())


# --- applying the rules -------------------------------------------------------------------------

def _has(df: DataFrame, path: str) -> bool:
    """True when `path` (a column or a dotted path into structs) exists in `df`."""
    fields = df.schema
    for part in path.split("."):
        names = {f.name: f for f in getattr(fields, "fields", [])}
        if part not in names:
            return False
        fields = names[part].dataType
    return True


Replacement = list[tuple[str, Column]]     # (name, value) pairs that take a column's place


def _apply(df: DataFrame, rules: Sequence[ColumnRule], replace: Callable[[ColumnRule, Column], Replacement],
           drop: Sequence[str] = ()) -> DataFrame:
    """Replaces each rule's column by what `replace` gives (empty: dropped), in place; a nested event
    field inside its top-level struct. Columns in `drop` go too."""
    flat: dict[str, Replacement] = {}
    nested: dict[str, Column] = {}
    for rule in rules:
        if not _has(df, rule.column):
            continue
        outputs = replace(rule, F.col(rule.column))
        top, _, inner = rule.column.partition(".")
        if not inner:
            flat[rule.column] = outputs
            continue
        struct = nested.get(top, F.col(top))
        parent = inner.rsplit(".", 1)[0] + "." if "." in inner else ""
        for name, value in outputs:
            struct = struct.withField(parent + name.rsplit(".", 1)[-1], value)
        if all(name.rsplit(".", 1)[-1] != inner.rsplit(".", 1)[-1] for name, _ in outputs):
            struct = struct.dropFields(inner)
        nested[top] = struct
    select: list[Column] = []
    for name in df.columns:
        if name in drop:
            continue
        if name in flat:
            select += [value.alias(out) for out, value in flat[name]]
        elif name in nested:
            select.append(nested[name].alias(name))
        else:
            select.append(F.col(name))
    return df.select(*select)


def _leaf(rule: ColumnRule, suffix: str = "") -> str:
    return rule.column.rsplit(".", 1)[-1] + suffix


def protect(table: str, keys: DataKeys) -> Callable[[DataFrame], DataFrame]:
    """Source rows of `table` -> their silver form.

    Needs the table's columns (any subset; absent ones are skipped) and, for encrypted columns, its
    subject column (`customer_id`). Gives the same columns in the same order with each classified one
    replaced: `c_enc` BINARY + `c_pseudo` STRING (encrypt+pseudonym), `c_pseudo` (pseudonym), `c`
    redacted (redact), nothing (drop). `keys` must hold the data keys of every customer in the subject
    column (`ensure_data_keys(conn, master, subject_ids(table, df))`)."""
    rules = table_rules(table)
    protected = rules.protected()
    needs_keys = any(r.protection is Protection.ENCRYPT for r in protected)
    needs_pads = any(r.protection in (Protection.ENCRYPT, Protection.PSEUDONYMIZE) for r in protected)

    def _(df: DataFrame) -> DataFrame:
        subject = rules.subject if rules.subject and rules.subject in df.columns else None
        if needs_keys and subject is None and any(
                _has(df, r.column) for r in protected if r.protection is Protection.ENCRYPT):
            raise ValueError(f"protect({table}): the frame has no {rules.subject!r} column to find data keys by")
        helpers = []
        if subject is not None and needs_keys:
            df = _with_keys(df, subject, keys)
            helpers += [_DK_ID, _DK_KEY, _DK_LIVE]
        if needs_pads:
            df = _with_pads(df, keys.pseudonym)
            helpers += [_IPAD, _OPAD]
        has_customer = F.col(subject).isNotNull() if subject is not None else F.lit(False)
        missing = has_customer & F.col(_DK_ID).isNull() if subject is not None and needs_keys else F.lit(False)
        erased = has_customer & (F.col(_DK_LIVE) == 0) if subject is not None and needs_keys else F.lit(False)

        def replace(rule: ColumnRule, value: Column) -> Replacement:
            if rule.protection is Protection.DROP:
                return []
            if rule.protection is Protection.REDACT:
                return [(_leaf(rule), redact_free_text(value))]
            assert rule.kind is not None
            pseudo = pseudonym(value, rule.kind, F.col(_IPAD), F.col(_OPAD))
            pseudo = F.when(erased, F.lit(None).cast("string")).otherwise(pseudo)
            if rule.protection is Protection.PSEUDONYMIZE:
                return [(_leaf(rule, PSEUDO_SUFFIX), pseudo)]
            no_key = F.raise_error(F.concat(F.lit(f"protect({table}): no data key for customer "),
                                            F.col(subject).cast("string") if subject else F.lit("?"),
                                            F.lit(": call ensure_data_keys for the batch's subject_ids first")))
            key = F.when(missing, no_key.cast("binary")).otherwise(F.col(_DK_KEY)) if subject else F.lit(None)
            enc = F.aes_encrypt(value, key, F.lit("GCM"), F.lit("DEFAULT"), F.lit(b""),
                                F.lit(aad(table, rule.column)))
            return [(_leaf(rule, ENC_SUFFIX), F.when(erased, F.lit(None).cast("binary")).otherwise(enc)),
                    (_leaf(rule, PSEUDO_SUFFIX), pseudo)]

        return _apply(df, protected, replace, drop=helpers)

    return _


def reveal(table: str, keys: DataKeys) -> Callable[[DataFrame], DataFrame]:
    """Silver rows of `table` -> the same rows with each `c_enc` decrypted back to `c` STRING, in its
    place (for an authorized reader; never write the result to a shared table). NULL where the
    customer's key is destroyed, absent from `keys`, or does not match (`try_aes_decrypt`)."""
    rules = table_rules(table)
    encrypted = [r for r in rules.columns if r.protection is Protection.ENCRYPT]

    def _(df: DataFrame) -> DataFrame:
        subject = rules.subject
        if subject is None or subject not in df.columns:
            raise ValueError(f"reveal({table}): the frame has no {subject!r} column to find data keys by")
        df = _with_keys(df, subject, keys)
        as_enc = [ColumnRule(r.column + ENC_SUFFIX, r.data_class, Protection.KEEP) for r in encrypted]

        def replace(rule: ColumnRule, value: Column) -> Replacement:
            column = rule.column[: -len(ENC_SUFFIX)]
            plain = F.try_aes_decrypt(value, F.col(_DK_KEY), F.lit("GCM"), F.lit("DEFAULT"),
                                      F.lit(aad(table, column)))
            return [(column.rsplit(".", 1)[-1], plain.cast("string"))]

        return _apply(df, as_enc, replace, drop=[_DK_ID, _DK_KEY, _DK_LIVE])

    return _


def comparable(table: str, key: PseudonymKey) -> Callable[[DataFrame], DataFrame]:
    """Plain source rows of `table` (e.g. read from PostgreSQL) -> silver's form without ciphertext:
    `c_pseudo` for encrypted and pseudonymized columns (the same values `protect` gives), redacted free
    text, dropped columns gone, no `c_enc`. Compare it with silver minus its `_enc` columns. (Customers
    whose key was destroyed have NULL pseudonyms in silver but not here.)"""
    rules = table_rules(table)
    protected = rules.protected()

    def _(df: DataFrame) -> DataFrame:
        df = _with_pads(df, key)

        def replace(rule: ColumnRule, value: Column) -> Replacement:
            if rule.protection is Protection.DROP:
                return []
            if rule.protection is Protection.REDACT:
                return [(_leaf(rule), redact_free_text(value))]
            assert rule.kind is not None
            return [(_leaf(rule, PSEUDO_SUFFIX), pseudonym(value, rule.kind, F.col(_IPAD), F.col(_OPAD)))]

        return _apply(df, protected, replace, drop=[_IPAD, _OPAD])

    return _
