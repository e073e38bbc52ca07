"""`lakehouse oltp import`: externally produced transaction history (CSV or Parquet) into the OLTP schema.

A mapping YAML (docs/oltp/import.md) says which source column is which field. The import is all or
nothing:

1. every row is parsed and validated in Python (timestamps, exact Decimal amounts against the
   currency's minor unit from `ref.currencies`, ids, labels), streaming; good rows are COPY'd into
   a temporary staging table, bad rows collected with their line number and reason;
2. set-level checks run on the staging table (duplicate transaction ids, a terminal used with two
   merchants, conflicts with earlier imports);
3. only when no row is bad: parties, payment methods, charges, ledger entries and labels are
   created with INSERT … SELECT from the staging table, in the same single transaction.

Re-importing rows whose transaction id was imported before skips them (`payments.imported_charges`,
migration V003); parties are found by `external_ref` and reused. Nothing here ever writes a PAN: the
payment method created for imported history is a placeholder card (see `import_card_fingerprint`).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import difflib
import hashlib
import json
import operator
import re
import time
import zoneinfo
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from psycopg import sql

from lakehouse.oltp.vault import letters_hex, new_token

UTC = dt.UTC
STATUSES = ("pending", "authorized", "captured", "failed", "canceled")
DEVICE_TYPES = ("mobile", "desktop", "tablet", "pos", "unknown")
TERMINAL_KINDS = ("pos", "ecommerce", "in_app")
TIMESTAMP_KEYWORDS = ("iso", "epoch_s", "epoch_ms", "epoch_us")
FIELDS = ("transaction_id", "timestamp", "customer", "merchant", "terminal", "amount", "currency", "fraud",
          "status", "device_type")
MAX_MINOR = 2**63 - 1
# The placeholder card of imported history (the source has no card data).
IMPORT_CARD = {"brand": "other", "bin": "000000", "last4": "0000", "exp_month": 12, "exp_year": 2099}
_FINGERPRINT_SALT = "lakehouse import card v1:"
_LOCK = "lakehouse.oltp.import"
_PARTITION_LOCK_TIMEOUT_MS = 3000   # per attempt to add month partitions …
_PARTITION_ATTEMPTS = 5             # … with 1, 2, 3, … s pauses between attempts

Progress = Callable[[str], None]


class MappingError(ValueError):
    """The mapping file is invalid, names a column the file lacks, or a code missing from ref.*;
    the message names the key."""


# --------------------------------------------------------------------------------------------- mapping
_SCHEMA: dict[str, Any] = {
    "version": int,
    "format": str,
    "ref_prefix": str,
    "csv": {"delimiter": str, "quotechar": str, "encoding": str},
    "columns": dict.fromkeys(FIELDS, str),
    "timestamp": {"format": str, "timezone": str},
    "amount": {"unit": str, "decimal_separator": str},
    "currency": str,
    "fraud": {"true_values": list, "false_values": list},
    "status": {"default": str, "values": dict, "failure_code": str},
    "defaults": {"country": str, "mcc": str, "device_type": str, "terminal_kind": str, "merchant": str},
}


@dataclass(frozen=True)
class ImportMapping:
    """A validated mapping (defaults filled in). `columns` maps field -> source column name."""

    columns: Mapping[str, str]
    country: str
    format: str | None = None
    ref_prefix: str = ""
    csv_delimiter: str = ","
    csv_quotechar: str = '"'
    csv_encoding: str = "utf-8-sig"
    timestamp_format: str = "iso"
    timezone: str = "UTC"
    amount_unit: str = "major"
    decimal_separator: str = "."
    currency: str | None = None
    fraud_true: tuple[str, ...] = ("1", "true", "t", "yes", "y")
    fraud_false: tuple[str, ...] = ("0", "false", "f", "no", "n")
    status_default: str = "captured"
    status_values: Mapping[str, str] = field(default_factory=dict)
    failure_code: str = "imported_failure"
    mcc: str = "5999"
    device_type: str = "unknown"
    terminal_kind: str = "pos"
    merchant: str | None = None   # one merchant for terminal-only rows; None: one merchant per terminal

    @property
    def merchant_explicit(self) -> bool:
        return "merchant" in self.columns

    def as_json(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["columns"] = dict(self.columns)
        doc["status_values"] = dict(self.status_values)
        return doc


def _check_keys(doc: Any, schema: dict[str, Any], path: str) -> None:
    if not isinstance(doc, dict):
        raise MappingError(f"{path or 'mapping'}: expected a mapping of keys, got {type(doc).__name__}")
    for key, value in doc.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in schema:
            close = difflib.get_close_matches(str(key), list(schema), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(schema)})"
            raise MappingError(f"{where}: unknown key{hint}")
        expected = schema[key]
        if value is None:
            continue
        if isinstance(expected, dict):
            _check_keys(value, expected, where)
        elif expected is str:
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise MappingError(f"{where}: expected a string, got {value!r}")
        elif expected is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise MappingError(f"{where}: expected an integer, got {value!r}")
        elif not isinstance(value, expected):
            raise MappingError(f"{where}: expected a {expected.__name__}, got {value!r}")


def _label_text(value: Any) -> str:
    """Canonical text of a label value from YAML or a file: lower-case, `true`/`false` for booleans,
    integral floats without `.0`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip().lower()


