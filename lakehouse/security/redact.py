"""Redaction of free text (charge descriptions, feedback, log messages) before it reaches silver.

Two things are removed from free text:

- card numbers: 13-19 digits, optionally split into groups by single spaces or dashes, that pass the
  Luhn check -> `[REDACTED_PAN]`;
- e-mail addresses -> `[REDACTED_EMAIL]`.

Digit runs that are not Luhn-valid card numbers (order numbers, phone numbers, dates) stay.

How a card number is found. A *run* is a maximal sequence of digit groups joined by single spaces
or dashes (`4111 1111 1111 1111 12` is one run of five groups). Every contiguous window of whole
groups whose digits number 13-19 is a candidate, and a candidate that passes Luhn is a card number.
Windows rather than the whole run, because a card is often followed by more digits
(`4111111111111111 12/27`, `… 1111 cvv 123`): the whole run is not Luhn-valid, the card inside it is.
Whole groups only, because cutting inside a group would flag a Luhn-valid slice of almost any long
order number (each slice passes Luhn one time in ten).

Why built-in SQL functions and not a UDF: the Luhn sum is an `aggregate` over `sequence`, the windows
are `transform` / `filter` over the groups of each run, and each found card is removed by a
`regexp_replace` whose pattern is built from its groups (digits, spaces and dashes are literal in a
Java regex, so no escaping is needed). It stays in the JVM (no Python worker, no Arrow round trip) and
a row without a digit run costs one `regexp_extract_all`. The same rule in Python (`find_pans`,
`redact_text`) serves the silver scan and the tests; a test checks that both agree.

Nothing here logs or raises with the text it is given.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pyspark.sql import Column
from pyspark.sql import functions as F

from lakehouse.oltp.vault import luhn_valid

REDACTED_PAN = "[REDACTED_PAN]"
REDACTED_EMAIL = "[REDACTED_EMAIL]"

PAN_MIN_DIGITS, PAN_MAX_DIGITS = 13, 19
# A maximal run of digit groups joined by one space or dash (same text in Java and Python regex).
DIGIT_RUN = r"(?<![0-9])[0-9]+(?:[ -][0-9]+)*(?![0-9])"
GROUP_SEPARATOR = r"[ -]"
# Local part, @, dot-separated domain labels, a letters-only top-level domain.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
EMAIL = rf"[A-Za-z0-9._%+-]+@{_LABEL}(?:\.{_LABEL})*\.[A-Za-z]{{2,}}"

_DIGIT_RUN_RE = re.compile(DIGIT_RUN)
_EMAIL_RE = re.compile(EMAIL)


# --- Python (driver side: the scan, tests) -------------------------------------------------------

def _pan_windows(run: str) -> Iterator[tuple[int, int]]:
    """(start, end) offsets inside `run` of every whole-group window that is a Luhn-valid card number,
    longest first from each start."""
    groups = [(m.start(), m.end()) for m in re.finditer(r"[0-9]+", run)]
    for i in range(len(groups)):
        for j in range(len(groups) - 1, i - 1, -1):
            digits = "".join(run[s:e] for s, e in groups[i:j + 1])
            if PAN_MIN_DIGITS <= len(digits) <= PAN_MAX_DIGITS and luhn_valid(digits):
                yield groups[i][0], groups[j][1]


def pan_spans(text: str) -> list[tuple[int, int]]:
    """Non-overlapping (start, end) spans of the card numbers in `text`, in order."""
    spans: list[tuple[int, int]] = []
    for run in _DIGIT_RUN_RE.finditer(text):
        for start, end in _pan_windows(run.group()):
            if not spans or run.start() + start >= spans[-1][1]:
                spans.append((run.start() + start, run.start() + end))
    return spans


def find_pans(text: str) -> list[str]:
    """The card numbers in `text`, digits only (for the caller to mask, never to print)."""
    return [re.sub(r"[^0-9]", "", text[s:e]) for s, e in pan_spans(text)]


def find_emails(text: str) -> list[str]:
    """The e-mail addresses in `text`."""
    return _EMAIL_RE.findall(text)


def redact_text(text: str) -> str:
    """Python twin of `redact_free_text`: e-mails, then card numbers, replaced by their markers."""
    text = _EMAIL_RE.sub(REDACTED_EMAIL, text)
    for start, end in reversed(pan_spans(text)):
        text = text[:start] + REDACTED_PAN + text[end:]
    return text


# --- Spark (executor side: silver) ---------------------------------------------------------------

def luhn_valid_col(digits: Column) -> Column:
    """True when the all-digit string `digits` passes the Luhn check (the caller checks the length).

    From the right, every second digit is doubled (minus 9 above 9), and the sum must end in 0."""
    n = F.length(digits)

    def add(acc: Column, i: Column) -> Column:
        d = F.substring(digits, n - i + 1, 1).cast("int")
        doubled = F.when(d > 4, d * 2 - 9).otherwise(d * 2)
        return acc + F.when(i % 2 == 0, doubled).otherwise(d)

    return F.aggregate(F.sequence(F.lit(1), n), F.lit(0), add) % 10 == 0


def _pan_patterns(run: Column) -> Column:
    """ARRAY<STRING>: one regex per Luhn-valid whole-group window of `run`, longest first per start.
    Each pattern is the window's groups joined by `[ -]`, fenced so that it never matches inside a
    longer digit group."""
    groups = F.split(run, GROUP_SEPARATOR)
    n = F.size(groups)

    def windows_from(start: Column) -> Column:
        lengths = F.sequence(n - start + 1, F.lit(1), F.lit(-1))
        windows = F.transform(lengths, lambda length: F.slice(groups, start, length))

        def is_pan(window: Column) -> Column:
            digits = F.array_join(window, "")
            long_enough = F.length(digits).between(PAN_MIN_DIGITS, PAN_MAX_DIGITS)
            return long_enough & luhn_valid_col(digits)

        pans = F.filter(windows, is_pan)
        return F.transform(pans, lambda w: F.concat(
            F.lit("(?<![0-9])"), F.array_join(w, GROUP_SEPARATOR), F.lit("(?![0-9])")))

    return F.flatten(F.transform(F.sequence(F.lit(1), n), windows_from))


def redact_free_text(text: Column) -> Column:
    """STRING -> STRING: `text` with e-mail addresses replaced by `[REDACTED_EMAIL]` and card numbers
    (13-19 Luhn-valid digits, groups split by spaces or dashes allowed) by `[REDACTED_PAN]`.
    Other digit runs stay; NULL stays NULL."""
    no_emails = F.regexp_replace(text, EMAIL, REDACTED_EMAIL)
    runs = F.regexp_extract_all(no_emails, F.lit(DIGIT_RUN), 0)
    long_runs = F.filter(runs, lambda r: F.length(F.regexp_replace(r, GROUP_SEPARATOR, "")) >= PAN_MIN_DIGITS)
    patterns = F.flatten(F.transform(long_runs, _pan_patterns))
    return F.aggregate(patterns, no_emails, lambda acc, p: F.regexp_replace(acc, p, F.lit(REDACTED_PAN)))
