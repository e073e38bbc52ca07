"""security.redact: card numbers and e-mails out of free text, exact strings, Spark and Python agree.

Test card numbers are made with the vault's Luhn check digit (test ranges, not real cards). No
assertion here prints an input: a failure shows the texts with every 13+ digit run masked.
"""

from __future__ import annotations

import re

import pytest
from pyspark.sql import functions as F

from lakehouse.oltp.vault import luhn_check_digit, luhn_valid
from lakehouse.security.redact import find_emails, find_pans, redact_free_text, redact_text


def card(prefix: str) -> str:
    return prefix + luhn_check_digit(prefix)


VISA = card("411111111111111")           # 16 digits
AMEX = card("37828224631000")            # 15
VISA_13 = card("422222222222")           # 13
LONG_19 = card("601100099013942412")     # 19
SHORT_12 = card("12345678901")           # Luhn-valid but 12 digits: not a card
ORDER_16 = "1234567812345678"            # 16 digits, not Luhn-valid


def grouped(pan: str, sep: str, sizes: tuple[int, ...]) -> str:
    parts, i = [], 0
    for size in sizes:
        parts.append(pan[i:i + size])
        i += size
    return sep.join(parts)


# (input, expected); ids say what each case is, so that no input appears in a test name.
CASES = [
    ("plain 16", f"paid with {VISA} thanks", "paid with [REDACTED_PAN] thanks"),
    ("spaced 4x4", f"card {grouped(VISA, ' ', (4, 4, 4, 4))} ok", "card [REDACTED_PAN] ok"),
    ("dashed 4x4", f"card {grouped(VISA, '-', (4, 4, 4, 4))}, exp", "card [REDACTED_PAN], exp"),
    ("amex 4-6-5", f"amex {grouped(AMEX, ' ', (4, 6, 5))}", "amex [REDACTED_PAN]"),
    ("13 digits", f"old {VISA_13}.", "old [REDACTED_PAN]."),
    ("19 digits", f"({LONG_19})", "([REDACTED_PAN])"),
    ("touching letters", f"card:{VISA}x", "card:[REDACTED_PAN]x"),
    ("card then expiry", f"{VISA} 12 27 cvv 123", "[REDACTED_PAN] 12 27 cvv 123"),
    ("card then spaced code", f"{grouped(VISA, ' ', (4, 4, 4, 4))} 1227", "[REDACTED_PAN] 1227"),
    ("two cards", f"{VISA} and {AMEX}", "[REDACTED_PAN] and [REDACTED_PAN]"),
    ("order number stays", f"order {ORDER_16}", f"order {ORDER_16}"),
    ("12 digit Luhn stays", f"ref {SHORT_12}", f"ref {SHORT_12}"),
    ("card inside a longer group stays", f"ref 9{VISA}123", f"ref 9{VISA}123"),
    ("phone stays", "call +44 20 7946 0958 or +1-555-010-9999", "call +44 20 7946 0958 or +1-555-010-9999"),
    ("timestamp stays", "at 2024-01-05 12:30:00", "at 2024-01-05 12:30:00"),
    ("email", "write to Jane.Doe+tag@mail.example.co.uk please", "write to [REDACTED_EMAIL] please"),
    ("two emails", "a@b.io,c_d@e-f.com", "[REDACTED_EMAIL],[REDACTED_EMAIL]"),
    ("not an email", "user@localhost and @handle", "user@localhost and @handle"),
    ("email and card", f"{VISA} from x@y.org", "[REDACTED_PAN] from [REDACTED_EMAIL]"),
    ("card in email local part", f"{VISA}@y.org", "[REDACTED_EMAIL]"),
    ("empty", "", ""),
]


def mask(text: str | None) -> str | None:
    return None if text is None else re.sub(r"[0-9][0-9 -]{11,}[0-9]", "<digits>", text)


def check(actual: list[str | None], expected: list[str | None]) -> None:
    """Compares without ever printing a digit run long enough to be a card number."""
    if actual != expected:
        diffs = [(CASES[i][0] if i < len(CASES) else "null", mask(a), mask(e))
                 for i, (a, e) in enumerate(zip(actual, expected, strict=True)) if a != e]
        pytest.fail(f"redaction differs (case, actual, expected; long digit runs masked): {diffs}")


def test_test_numbers_are_what_the_cases_say() -> None:
    assert all(luhn_valid(p) for p in (VISA, AMEX, VISA_13, LONG_19, SHORT_12))
    assert [len(p) for p in (VISA, AMEX, VISA_13, LONG_19, SHORT_12)] == [16, 15, 13, 19, 12]
    assert not luhn_valid(ORDER_16)
    # the digits that follow the card in "card then …" do not make a longer valid card
    assert not any(luhn_valid(VISA + tail) for tail in ("12", "1227", "123"))


def test_redact_free_text_gives_the_exact_strings(spark) -> None:
    rows = [(i, text) for i, (_, text, _) in enumerate(CASES)] + [(len(CASES), None)]
    df = spark.createDataFrame(rows, "i int, text string")
    out = df.select("i", redact_free_text(F.col("text")).alias("redacted")).orderBy("i").collect()
    check([r["redacted"] for r in out], [expected for _, _, expected in CASES] + [None])


def test_python_twin_gives_the_same_strings() -> None:
    check([redact_text(text) for _, text, _ in CASES], [expected for _, _, expected in CASES])


def test_find_pans_and_emails() -> None:
    text = f"{grouped(VISA, '-', (4, 4, 4, 4))} 12 27, {AMEX}, {ORDER_16}, a.b@c.de"
    assert find_pans(text) == [VISA, AMEX]
    assert find_emails(text) == ["a.b@c.de"]
    assert find_pans(f"9{VISA}123 {SHORT_12}") == []