def parse_mapping(doc: Any) -> ImportMapping:
    """Validates a mapping document (parsed YAML). Raises `MappingError` naming the key."""
    _check_keys(doc, _SCHEMA, "")
    if doc.get("version", 1) != 1:
        raise MappingError(f"version: only version 1 is supported, got {doc['version']!r}")

    def section(name: str) -> dict[str, Any]:
        return {k: v for k, v in (doc.get(name) or {}).items() if v is not None}

    def text(value: Any) -> str:
        return str(value)

    columns = {k: text(v) for k, v in section("columns").items()}
    for req in ("timestamp", "customer", "amount"):
        if req not in columns:
            raise MappingError(f"columns.{req}: required (the source column holding the {req})")
    if "merchant" not in columns and "terminal" not in columns:
        raise MappingError("columns: map columns.merchant or columns.terminal (or both)")
    kw: dict[str, Any] = {"columns": columns}

    fmt = doc.get("format")
    if fmt is not None and fmt not in ("csv", "parquet"):
        raise MappingError(f"format: expected csv or parquet, got {fmt!r}")
    kw["format"] = fmt
    if doc.get("ref_prefix") is not None:
        kw["ref_prefix"] = text(doc["ref_prefix"])

    csv_opts = section("csv")
    for key in ("delimiter", "quotechar"):
        if key in csv_opts:
            if len(text(csv_opts[key])) != 1:
                raise MappingError(f"csv.{key}: expected one character, got {csv_opts[key]!r}")
            kw[f"csv_{key}"] = text(csv_opts[key])
    if "encoding" in csv_opts:
        import codecs

        try:
            codecs.lookup(text(csv_opts["encoding"]))
        except LookupError:
            raise MappingError(f"csv.encoding: unknown encoding {csv_opts['encoding']!r}") from None
        kw["csv_encoding"] = text(csv_opts["encoding"])

    ts = section("timestamp")
    if "format" in ts:
        tf = text(ts["format"])
        if tf not in TIMESTAMP_KEYWORDS and "%" not in tf:
            raise MappingError(f"timestamp.format: expected {', '.join(TIMESTAMP_KEYWORDS)} or a strptime pattern "
                               f"such as '%Y-%m-%d %H:%M:%S', got {tf!r}")
        kw["timestamp_format"] = tf
    if "timezone" in ts:
        try:
            zoneinfo.ZoneInfo(text(ts["timezone"]))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise MappingError(f"timestamp.timezone: unknown time zone {ts['timezone']!r}") from None
        kw["timezone"] = text(ts["timezone"])

    amount = section("amount")
    if "unit" in amount:
        if amount["unit"] not in ("major", "minor"):
            raise MappingError(f"amount.unit: expected major (e.g. 12.34) or minor (e.g. 1234), got {amount['unit']!r}")
        kw["amount_unit"] = amount["unit"]
    if "decimal_separator" in amount:
        if text(amount["decimal_separator"]) not in (".", ","):
            raise MappingError(f"amount.decimal_separator: expected '.' or ',', got {amount['decimal_separator']!r}")
        kw["decimal_separator"] = text(amount["decimal_separator"])

    currency = doc.get("currency")
    if currency is not None and "currency" in columns:
        raise MappingError("currency: set either columns.currency (a column) or currency (a constant), not both")
    if currency is None and "currency" not in columns:
        raise MappingError("currency: required: a constant currency code (e.g. EUR) or columns.currency")
    if currency is not None:
        if not re.fullmatch(r"[A-Z]{3}", text(currency)):
            raise MappingError(f"currency: expected an ISO 4217 code such as EUR, got {currency!r}")
        kw["currency"] = text(currency)

    fraud = section("fraud")
    if fraud and "fraud" not in columns:
        raise MappingError("fraud: set columns.fraud to the label column to use these options")
    for key, attr in (("true_values", "fraud_true"), ("false_values", "fraud_false")):
        if key in fraud:
            values = tuple(_label_text(v) for v in fraud[key])
            if not values:
                raise MappingError(f"fraud.{key}: must not be empty")
            kw[attr] = values
    overlap = set(kw.get("fraud_true", ImportMapping.fraud_true)) & set(kw.get("fraud_false",
                                                                              ImportMapping.fraud_false))
    if overlap:
        raise MappingError(f"fraud: {sorted(overlap)} listed as both true and false")

    status = section("status")
    if "default" in status:
        if status["default"] not in STATUSES:
            raise MappingError(f"status.default: expected one of {', '.join(STATUSES)}, got {status['default']!r}")
        kw["status_default"] = status["default"]
    if "values" in status:
        if "status" not in columns:
            raise MappingError("status.values: set columns.status to the status column to use it")
        values_map = {}
        for src, target in status["values"].items():
            if target not in STATUSES:
                raise MappingError(f"status.values.{src}: expected one of {', '.join(STATUSES)}, got {target!r}")
            values_map[_label_text(src)] = target
        kw["status_values"] = values_map
    if "failure_code" in status:
        kw["failure_code"] = text(status["failure_code"])

    defaults = section("defaults")
    if "country" not in defaults:
        raise MappingError("defaults.country: required (ISO 3166 alpha-2 code of created customers, merchants "
                           "and placeholder cards, e.g. FR)")
    kw["country"] = text(defaults["country"])
    if not re.fullmatch(r"[A-Z]{2}", kw["country"]):
        raise MappingError(f"defaults.country: expected an ISO 3166 alpha-2 code such as FR, "
                           f"got {defaults['country']!r}")
    if "mcc" in defaults:
        kw["mcc"] = text(defaults["mcc"])
        if not re.fullmatch(r"[0-9]{4}", kw["mcc"]):
            raise MappingError(f"defaults.mcc: expected 4 digits as a quoted string (e.g. '5999'), "
                               f"got {defaults['mcc']!r}")
    if "device_type" in defaults:
        if defaults["device_type"] not in DEVICE_TYPES:
            raise MappingError(f"defaults.device_type: expected one of {', '.join(DEVICE_TYPES)}, "
                               f"got {defaults['device_type']!r}")
        kw["device_type"] = defaults["device_type"]
    if "terminal_kind" in defaults:
        if defaults["terminal_kind"] not in TERMINAL_KINDS:
            raise MappingError(f"defaults.terminal_kind: expected one of {', '.join(TERMINAL_KINDS)}, "
                               f"got {defaults['terminal_kind']!r}")
        kw["terminal_kind"] = defaults["terminal_kind"]
    if "merchant" in defaults:
        if "merchant" in columns:
            raise MappingError("defaults.merchant: applies only when columns.merchant is not mapped")
        if "terminal" not in columns:
            raise MappingError("defaults.merchant: applies only to terminals (map columns.terminal)")
        kw["merchant"] = text(defaults["merchant"])
        if not kw["merchant"].strip():
            raise MappingError("defaults.merchant: must not be empty (leave it out for one merchant per terminal)")
    return ImportMapping(**kw)


