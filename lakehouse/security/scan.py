"""The silver scan: proof that no raw e-mail, phone, name or card number is in any silver file.

Grep on the bytes of a Parquet file proves nothing (pages are compressed and dictionary-encoded), so
the scan decodes every file:

- every Parquet file under the root (data files, Change Data Feed files, the delete markers, the log's
  checkpoints and sidecars), read with pyarrow row group by row group, every text-like value (strings;
  binaries decoded as Latin-1; inside structs, lists and maps too);
- every `_delta_log/*.json` commit and `*.crc` checksum file, parsed: Delta's per-file statistics
  (`stats`: min/max values of the first columns, a JSON document inside the JSON) are parsed in turn,
  and so are the strings of the commit info (a MERGE condition can hold a literal).

In each string it looks for the given needles (known plaintext values: the customers' e-mails, names,
phones, test card numbers; case-insensitive, and a phone or card number also as its digits alone), for
any card number (13-19 digits passing Luhn, the rule of lakehouse.security.redact) and for any e-mail
address (UUIDs are not card numbers: masked first). Numbers (ids, sizes, epoch milliseconds in the log)
are not text and are not scanned.

A finding names the file, the column (or the JSON path in the log) and the kind, with the number of
values and one example masked (first character and last two kept): the scan never prints a value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
from pyarrow import fs as pafs

from lakehouse.common.config import Settings
from lakehouse.security.redact import find_emails, find_pans

KIND_NEEDLE, KIND_PAN, KIND_EMAIL = "known_value", "card_number", "email"
# A UUID (event ids; the data file names in Delta's log) is never a card number, although a run of its
# all-digit groups can be 13-19 digits that pass Luhn: masked before the card-number check.
_UUID_RE = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
                      r"(?![0-9A-Fa-f])")
# Cheap prefilter of a value before the exact checks: a long digit run with separators, or an "@".
_PREFILTER = r"[0-9][0-9 -]{11,}[0-9]|@"
_TEXT_TYPES = (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary, pa.types.is_large_binary)


@dataclass(frozen=True)
class Finding:
    file: str          # relative to the scanned root
    column: str        # column path in a Parquet file, JSON path in a log file
    kind: str          # known_value | card_number | email
    values: int        # how many values matched
    example: str       # one match, masked

    def __str__(self) -> str:
        return f"{self.file}: {self.column}: {self.kind} ×{self.values} (e.g. {self.example})"


def mask(value: str) -> str:
    """First character and last two kept, the rest starred (length kept)."""
    return "*" * len(value) if len(value) < 6 else value[0] + "*" * (len(value) - 3) + value[-2:]


class _Matcher:
    """The exact checks of one string: needles, card numbers, e-mail addresses."""

    def __init__(self, needles: Iterable[str]) -> None:
        texts: set[str] = set()
        numbers: set[str] = set()     # phones and card numbers, also found as digits between separators
        for n in needles:
            n = n.strip()
            if not n:
                continue
            texts.add(n.lower())
            digits = re.sub(r"[^0-9]", "", n)
            if len(digits) >= 7 and not re.search(r"[A-Za-z@]", n):
                numbers.add(digits)
        self.texts, self.numbers = sorted(texts), sorted(numbers)
        number_patterns = ["[ ().+-]*".join(d) for d in self.numbers]
        self.prefilter = "|".join([_PREFILTER, *(re.escape(t) for t in self.texts), *number_patterns])

    def matches(self, text: str) -> Iterator[tuple[str, str]]:
        lowered, digits_only = text.lower(), re.sub(r"[ ().+-]", "", text)
        needle = next((t for t in self.texts if t in lowered), None) or next(
            (d for d in self.numbers if d in digits_only), None)
        if needle is not None:
            yield KIND_NEEDLE, needle
        for pan in find_pans(_UUID_RE.sub(" ", text)):
            yield KIND_PAN, pan
        for email in find_emails(text):
            yield KIND_EMAIL, email


class _Findings:
    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, str], list[Any]] = {}

    def add(self, file: str, column: str, kind: str, value: str) -> None:
        entry = self.counts.setdefault((file, column, kind), [0, mask(value)])
        entry[0] += 1

    def result(self) -> list[Finding]:
        return [Finding(f, c, k, n, ex) for (f, c, k), (n, ex) in sorted(self.counts.items())]


# --- Parquet ------------------------------------------------------------------------------------

def _text_leaves(name: str, arr: pa.Array) -> Iterator[tuple[str, pa.Array]]:
    """(column path, array) of every text-like leaf of `arr` (structs, lists, maps, dictionaries opened)."""
    t = arr.type
    if pa.types.is_struct(t):
        for i in range(t.num_fields):
            yield from _text_leaves(f"{name}.{t.field(i).name}", arr.field(i))
    elif pa.types.is_map(t):
        yield from _text_leaves(f"{name}.key", arr.keys)
        yield from _text_leaves(f"{name}.value", arr.items)
    elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        yield from _text_leaves(f"{name}[]", arr.flatten())
    elif pa.types.is_dictionary(t):
        yield from _text_leaves(name, arr.dictionary_decode())
    elif any(is_type(t) for is_type in _TEXT_TYPES):
        yield name, arr


def _as_text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("latin-1")


def _scan_parquet(filesystem: pafs.FileSystem, path: str, rel: str, matcher: _Matcher, out: _Findings) -> None:
    with filesystem.open_input_file(path) as f:
        parquet = pq.ParquetFile(f)
        for batch in parquet.iter_batches(batch_size=65536):
            for name, column in zip(batch.schema.names, batch.columns, strict=True):
                for leaf, arr in _text_leaves(name, column):
                    candidates = arr.filter(pc.fill_null(pc.match_substring_regex(arr, matcher.prefilter,
                                                                                  ignore_case=True), False))
                    for value in candidates.to_pylist():
                        for kind, match in matcher.matches(_as_text(value)):
                            out.add(rel, leaf, kind, match)


# --- the Delta log (JSON) -----------------------------------------------------------------------

def _json_strings(node: Any, path: str) -> Iterator[tuple[str, str]]:
    """(JSON path, string) of every string in `node`; a `stats` string is parsed and walked too."""
    if isinstance(node, dict):
        for key, value in node.items():
            child = f"{path}.{key}" if path else key
            if key == "stats" and isinstance(value, str):
                try:
                    yield from _json_strings(json.loads(value), child)
                    continue
                except ValueError:
                    pass
            yield from _json_strings(value, child)
    elif isinstance(node, list):
        for value in node:
            yield from _json_strings(value, f"{path}[]")
    elif isinstance(node, str):
        yield path, node


def _scan_json_lines(filesystem: pafs.FileSystem, path: str, rel: str, matcher: _Matcher, out: _Findings) -> None:
    with filesystem.open_input_stream(path) as f:
        text = f.read().decode("utf-8", errors="replace")
    for line in text.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            doc = line          # not JSON: scanned as one string
        for json_path, value in _json_strings(doc, ""):
            for kind, match in matcher.matches(value):
                out.add(rel, json_path, kind, match)


# --- the walk -----------------------------------------------------------------------------------

def silver_root(settings: Settings) -> str:
    """Where the silver tables are stored (a local path or a URI)."""
    return f"{settings.lakehouse_dir.rstrip('/')}/silver"


def scan_silver(root: str | Settings, needles: Iterable[str] = ()) -> list[Finding]:
    """Every finding under `root` (a directory of Delta tables, or the settings: their silver root).
    An empty list is the proof."""
    base = silver_root(root) if isinstance(root, Settings) else str(root)
    filesystem, base_path = pafs.FileSystem.from_uri(base) if "://" in base else (pafs.LocalFileSystem(), base)
    matcher, out = _Matcher(needles), _Findings()
    infos = filesystem.get_file_info(pafs.FileSelector(base_path, recursive=True, allow_not_found=True))
    for info in sorted(infos, key=lambda i: i.path):
        if info.type != pafs.FileType.File:
            continue
        rel = info.path[len(base_path.rstrip("/")) + 1:]
        in_log = "/_delta_log/" in f"/{rel}"
        if info.base_name.endswith(".parquet"):     # data, CDF, markers, checkpoints (their `stats` as text)
            _scan_parquet(filesystem, info.path, rel, matcher, out)
        elif in_log and info.base_name.endswith((".json", ".crc")):
            _scan_json_lines(filesystem, info.path, rel, matcher, out)
    return out.result()