def load_mapping(path: str | Path) -> ImportMapping:
    """Reads and validates a mapping YAML; errors start with the file name."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as e:
        raise MappingError(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise MappingError(f"{path}: not valid YAML: {e}") from None
    if doc is None:
        raise MappingError(f"{path}: empty mapping")
    try:
        return parse_mapping(doc)
    except MappingError as e:
        raise MappingError(f"{path}: {e}") from None


# ----------------------------------------------------------------------------------------- values
@dataclass(frozen=True)
class RowError:
    """A bad row: `line` is the CSV line (the header is line 1) or the 1-based Parquet row."""

    line: int
    field: str
    value: str | None
    reason: str


class ValueProblem(ValueError):
    pass


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or (
        isinstance(value, float) and value != value)  # NaN from a float column


def _show(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def parse_id(value: Any, what: str) -> str:
    """An external id as text: strings stripped, integers (and integral floats) without decimals."""
    if _is_missing(value):
        raise ValueProblem(f"{what} is missing")
    if isinstance(value, bool):
        raise ValueProblem(f"{what} {value!r} is not an id")
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return repr(value)
    return str(value).strip()


def parse_decimal(value: Any, decimal_separator: str = ".") -> Decimal:
    """An exact Decimal: text as written; a float by its shortest round-trip text (12.34 -> 12.34)."""
    if isinstance(value, bool):
        raise ValueProblem(f"{value!r} is not a number")
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, int):
        d = Decimal(value)
    elif isinstance(value, float):
        d = Decimal(repr(value))
    else:
        s = str(value).strip()
        if decimal_separator == ",":
            if "." in s:
                raise ValueProblem(f"{s!r} is not a number (the decimal separator is ',')")
            s = s.replace(",", ".")
        if not re.fullmatch(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?", s):
            raise ValueProblem(f"{s!r} is not a number")
        try:
            d = Decimal(s)
        except InvalidOperation:
            raise ValueProblem(f"{s!r} is not a number") from None
    if not d.is_finite():
        raise ValueProblem(f"{value!r} is not a finite number")
    return d


def to_minor(amount: Decimal, unit: str, currency: str, minor_unit: int) -> int:
    """Exact conversion to integer minor units; rejects non-positive amounts and fractions of a minor unit."""
    if amount <= 0:
        raise ValueProblem(f"amount {amount} is not positive")
    if unit == "major":
        scaled = amount.scaleb(minor_unit)
        if scaled != scaled.to_integral_value():
            raise ValueProblem(f"amount {amount} has more decimals than {currency} allows ({minor_unit})")
    else:
        scaled = amount
        if scaled != scaled.to_integral_value():
            raise ValueProblem(f"amount {amount} is not a whole number of minor units")
    minor = int(scaled)
    if minor > MAX_MINOR:
        raise ValueProblem(f"amount {amount} is too large")
    return minor


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_SCALE = {"epoch_s": 0, "epoch_ms": -3, "epoch_us": -6}
_FAST_FORMATS = {"%Y-%m-%d %H:%M:%S": re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"),
                 "%Y-%m-%dT%H:%M:%S": re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"),
                 "%Y-%m-%d": re.compile(r"\d{4}-\d\d-\d\d")}


class TimestampParser:
    """Source value -> aware UTC datetime. Naive values are in `timezone` (wall-clock times that do not
    exist there, in a DST gap, are rejected; ambiguous ones take the first occurrence)."""

    def __init__(self, fmt: str = "iso", timezone: str = "UTC") -> None:
        self.fmt = fmt
        self.tz: dt.tzinfo = UTC if timezone == "UTC" else zoneinfo.ZoneInfo(timezone)
        self.timezone = timezone
        self._fast = _FAST_FORMATS.get(fmt)

    def _localize(self, naive: dt.datetime) -> dt.datetime:
        if self.tz is UTC:
            return naive.replace(tzinfo=UTC)
        local = naive.replace(tzinfo=self.tz)
        utc = local.astimezone(UTC)
        if utc.astimezone(self.tz).replace(tzinfo=None) != naive:
            raise ValueProblem(f"timestamp {naive.isoformat(sep=' ')} does not exist in {self.timezone} "
                               "(skipped by a daylight-saving change)")
        return utc

    def __call__(self, value: Any) -> dt.datetime:
        if _is_missing(value):
            raise ValueProblem("timestamp is missing")
        if isinstance(value, dt.datetime):
            parsed = value
        elif isinstance(value, dt.date):
            parsed = dt.datetime(value.year, value.month, value.day)
        elif self.fmt in _EPOCH_SCALE:
            try:
                seconds = parse_decimal(value).scaleb(_EPOCH_SCALE[self.fmt])
                parsed = _EPOCH + dt.timedelta(seconds=int(seconds),
                                               microseconds=int((seconds % 1).scaleb(6)))
            except (ValueProblem, OverflowError, ValueError):
                raise ValueProblem(f"timestamp {value!r} is not a number of "
                                   f"{self.fmt.removeprefix('epoch_')} since 1970-01-01") from None
        else:
            s = str(value).strip()
            try:
                if self.fmt == "iso" or (self._fast is not None and self._fast.fullmatch(s)):
                    parsed = dt.datetime.fromisoformat(s)
                else:
                    parsed = dt.datetime.strptime(s, self.fmt)
            except ValueError:
                expected = "ISO 8601" if self.fmt == "iso" else f"format {self.fmt!r}"
                raise ValueProblem(f"timestamp {s!r} does not match {expected}") from None
        if parsed.tzinfo is None:
            return self._localize(parsed)
        return parsed.astimezone(UTC)


def parse_label(value: Any, true_values: Sequence[str], false_values: Sequence[str]) -> bool:
    text = "" if value is None else _label_text(value)
    if text in true_values:
        return True
    if text in false_values:
        return False
    shown = "an empty value" if not text else repr(value if isinstance(value, str) else text)
    raise ValueProblem(f"fraud label {shown} is neither true ({', '.join(true_values)}) "
                       f"nor false ({', '.join(false_values)})")


def import_card_fingerprint(customer_ref: str) -> str:
    """The placeholder card's fingerprint: 32 hex chars (spelled a-p, see vault.letters_hex) derived from
    the customer's external ref only (no card data exists). Equal in SQL:
    translate(left(encode(sha256(convert_to(salt || ref, 'UTF8')), 'hex'), 32),
              '0123456789abcdef', 'abcdefghijklmnop')."""
    return letters_hex(hashlib.sha256((_FINGERPRINT_SALT + customer_ref).encode()).hexdigest()[:32])


# ------------------------------------------------------------------------------------------- rows
@dataclass(frozen=True)
class Reference:
    """What validation needs from ref.*: currency -> minor unit, country codes, MCCs."""

    currencies: Mapping[str, int]
    countries: frozenset[str] = frozenset()
    mccs: frozenset[str] = frozenset()


STAGE_COLUMNS = ("line", "tx_ref", "created_at", "customer_ref", "merchant_ref", "terminal_ref", "amount_minor",
                 "currency", "fee_minor", "status", "is_fraud", "device_type")


class _Bail(Exception):
    """The fast path met something unusual: the detailed path decides (and explains)."""


class RowParser:
    """Turns one source row into a staging tuple (STAGE_COLUMNS), or into its errors.

    `fields` is the order of the values handed to `parse` (the mapped fields). A fused fast path
    handles the common value types; anything unusual, and every bad row, goes through the detailed
    path, which is the one authority on what is valid and says why not.
    """

    def __init__(self, mapping: ImportMapping, reference: Reference,
                 fee: Callable[[int], int] = lambda _amount: 0, fields: Sequence[str] | None = None) -> None:
        self.m = mapping
        self.ref = reference
        self.fee = fee
        self.fields = tuple(fields if fields is not None else mapping.columns)
        self.ts = TimestampParser(mapping.timestamp_format, mapping.timezone)
        self.prefix = mapping.ref_prefix
        self._fast = self._make_fast()

    def parse(self, line: int, values: Sequence[Any]) -> tuple[tuple[Any, ...] | None, list[RowError]]:
        try:
            return self._fast(line, values), []
        except Exception:
            return self.parse_dict(line, dict(zip(self.fields, values, strict=True)))

    def parse_dict(self, line: int, raw: Mapping[str, Any]) -> tuple[tuple[Any, ...] | None, list[RowError]]:
        """The detailed path: every problem of the row, one RowError each."""
        m = self.m
        errors: list[RowError] = []

        def attempt(fld: str, fn: Callable[[Any], Any]) -> Any:
            value = raw.get(fld)
            try:
                return fn(value)
            except ValueProblem as e:
                errors.append(RowError(line, fld, _show(value), str(e)))
                return None

        tx_id = attempt("transaction_id", lambda v: parse_id(v, "transaction id")) \
            if "transaction_id" in m.columns else None
        created_at = attempt("timestamp", self.ts)
        customer = attempt("customer", lambda v: parse_id(v, "customer id"))
        merchant = terminal = None
        if m.merchant_explicit:
            merchant = attempt("merchant", lambda v: parse_id(v, "merchant id"))
            if "terminal" in m.columns and not _is_missing(raw.get("terminal")):
                terminal = attempt("terminal", lambda v: parse_id(v, "terminal id"))
        else:
            terminal = attempt("terminal", lambda v: parse_id(v, "terminal id"))
        currency = m.currency if m.currency is not None else attempt("currency", self._currency)
        amount = attempt("amount", lambda v: parse_decimal(v, m.decimal_separator))
        minor = None
        if amount is not None and currency is not None:
            minor = attempt("amount", lambda _v: to_minor(amount, m.amount_unit, currency,
                                                          self.ref.currencies[currency]))
        elif amount is not None and amount <= 0:
            errors.append(RowError(line, "amount", _show(raw.get("amount")), f"amount {amount} is not positive"))
        status = attempt("status", self._status) if "status" in m.columns else m.status_default
        is_fraud = attempt("fraud", lambda v: parse_label(v, m.fraud_true, m.fraud_false)) \
            if "fraud" in m.columns else None
        device = attempt("device_type", self._device) if "device_type" in m.columns else m.device_type
        if errors:
            return None, errors
        assert created_at is not None and customer is not None and minor is not None and currency is not None
        return self._assemble(line, tx_id, created_at, customer, merchant, terminal, minor, currency, status,
                              is_fraud, device), []

    def _assemble(self, line: int, tx_id: str | None, created_at: dt.datetime, customer: str, merchant: str | None,
                  terminal: str | None, minor: int, currency: str, status: str, is_fraud: bool | None,
                  device: str) -> tuple[Any, ...]:
        prefix = self.prefix
        if terminal is not None:
            terminal = prefix + terminal
        if merchant is not None:
            merchant = prefix + merchant
        elif self.m.merchant is not None:
            merchant = prefix + self.m.merchant
        else:
            assert terminal is not None
            merchant = prefix + "terminal:" + terminal[len(prefix):]
        customer = prefix + customer
        if tx_id is not None:
            tx_ref = prefix + tx_id
        else:  # no id in the source: the row's content; identical rows are numbered in SQL (_check_stage)
            content = "|".join([created_at.isoformat(), customer, merchant, terminal or "", str(minor), currency])
            tx_ref = prefix + "row:" + letters_hex(hashlib.sha256(content.encode()).hexdigest()[:32])
        return (line, tx_ref, created_at, customer, merchant, terminal, minor, currency, self.fee(minor), status,
                is_fraud, device)

    def _make_fast(self) -> Callable[[int, Sequence[Any]], tuple[Any, ...]]:
        m = self.m
        idx = {f: i for i, f in enumerate(self.fields)}
        i_tx, i_ts, i_cu = idx.get("transaction_id", -1), idx["timestamp"], idx["customer"]
        i_me, i_te, i_am = idx.get("merchant", -1), idx.get("terminal", -1), idx["amount"]
        i_cur, i_fr = idx.get("currency", -1), idx.get("fraud", -1)
        i_st, i_dev = idx.get("status", -1), idx.get("device_type", -1)
        currencies = self.ref.currencies
        const_currency = m.currency or ""
        const_mu = currencies[const_currency] if m.currency is not None else None
        ts, fromiso = self.ts, dt.datetime.fromisoformat
        fast_re = _FAST_FORMATS[m.timestamp_format].fullmatch if m.timestamp_format in _FAST_FORMATS else None
        utc = ts.tz is UTC
        localize = ts._localize
        major = m.amount_unit == "major"
        amount_re = re.compile(r"([0-9]+)(?:\.([0-9]+))?" if major else r"[0-9]+").fullmatch
        if m.decimal_separator != ".":
            amount_re = re.compile(r"(?!)").fullmatch   # every comma-decimal amount takes the detailed path
        pow10 = [10 ** k for k in range(8)]
        true_set, false_set = frozenset(m.fraud_true), frozenset(m.fraud_false)
        status_default, device_default = m.status_default, m.device_type
        explicit = m.merchant_explicit
        status_of, device_of = self._status, self._device

        def ident(x: Any) -> str:
            if type(x) is str:
                s = x.strip()
                if s:
                    return s
            elif type(x) is int:
                return str(x)
            raise _Bail

        def fast(line: int, v: Sequence[Any]) -> tuple[Any, ...]:
            t = v[i_ts]
            if fast_re is not None and type(t) is str and fast_re(t):
                created_at = fromiso(t)
                created_at = created_at.replace(tzinfo=UTC) if utc else localize(created_at)
            else:
                created_at = ts(t)
            customer = ident(v[i_cu])
            merchant = terminal = None
            if explicit:
                merchant = ident(v[i_me])
                if i_te >= 0:
                    te = v[i_te]
                    if not (te is None or (type(te) is str and not te.strip())):
                        terminal = ident(te)
            else:
                terminal = ident(v[i_te])
            if const_mu is None:
                c = v[i_cur]
                if type(c) is not str:
                    raise _Bail
                currency = c.strip().upper()
                mu = currencies[currency]
            else:
                currency, mu = const_currency, const_mu
            a = v[i_am]
            if type(a) is str:
                hit = amount_re(a)
                if hit is None:
                    raise _Bail
                if major:
                    whole, frac = hit.groups()
                    if frac is None:
                        minor = int(whole) * pow10[mu]
                    elif len(frac) <= mu:
                        minor = int(whole) * pow10[mu] + int(frac) * pow10[mu - len(frac)]
                    else:
                        raise _Bail
                else:
                    minor = int(a)
            elif type(a) is int:
                minor = a * pow10[mu] if major else a
            else:
                minor = to_minor(parse_decimal(a), m.amount_unit, currency, mu)
            if minor <= 0 or minor > MAX_MINOR:
                raise _Bail
            is_fraud = None
            if i_fr >= 0:
                f = v[i_fr]
                if type(f) is str:
                    f = f.strip().lower()
                elif type(f) is int or type(f) is bool:
                    f = _label_text(f)
                else:
                    raise _Bail
                if f in true_set:
                    is_fraud = True
                elif f in false_set:
                    is_fraud = False
                else:
                    raise _Bail
            return self._assemble(line, ident(v[i_tx]) if i_tx >= 0 else None, created_at, customer, merchant,
                                  terminal, minor, currency, status_of(v[i_st]) if i_st >= 0 else status_default,
                                  is_fraud, device_of(v[i_dev]) if i_dev >= 0 else device_default)
        return fast

    def _currency(self, value: Any) -> str:
        if _is_missing(value):
            raise ValueProblem("currency is missing")
        code = str(value).strip().upper()
        if code not in self.ref.currencies:
            raise ValueProblem(f"currency {code!r} not in ref.currencies")
        return code

    def _status(self, value: Any) -> str:
        if _is_missing(value):
            return self.m.status_default
        text = _label_text(value)
        if text in self.m.status_values:
            return self.m.status_values[text]
        if text in STATUSES:
            return text
        raise ValueProblem(f"status {value!r} is not one of {', '.join(STATUSES)}"
                           + (f" or {', '.join(self.m.status_values)}" if self.m.status_values else ""))

    def _device(self, value: Any) -> str:
        if _is_missing(value):
            return self.m.device_type
        text = _label_text(value)
        if text not in DEVICE_TYPES:
            raise ValueProblem(f"device type {value!r} is not one of {', '.join(DEVICE_TYPES)}")
        return text


# ----------------------------------------------------------------------------------------- sources
@dataclass
class SourceRow:
    line: int
    values: Sequence[Any] | None     # the mapped fields' raw values, in `Source.fields` order; None: malformed
    problem: str | None = None


class Source:
    """A file's rows: the raw values of the mapped fields, in `fields` order."""

    format: str
    columns: list[str]
    fields: tuple[str, ...]
    total_rows: int | None = None

    def rows(self) -> Iterator[SourceRow]:
        raise NotImplementedError

    def _field_columns(self, mapping: ImportMapping) -> dict[str, str]:
        missing = [(f, c) for f, c in mapping.columns.items() if c not in self.columns]
        if missing:
            named = ", ".join(f"columns.{f}: {c!r}" for f, c in missing)
            raise MappingError(f"{named} not in the file's columns ({', '.join(map(repr, self.columns))})")
        self.fields = tuple(mapping.columns)
        return dict(mapping.columns)


class CsvSource(Source):
    format = "csv"

    def __init__(self, path: Path, mapping: ImportMapping) -> None:
        self.path = path
        self.m = mapping
        with self._open() as f:
            header = next(csv.reader(f, delimiter=mapping.csv_delimiter, quotechar=mapping.csv_quotechar), None)
        if not header:
            raise MappingError(f"{path}: empty file (no header line)")
        self.columns = [h.strip() for h in header]
        wanted = self._field_columns(mapping)
        for f_, c in wanted.items():
            if self.columns.count(c) > 1:
                raise MappingError(f"columns.{f_}: column {c!r} appears {self.columns.count(c)} times in the header")
        self.indices = [self.columns.index(wanted[f_]) for f_ in self.fields]

    def _open(self) -> Any:
        try:
            return self.path.open(newline="", encoding=self.m.csv_encoding)
        except OSError as e:
            raise MappingError(f"{self.path}: cannot read: {e.strerror}") from None

    def rows(self) -> Iterator[SourceRow]:
        width = len(self.columns)
        pick = operator.itemgetter(*self.indices) if len(self.indices) > 1 else (lambda r: (r[self.indices[0]],))
        with self._open() as f:
            reader = csv.reader(f, delimiter=self.m.csv_delimiter, quotechar=self.m.csv_quotechar)
            next(reader)
            last = reader.line_num
            try:
                for rec in reader:
                    line = last + 1            # where the record starts (a quoted field may span lines)
                    last = reader.line_num
                    if len(rec) != width:
                        if rec:                # a blank line is skipped
                            yield SourceRow(line, None, f"the row has {len(rec)} fields, the header {width}")
                        continue
                    yield SourceRow(line, pick(rec))
            except UnicodeDecodeError as e:
                raise MappingError(f"{self.path}: not {self.m.csv_encoding} text after line {last} ({e.reason}); "
                                   "set csv.encoding") from None
            except csv.Error as e:
                yield SourceRow(last, None, f"unreadable CSV: {e}")


class ParquetSource(Source):
    format = "parquet"

    def __init__(self, path: Path, mapping: ImportMapping) -> None:
        import pyarrow.parquet as pq  # type: ignore[import-untyped]

        self.path = path
        try:
            self.file = pq.ParquetFile(str(path))
        except OSError as e:
            raise MappingError(f"{path}: not a readable Parquet file: {e}") from None
        self.columns = list(self.file.schema_arrow.names)
        self.wanted = self._field_columns(mapping)
        self.total_rows = self.file.metadata.num_rows

    def rows(self) -> Iterator[SourceRow]:
        import pyarrow as pa
        import pyarrow.compute as pc  # type: ignore[import-untyped]

        names = list(dict.fromkeys(self.wanted.values()))
        line = 0
        for batch in self.file.iter_batches(batch_size=65536, columns=names):
            by_name = {}
            for name in names:
                col = batch.column(batch.schema.get_field_index(name))
                if pa.types.is_timestamp(col.type) and col.type.unit == "ns":
                    col = pc.cast(col, pa.timestamp("us", col.type.tz), safe=False)  # PostgreSQL keeps µs
                by_name[name] = col.to_pylist()
            for values in zip(*(by_name[self.wanted[f_]] for f_ in self.fields), strict=True):
                line += 1
                yield SourceRow(line, values)


def open_source(path: str | Path, mapping: ImportMapping) -> Source:
    path = Path(path)
    fmt = mapping.format or {".csv": "csv", ".txt": "csv", ".tsv": "csv", ".parquet": "parquet",
                             ".pq": "parquet"}.get(path.suffix.lower())
    if fmt is None:
        raise MappingError(f"format: cannot tell the format of {path.name} from its extension; "
                           "set format: csv or format: parquet")
    if not path.is_file():
        raise MappingError(f"{path}: no such file")
    return CsvSource(path, mapping) if fmt == "csv" else ParquetSource(path, mapping)


# ------------------------------------------------------------------------------------------ report
@dataclass
class ImportReport:
    file: str
    format: str
    dry_run: bool = False
    rows_read: int = 0
    errors: list[RowError] = field(default_factory=list)
    loaded: bool = False
    batch_id: int | None = None
    charges_created: int = 0
    rows_skipped: int = 0
    customers_created: int = 0
    merchants_created: int = 0
    terminals_created: int = 0
    payment_methods_created: int = 0
    balance_transactions_created: int = 0
    labels_created: int = 0
    fraud_labels: int = 0
    amount_minor_by_currency: dict[str, int] = field(default_factory=dict)
    partitions_created: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def rows_per_s(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["ok"] = self.ok
        doc["bad_rows"] = len({e.line for e in self.errors})
        doc["rows_per_s"] = round(self.rows_per_s)
        doc["seconds"] = round(self.seconds, 3)
        return doc


def format_report(report: ImportReport, max_errors: int = 100) -> str:
    unit = "row" if report.format == "parquet" else "line"
    if report.errors:
        bad = len({e.line for e in report.errors})
        out = [f"error: {bad} bad row(s) in {report.file} ({report.rows_read} read); nothing was loaded"]
        for e in report.errors[:max_errors]:
            shown = "" if e.value is None else f" = {e.value!r}"
            out.append(f"  {unit} {e.line}: {e.field}{shown}: {e.reason}")
        if len(report.errors) > max_errors:
            out.append(f"  … and {len(report.errors) - max_errors} more (--max-errors N, or --json for all)")
        return "\n".join(out)
    verb = "would import" if report.dry_run else "imported"
    amounts = ", ".join(f"{c} {v} minor units" for c, v in sorted(report.amount_minor_by_currency.items()))
    lines = [
        f"{verb} {report.file} ({report.format}): {report.rows_read} rows, {report.charges_created} charges created, "
        f"{report.rows_skipped} already imported (skipped)",
        f"  created: {report.customers_created} customers, {report.merchants_created} merchants, "
        f"{report.terminals_created} terminals, {report.payment_methods_created} payment methods, "
        f"{report.balance_transactions_created} balance transactions, {report.labels_created} fraud labels "
        f"({report.fraud_labels} fraud)",
        f"  amounts: {amounts or '-'}",
        f"  {report.seconds:.1f}s, {report.rows_per_s:,.0f} rows/s"
        + (f", batch {report.batch_id}" if report.batch_id is not None else "")
        + (" — dry run: rolled back, nothing was written" if report.dry_run else ""),
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ loading
class _Abort(Exception):
    """Leaves the transaction block (rolling back) after bad rows were found."""


def read_reference(conn: Any) -> Reference:
    currencies = {code.strip(): int(mu) for code, mu in conn.execute(
        "SELECT currency_code, minor_unit FROM ref.currencies")}
    countries = frozenset(r[0].strip() for r in conn.execute("SELECT country_code FROM ref.countries"))
    mccs = frozenset(r[0].strip() for r in conn.execute("SELECT mcc FROM ref.merchant_categories"))
    return Reference(currencies, countries, mccs)


def check_mapping_reference(mapping: ImportMapping, ref: Reference) -> None:
    """The constants of the mapping must exist in ref.*; raises MappingError naming the code."""
    if mapping.currency is not None and mapping.currency not in ref.currencies:
        raise MappingError(f"currency: currency {mapping.currency!r} not in ref.currencies")
    if mapping.country not in ref.countries:
        raise MappingError(f"defaults.country: country {mapping.country!r} not in ref.countries")
    if mapping.mcc not in ref.mccs:
        raise MappingError(f"defaults.mcc: MCC {mapping.mcc!r} not in ref.merchant_categories")


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _Ticker:
    def __init__(self, progress: Progress | None, every_s: float = 2.0) -> None:
        self.progress = progress
        self.every_s = every_s
        self.t0 = self.last = time.monotonic()

    def __call__(self, message: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.progress and (force or now - self.last >= self.every_s):
            self.progress(f"[{now - self.t0:6.1f}s] {message}")
            self.last = now


def import_file(conn: Any, path: str | Path, mapping: ImportMapping, *, dry_run: bool = False,
                seed_reference: bool = False, progress: Progress | None = None) -> ImportReport:
    """Imports one file on `conn` (the application role, idle: not in a transaction): all rows or none.

    Returns the report; `report.errors` lists every bad row (then nothing was written). Raises
    `MappingError` when the mapping does not fit the file or names a code missing from ref.*, and
    `ImportFailed` when the month partitions cannot be added.

    Three steps on this one session, which holds an advisory lock (one import at a time) throughout:
    validate and stage (a transaction; rolled back when a row is bad), add the month partitions (a
    short transaction of their own: creating a partition locks all of payments.charges, which must not
    last as long as the load), load everything from the stage (one transaction). A dry run does the
    first and the last in one transaction that is rolled back, and adds no partition.
    """
    from psycopg import pq

    from lakehouse.oltp.service import platform_fee

    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        raise ValueError("import_file needs a connection that is not inside a transaction")
    path = Path(path)
    source = open_source(path, mapping)
    report = ImportReport(file=str(path), format=source.format, dry_run=dry_run)
    tick = _Ticker(progress)
    t0 = time.monotonic()

    def validate() -> None:
        conn.execute("SET LOCAL timezone = 'UTC'")  # month boundaries in UTC
        if seed_reference:
            from lakehouse.oltp.reference import ensure_reference_data

            ensure_reference_data(conn)
        ref = read_reference(conn)
        check_mapping_reference(mapping, ref)
        _stage(conn, source, RowParser(mapping, ref, platform_fee, source.fields), report, tick)
        _check_stage(conn, mapping, report, tick)
        if report.errors:
            report.errors.sort(key=lambda e: (e.line, FIELDS.index(e.field) if e.field in FIELDS else 99))
            raise _Abort

    def load() -> None:
        conn.execute("SET LOCAL timezone = 'UTC'")
        # The foreign-key checks against the partitioned payments.charges run one cached query per row;
        # PostgreSQL 15's default re-plans it for every row (~140 µs), the generic plan takes ~20 µs.
        conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        _load(conn, path, source.format, mapping, report, tick)

    with conn.transaction():
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (_LOCK,))
    try:
        if dry_run:
            with conn.transaction():
                validate()
                load()
                raise _Abort
        else:
            with conn.transaction():
                validate()
            _ensure_partitions(conn, report, tick)
            with conn.transaction():
                load()
            report.loaded = True
    except _Abort:
        pass
    finally:
        if conn.info.transaction_status == pq.TransactionStatus.IDLE:
            with conn.transaction():
                conn.execute("DROP TABLE IF EXISTS pg_temp.import_stage")
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (_LOCK,))
    report.seconds = time.monotonic() - t0
    return report


class ImportFailed(RuntimeError):
    """The import could not complete for a reason other than its rows (nothing was loaded)."""


def _ensure_partitions(conn: Any, report: ImportReport, tick: _Ticker) -> None:
    """One partition per month that has rows (never a run of empty months), in a short transaction of its
    own; retried when a long transaction elsewhere holds payments.charges. A month whose rows already sit
    in the DEFAULT partition cannot get its own (PostgreSQL refuses): its rows go there too."""
    from psycopg import errors

    attempts = _PARTITION_ATTEMPTS
    for attempt in range(1, attempts + 1):
        try:
            with conn.transaction():
                conn.execute("SET LOCAL timezone = 'UTC'")
                conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(_PARTITION_LOCK_TIMEOUT_MS)))
                made = 0
                for table in ("charges", "balance_transactions"):
                    for (n,) in conn.execute(sql.SQL(
                            "SELECT payments.ensure_month_partitions({table}, mo, mo) FROM (SELECT DISTINCT "
                            "date_trunc('month', created_at)::date AS mo FROM import_stage WHERE NOT skip) x "
                            "WHERE NOT EXISTS (SELECT 1 FROM {default} d WHERE d.created_at >= x.mo "
                            "                  AND d.created_at < x.mo + interval '1 month')").format(
                            table=sql.Literal(table), default=sql.Identifier("payments", f"{table}_default"))):
                        made += int(n)
            report.partitions_created = made
            return
        except errors.LockNotAvailable:
            if attempt == attempts:
                raise ImportFailed("could not add the month partitions: payments.charges stayed locked by other "
                                   f"sessions ({attempts} attempts); nothing was loaded, try again later") from None
            tick(f"payments.charges is busy; adding partitions again in {attempt}s", force=True)
            time.sleep(attempt)


def _stage(conn: Any, source: Source, parser: RowParser, report: ImportReport, tick: _Ticker) -> None:
    conn.execute(
        "CREATE TEMP TABLE import_stage (line bigint NOT NULL, tx_ref text NOT NULL, created_at timestamptz NOT NULL,"
        " customer_ref text NOT NULL, merchant_ref text NOT NULL, terminal_ref text, amount_minor bigint NOT NULL,"
        " currency char(3) NOT NULL, fee_minor bigint NOT NULL, status text NOT NULL, is_fraud boolean,"
        " device_type text NOT NULL, skip boolean NOT NULL DEFAULT false)")   # lives until import_file ends
    total = f" of {source.total_rows:,}" if source.total_rows else ""
    with conn.cursor().copy(f"COPY import_stage ({', '.join(STAGE_COLUMNS)}) FROM STDIN") as copy:
        for row in source.rows():
            report.rows_read += 1
            if row.values is None:
                report.errors.append(RowError(row.line, "row", None, row.problem or "malformed row"))
                continue
            staged, errors = parser.parse(row.line, row.values)
            if errors:
                report.errors.extend(errors)
            else:  # staged even after a bad row, so that the set-level checks report everything at once
                copy.write_row(staged)
            if report.rows_read % 10000 == 0:
                tick(f"validated {report.rows_read:,}{total} rows, {len(report.errors)} problem(s)")
    tick(f"staged: {report.rows_read:,} rows read, {len(report.errors)} problem(s)", force=report.rows_read >= 100_000)
    conn.execute("ANALYZE import_stage")


def _check_stage(conn: Any, mapping: ImportMapping, report: ImportReport, tick: _Ticker) -> None:
    """Set-level checks on the staged rows; marks rows imported earlier (identical) to be skipped."""
    prefix = mapping.ref_prefix

    def raw(ref: str) -> str:
        return ref.removeprefix(prefix)

    if "transaction_id" not in mapping.columns:
        # Identical rows without a source id: number them in file order (row:<content>:<n>), so that
        # re-importing the same file finds the same keys.
        conn.execute("UPDATE import_stage s SET tx_ref = s.tx_ref || ':' || w.n FROM "
                     "(SELECT line, row_number() OVER (PARTITION BY tx_ref ORDER BY line) AS n FROM import_stage) w "
                     "WHERE w.line = s.line")
    else:
        for line, tx_ref, first in conn.execute(
                "SELECT s.line, s.tx_ref, f.first FROM import_stage s JOIN (SELECT tx_ref, min(line) AS first "
                "FROM import_stage GROUP BY tx_ref HAVING count(*) > 1) f USING (tx_ref) WHERE s.line > f.first"):
            report.errors.append(RowError(line, "transaction_id", raw(tx_ref),
                                          f"transaction id {raw(tx_ref)!r} repeats line {first}"))
    if mapping.merchant_explicit and "terminal" in mapping.columns:
        for line, terminal, merchant, first_merchant, first_line in conn.execute(
                "SELECT s.line, s.terminal_ref, s.merchant_ref, f.merchant_ref, f.line FROM import_stage s "
                "JOIN (SELECT DISTINCT ON (terminal_ref) terminal_ref, merchant_ref, line FROM import_stage "
                "      WHERE terminal_ref IS NOT NULL ORDER BY terminal_ref, line) f USING (terminal_ref) "
                "WHERE s.merchant_ref <> f.merchant_ref"):
            report.errors.append(RowError(line, "terminal", raw(terminal),
                                          f"terminal {raw(terminal)!r} belongs to merchant {raw(first_merchant)!r} "
                                          f"(line {first_line}), not {raw(merchant)!r}"))
        for line, terminal, merchant, existing in conn.execute(
                "SELECT min(s.line), s.terminal_ref, s.merchant_ref, coalesce(m.external_ref, "
                "       'merchant_id ' || m.merchant_id) FROM import_stage s "
                "JOIN payments.terminals t ON t.external_ref = s.terminal_ref "
                "JOIN payments.merchants m ON m.merchant_id = t.merchant_id "
                "WHERE m.external_ref IS DISTINCT FROM s.merchant_ref GROUP BY 2, 3, 4"):
            report.errors.append(RowError(line, "terminal", raw(terminal),
                                          f"terminal {raw(terminal)!r} already exists under merchant "
                                          f"{raw(existing)!r}, not {raw(merchant)!r}"))
    # Rows imported by an earlier batch: identical -> skipped; different -> an error (never overwritten).
    for line, tx_ref, charge_id, diffs in conn.execute(
            "SELECT s.line, s.tx_ref, c.charge_id, concat_ws('; ',"
            "  CASE WHEN c.created_at <> s.created_at THEN 'timestamp ' || c.created_at || ' <> ' || s.created_at END,"
            "  CASE WHEN c.amount_minor <> s.amount_minor"
            "       THEN 'amount_minor ' || c.amount_minor || ' <> ' || s.amount_minor END,"
            "  CASE WHEN c.currency_code <> s.currency THEN 'currency ' || c.currency_code || ' <> ' || s.currency END,"
            "  CASE WHEN cu.external_ref IS DISTINCT FROM s.customer_ref"
            "       THEN 'customer ' || coalesce(cu.external_ref, '?') || ' <> ' || s.customer_ref END) "
            "FROM import_stage s JOIN payments.imported_charges ic ON ic.source_ref = s.tx_ref "
            "JOIN payments.charges c ON c.charge_id = ic.charge_id AND c.created_at = ic.charge_created_at "
            "JOIN payments.customers cu ON cu.customer_id = c.customer_id"):
        if diffs:
            report.errors.append(RowError(line, "transaction_id", raw(tx_ref),
                                          f"transaction id {raw(tx_ref)!r} was imported before as charge {charge_id} "
                                          f"with different data ({diffs})"))
    cur = conn.execute("UPDATE import_stage s SET skip = true FROM payments.imported_charges ic "
                       "WHERE ic.source_ref = s.tx_ref")
    report.rows_skipped = cur.rowcount
    tick("checked the staged rows", force=report.rows_read >= 100_000)


def _load(conn: Any, path: Path, fmt: str, mapping: ImportMapping, report: ImportReport, tick: _Ticker) -> None:
    big = report.rows_read >= 100_000
    m = mapping
    p = {"country": m.country, "mcc": m.mcc, "kind": m.terminal_kind, "explicit": m.merchant_explicit,
         "failure_code": m.failure_code, "salt": _FINGERPRINT_SALT}
    ex = conn.execute

    row = ex("SELECT count(*) FROM import_stage WHERE NOT skip").fetchone()
    to_create = int(row[0])
    for currency, total in ex("SELECT currency, sum(amount_minor) FROM import_stage WHERE NOT skip "
                              "GROUP BY currency ORDER BY currency"):
        report.amount_minor_by_currency[currency.strip()] = int(total)

    # Parties, found by external_ref or created. A terminal that exists keeps its merchant; the merchant
    # derived for a terminal (per terminal, or defaults.merchant) is only created for new terminals.
    report.merchants_created = ex(
        "INSERT INTO payments.merchants (external_ref, name, country_code, mcc, default_currency, created_at) "
        "SELECT merchant_ref, 'Imported merchant ' || merchant_ref, %(country)s, %(mcc)s, "
        "       (array_agg(currency ORDER BY created_at, line))[1], min(created_at) "
        "FROM import_stage s WHERE NOT skip AND (%(explicit)s OR s.terminal_ref IS NULL OR NOT EXISTS "
        "      (SELECT 1 FROM payments.terminals t WHERE t.external_ref = s.terminal_ref)) "
        "GROUP BY merchant_ref ORDER BY min(created_at), merchant_ref "
        "ON CONFLICT (external_ref) DO NOTHING", p).rowcount
    report.terminals_created = ex(
        "INSERT INTO payments.terminals (external_ref, merchant_id, kind, created_at) "
        "SELECT s.terminal_ref, min(mer.merchant_id), %(kind)s, min(s.created_at) FROM import_stage s "
        "JOIN payments.merchants mer ON mer.external_ref = s.merchant_ref "
        "WHERE NOT s.skip AND s.terminal_ref IS NOT NULL GROUP BY s.terminal_ref "
        "ORDER BY min(s.created_at), s.terminal_ref ON CONFLICT (external_ref) DO NOTHING", p).rowcount
    report.customers_created = ex(
        "INSERT INTO payments.customers (external_ref, email, full_name, country_code, created_at) "
        "SELECT customer_ref, 'customer-' || left(md5(customer_ref), 16) || '@import.invalid', "
        "       'Imported customer ' || customer_ref, %(country)s, min(created_at) "
        "FROM import_stage WHERE NOT skip GROUP BY customer_ref ORDER BY min(created_at), customer_ref "
        "ON CONFLICT (external_ref) DO NOTHING", p).rowcount
    tick("parties created", force=big)

    # One placeholder card per customer for imported history (reused by later imports).
    ex("CREATE TEMP TABLE import_customers ON COMMIT DROP AS "
       "SELECT c.customer_id, c.external_ref, x.first_at, "
       "       translate(left(encode(sha256(convert_to(%(salt)s || c.external_ref, 'UTF8')), 'hex'), 32),"
       "                 '0123456789abcdef', 'abcdefghijklmnop') AS fingerprint "
       "FROM (SELECT customer_ref, min(created_at) AS first_at FROM import_stage WHERE NOT skip "
       "      GROUP BY customer_ref) x JOIN payments.customers c ON c.external_ref = x.customer_ref", p)
    need = ex("SELECT ic.customer_id, ic.fingerprint, ic.first_at FROM import_customers ic WHERE NOT EXISTS ("
              " SELECT 1 FROM payments.payment_methods pm JOIN payments.cards cd USING (payment_method_id) "
              " WHERE pm.customer_id = ic.customer_id AND cd.fingerprint = ic.fingerprint) "
              "ORDER BY ic.first_at, ic.customer_id").fetchall()
    if need:

        ids, fps, firsts = (list(col) for col in zip(*need, strict=True))
        tokens = [new_token() for _ in ids]
        cur = ex(
            "WITH need AS (SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::timestamptz[]) "
            "              AS n(customer_id, fingerprint, token, first_at)), "
            "pm AS (INSERT INTO payments.payment_methods (customer_id, kind, created_at) "
            "       SELECT customer_id, 'card', first_at FROM need ORDER BY first_at, customer_id "
            "       RETURNING payment_method_id, customer_id) "
            "INSERT INTO payments.cards (payment_method_id, token, brand, bin, last4, exp_month, exp_year, fingerprint,"
            " issuing_country) SELECT pm.payment_method_id, n.token, %s, %s, %s, %s, %s, n.fingerprint, %s "
            "FROM pm JOIN need n USING (customer_id)",
            (ids, fps, tokens, firsts, IMPORT_CARD["brand"], IMPORT_CARD["bin"], IMPORT_CARD["last4"],
             IMPORT_CARD["exp_month"], IMPORT_CARD["exp_year"], m.country))
        report.payment_methods_created = cur.rowcount

    # Every staged row resolved to ids, charge ids drawn in time order.
    ex("CREATE TEMP TABLE import_resolved ON COMMIT DROP AS "
       "SELECT nextval('payments.charges_charge_id_seq') AS charge_id, x.* FROM ("
       " SELECT s.*, ic.customer_id, coalesce(t.merchant_id, mer.merchant_id) AS merchant_id, t.terminal_id,"
       "        pmc.payment_method_id "
       " FROM import_stage s JOIN import_customers ic ON ic.external_ref = s.customer_ref "
       " JOIN LATERAL (SELECT min(pm.payment_method_id) AS payment_method_id FROM payments.payment_methods pm "
       "               JOIN payments.cards cd USING (payment_method_id) "
       "               WHERE pm.customer_id = ic.customer_id AND cd.fingerprint = ic.fingerprint) pmc ON true "
       " LEFT JOIN payments.terminals t ON t.external_ref = s.terminal_ref "
       " LEFT JOIN payments.merchants mer ON mer.external_ref = s.merchant_ref "
       " WHERE NOT s.skip ORDER BY s.created_at, s.line) x")
    resolved = ex("SELECT count(*), count(merchant_id), count(payment_method_id) FROM import_resolved").fetchone()
    if tuple(resolved) != (to_create, to_create, to_create):
        raise RuntimeError(f"import: resolved {tuple(resolved)} of {to_create} staged rows (a bug)")

    report.batch_id = int(ex(
        "INSERT INTO payments.import_batches (source_file, source_sha256, source_format, mapping, rows_read,"
        " charges_created, rows_skipped) VALUES (%s, %s, %s, %s::jsonb, %s, %s, %s) RETURNING batch_id",
        (str(path), _sha256_file(path), fmt, json.dumps(mapping.as_json()), report.rows_read, to_create,
         report.rows_skipped)).fetchone()[0])

    report.charges_created = ex(
        "INSERT INTO payments.charges (charge_id, created_at, merchant_id, terminal_id, customer_id, payment_method_id,"
        " amount_minor, currency_code, status, captured_amount_minor, failure_code, device_type, authorized_at,"
        " captured_at, failed_at, canceled_at) "
        "SELECT charge_id, created_at, merchant_id, terminal_id, customer_id, payment_method_id, amount_minor,"
        " currency, status, CASE WHEN status = 'captured' THEN amount_minor ELSE 0 END,"
        " CASE WHEN status = 'failed' THEN %(failure_code)s END, device_type,"
        " CASE WHEN status IN ('authorized', 'captured') THEN created_at END,"
        " CASE WHEN status = 'captured' THEN created_at END, CASE WHEN status = 'failed' THEN created_at END,"
        " CASE WHEN status = 'canceled' THEN created_at END "
        "FROM import_resolved ORDER BY charge_id", p).rowcount
    tick(f"{report.charges_created:,} charges inserted", force=big)
    report.balance_transactions_created = ex(
        "INSERT INTO payments.balance_transactions (created_at, merchant_id, kind, charge_id, charge_created_at,"
        " amount_minor, fee_minor, net_minor, currency_code) "
        "SELECT created_at, merchant_id, 'charge', charge_id, created_at, amount_minor, fee_minor,"
        " amount_minor - fee_minor, currency FROM import_resolved WHERE status = 'captured' ORDER BY charge_id"
    ).rowcount
    if "fraud" in m.columns:
        report.labels_created = ex(
            "INSERT INTO labels.fraud_ground_truth (charge_id, charge_created_at, is_fraud, scenario, source) "
            "SELECT charge_id, created_at, is_fraud, CASE WHEN is_fraud THEN 'imported' END, 'import' "
            "FROM import_resolved ORDER BY charge_id").rowcount
        report.fraud_labels = int(ex("SELECT count(*) FROM import_resolved WHERE is_fraud").fetchone()[0])
    ex("INSERT INTO payments.imported_charges (source_ref, charge_id, charge_created_at, batch_id, source_line) "
       "SELECT tx_ref, charge_id, created_at, %s, line FROM import_resolved ORDER BY charge_id", (report.batch_id,))
    tick("ledger, labels and provenance written", force=big)


def run_import(settings: Any, path: str | Path, mapping_path: str | Path, *, dry_run: bool = False,
               seed_reference: bool = False, progress: Progress | None = None) -> ImportReport:
    """`lakehouse oltp import`: loads the mapping, connects as the application role, imports."""
    from lakehouse.oltp.db import connect

    mapping = load_mapping(mapping_path)
    with connect(settings) as conn:
        return import_file(conn, path, mapping, dry_run=dry_run, seed_reference=seed_reference, progress=progress)
