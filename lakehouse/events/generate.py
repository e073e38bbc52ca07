"""App / web / mobile events generated from the simulated payments — pure functions, no Kafka.

Every event is derived from the simulator's world and history (or from a live payment), so the
streams agree with the OLTP database:

- every charge made online (device mobile, desktop or tablet) has one checkout session: session_start,
  landing -> product page views, an add-to-cart click, cart and checkout page views, the pay click
  just before the charge's `created_at`, session_end after the outcome;
- every failed charge has an ERROR log (`checkout-api`) with its decline code and charge id a few
  milliseconds after `failed_at`; captured, canceled, refunded and disputed charges have INFO / WARN logs;
- some customers leave feedback (reviews, survey answers, free text) after a purchase, a refund, a
  failed payment or before a dispute, with ratings that drop after refunds;
- plus sessions that end without a checkout (abandoned funnels, anonymous browsing) and background logs.

Determinism: every anchor (a charge, a refund, an abandoned session, a day of background logs, …)
draws from its own `random.Random` keyed by the seed and the anchor, and event ids are uuid5 of
(seed, anchor, index), so the same seed, end date and world give byte-identical events. The stream is
ordered by event time (ties: anchor order, then index), with bounded memory (about two days of
events in flight).

Noise: with `noise` = p, exactly floor(N * p) of N events (p resolved to parts per million, spread
evenly) are corrupted, cycling through `NOISE_KINDS`; `planned_noise(N, p)` gives the counts per kind.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import heapq
import itertools
import json
import random
import re
import threading
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from lakehouse.events import FAMILIES, SCHEMA_VERSION
from lakehouse.oltp import reference
from lakehouse.oltp.pan_scan import contains_pan
from lakehouse.oltp.simulator import (
    BINS,
    DEVICES,
    DIURNAL,
    TABLE_COLUMNS,
    WEEKDAY,
    History,
    SimConfig,
    World,
    poisson,
)
from lakehouse.oltp.vault import letters_hex, luhn_check_digit

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
UNKNOWN_VERSION = 99
NOISE_KINDS = ("not_json", "truncated_json", "unknown_version", "missing_event_id")
ONLINE_DEVICES = frozenset(DEVICES)          # mobile, desktop, tablet: the channels with a browsing session
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:payments-lakehouse:events")
LEAD = dt.timedelta(hours=1)                 # no event precedes its anchor by more than this
PPM = 1_000_000

# Traffic that does not end in a payment
ABANDONED_PER_PURCHASE = 0.6                 # abandoned checkout funnels per purchase (per customer-day rate)
ANONYMOUS_PER_CUSTOMER_DAY = 0.05            # anonymous browsing sessions per customer and day
BACKGROUND_PER_HOUR_WEIGHT = 0.8             # background log lines per hour per DIURNAL weight
LIVE_EXTRA_SHARE = 0.3                       # live: chance per payment of an abandoned / anonymous session

FUNNEL = ("landing", "product", "add_to_cart", "cart", "checkout", "pay")
CLICKS = {"add_to_cart": ("product", {"id": "add-to-cart", "text": "Add to cart"}),
          "pay": ("checkout", {"id": "pay-button", "text": "Pay now"})}
HUMAN_GAPS = {"product": (4.0, 90.0), "add_to_cart": (3.0, 60.0), "cart": (1.0, 8.0), "checkout": (3.0, 45.0),
              "pay": (8.0, 120.0)}      # seconds before each step
BOT_GAP = (0.1, 0.8)                    # card-testing scripts
REFERRERS = (None, "https://www.google.com/", "https://www.instagram.com/", "https://mail.example.com/newsletter",
             "https://deals.example.net/")
OS_BY_DEVICE = {"mobile": ("iOS", "Android"), "desktop": ("Windows", "macOS", "Linux"), "tablet": ("iPadOS", "Android")}
APP_VERSIONS = ("5.11.2", "5.12.0", "5.12.1", "6.0.0")
RATINGS = {"high": (2, 3, 8, 30, 57), "mid": (5, 10, 20, 35, 30), "low": (35, 30, 20, 10, 5)}
SURVEYS = (("checkout_ease_v1", "How easy was it to pay?"), ("recommend_v1", "How likely are you to recommend us?"))
REVIEW_TEXT = {
    5: ("Fast checkout and it arrived on time. Great shop!", "Love it, will buy again.", "Excellent service."),
    4: ("Good experience overall, delivery a bit slow.", "Nice products, easy payment."),
    3: ("It was okay. Checkout took a while.", "Average, nothing special."),
    2: ("Not happy, the item was not as described.", "Slow refund and poor support."),
    1: ("Terrible. I had to ask for a refund.", "Never again: charged and nothing arrived."),
}
FREE_TEXT = {
    "payment_failed": ("My payment keeps getting declined although the card works elsewhere.",
                       "Checkout failed with an error, please help."),
    "refund": ("I asked for a refund days ago, where is my money?", "Only part of my order was refunded.",
               "Refund received, but it took far too long."),
    "unrecognized": ("I don't recognise a charge from {merchant}. I did not make this purchase.",
                     "Someone used my account, there are payments I never made."),
}
PII_EMAIL = ("Please reply to {email}.", "My e-mail is {email}, contact me there.")
PII_CARD = ("My card {pan} was charged twice.", "The card number is {pan}, please check it.")
BACKGROUND = (   # (level, service, message template, error code), weight
    (("INFO", "web-frontend", "GET /health 200 in {k} ms", None), 40),
    (("INFO", "search-service", "index refreshed: {n} products", None), 20),
    (("INFO", "notification-worker", "sent {n} receipts", None), 15),
    (("INFO", "payments-api", "settlement batch {n} exported", None), 5),
    (("WARN", "search-service", "slow query: {n} ms", None), 8),
    (("WARN", "notification-worker", "webhook delivery retried (attempt {k})", None), 6),
    (("ERROR", "search-service", "upstream timeout calling the product index after {n} ms", "upstream_timeout"), 3),
    (("ERROR", "web-frontend", "TypeError: cannot read properties of undefined (reading 'price')", "js_exception"), 3),
)


# ------------------------------------------------------------------------------------ public types
class Event(NamedTuple):
    """One Kafka record: the family (topic suffix), the key and the value bytes; `corruption` names the
    noise kind when the value was deliberately corrupted (None for a valid event)."""

    family: str
    key: bytes
    value: bytes
    corruption: str | None = None


@dataclass(frozen=True)
class EventOptions:
    noise: float = 0.0          # share of events corrupted (events.noise)
    pii_share: float = 0.05     # share of feedback texts with an e-mail address or a typed card number

    def __post_init__(self) -> None:
        for name in ("noise", "pii_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}: must be between 0 and 1, got {value}")


@dataclass
class EventStats:
    """What a generator emitted; complete once the stream is exhausted."""

    total: int = 0
    per_family: Counter[str] = field(default_factory=Counter)
    per_type: Counter[str] = field(default_factory=Counter)               # "family/event_type"
    corrupted: Counter[str] = field(default_factory=Counter)              # per noise kind
    corrupted_per_family: Counter[str] = field(default_factory=Counter)
    pii: Counter[str] = field(default_factory=Counter)                    # feedback texts with "email" / "card_number"
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, family: str, event_type: str, corruption: str | None) -> None:
        with self.lock:
            self.total += 1
            self.per_family[family] += 1
            self.per_type[f"{family}/{event_type}"] += 1
            if corruption:
                self.corrupted[corruption] += 1
                self.corrupted_per_family[family] += 1

    def as_dict(self) -> dict[str, Any]:
        with self.lock:
            return {"total": self.total, "per_family": {f: self.per_family[f] for f in FAMILIES},
                    "per_type": dict(sorted(self.per_type.items())),
                    "corrupted": {k: self.corrupted[k] for k in NOISE_KINDS},
                    "corrupted_per_family": {f: self.corrupted_per_family[f] for f in FAMILIES},
                    "pii": dict(sorted(self.pii.items()))}


def planned_noise(n_events: int, share: float) -> dict[str, int]:
    """How many of `n_events` events the noise corrupts, per kind: floor(n * share) in all (share in
    parts per million), the kinds taken in turn."""
    corrupted = n_events * round(share * PPM) // PPM
    return {kind: corrupted // len(NOISE_KINDS) + (1 if i < corrupted % len(NOISE_KINDS) else 0)
            for i, kind in enumerate(NOISE_KINDS)}


# ------------------------------------------------------------------------------------ charges
@dataclass(frozen=True, slots=True)
class ChargeFact:
    """A charge as the events see it (from the history's rows, or from a live payment)."""

    charge_id: int
    created_at: dt.datetime
    merchant_id: int
    customer_id: int
    amount_minor: int
    currency: str
    status: str
    failure_code: str | None
    device: str
    ip: str | None
    authorized_at: dt.datetime | None = None
    captured_at: dt.datetime | None = None
    failed_at: dt.datetime | None = None
    canceled_at: dt.datetime | None = None
    scenario: str | None = None                                     # fraud ground truth
    refunds: tuple[tuple[int | None, dt.datetime, int], ...] = ()   # (refund_id, at, amount_minor)
    disputes: tuple[tuple[int, dt.datetime, str], ...] = ()         # (dispute_id, opened_at, reason)
    subscription: bool = False

    @property
    def online(self) -> bool:
        return self.device in ONLINE_DEVICES

    @property
    def settled_at(self) -> dt.datetime:
        return self.captured_at or self.failed_at or self.authorized_at or self.created_at


def charge_facts(history: History) -> list[ChargeFact]:
    """The history's charges with their refunds, disputes and fraud labels, in history order."""
    col = {name: i for i, name in enumerate(TABLE_COLUMNS["payments.charges"])}
    rcol = {name: i for i, name in enumerate(TABLE_COLUMNS["payments.refunds"])}
    dcol = {name: i for i, name in enumerate(TABLE_COLUMNS["payments.disputes"])}
    lcol = {name: i for i, name in enumerate(TABLE_COLUMNS["labels.fraud_ground_truth"])}
    refunds: dict[int, list[tuple[int | None, dt.datetime, int]]] = {}
    for r in history.refunds:
        refunds.setdefault(r[rcol["charge_id"]], []).append(
            (r[rcol["refund_id"]], r[rcol["created_at"]], r[rcol["amount_minor"]]))
    disputes: dict[int, list[tuple[int, dt.datetime, str]]] = {}
    for d in history.disputes:
        disputes.setdefault(d[dcol["charge_id"]], []).append(
            (d[dcol["dispute_id"]], d[dcol["opened_at"]], d[dcol["reason"]]))
    scenario = {row[lcol["charge_id"]]: row[lcol["scenario"]] for row in history.labels}
    out = []
    for c in history.charges:
        cid = c[col["charge_id"]]
        out.append(ChargeFact(
            charge_id=cid, created_at=c[col["created_at"]], merchant_id=c[col["merchant_id"]],
            customer_id=c[col["customer_id"]], amount_minor=c[col["amount_minor"]], currency=c[col["currency_code"]],
            status=c[col["status"]], failure_code=c[col["failure_code"]], device=c[col["device_type"]],
            ip=c[col["ip_address"]], authorized_at=c[col["authorized_at"]], captured_at=c[col["captured_at"]],
            failed_at=c[col["failed_at"]], canceled_at=c[col["canceled_at"]], scenario=scenario.get(cid),
            refunds=tuple(sorted(refunds.get(cid, []), key=lambda r: r[1])),
            disputes=tuple(sorted(disputes.get(cid, []), key=lambda d: d[1])),
            subscription=str(c[col["description"]] or "").startswith("subscription")))
    return out


# ------------------------------------------------------------------------------------ helpers
def _ms(at: dt.datetime) -> int:
    return (at - EPOCH) // dt.timedelta(milliseconds=1)


@functools.lru_cache(maxsize=4096)
def _iso_day(day: int) -> str:
    return (EPOCH + dt.timedelta(days=day)).strftime("%Y-%m-%dT")


def iso_ms(ms: int) -> str:
    """ISO-8601 UTC with milliseconds, e.g. 2026-11-24T13:45:12.345Z."""
    day, rest = divmod(ms, 86_400_000)
    seconds, milli = divmod(rest, 1000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{_iso_day(day)}{hours:02d}:{minutes:02d}:{seconds:02d}.{milli:03d}Z"


def uuid5_str(name: str) -> str:
    """`str(uuid.uuid5(NAMESPACE, name))`, without building UUID objects (it runs once per event)."""
    h = bytearray(hashlib.sha1(NAMESPACE.bytes + name.encode()).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50
    h[8] = (h[8] & 0x3F) | 0x80
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _dumps(doc: dict[str, Any]) -> bytes:
    return _ENCODER.encode(doc).encode()


def _stable(*parts: object) -> int:
    return zlib.crc32(":".join(str(p) for p in parts).encode())


def _secs(s: float) -> dt.timedelta:
    return dt.timedelta(seconds=s)


_DIGIT_RUN = re.compile(r"[0-9-]{13,}")     # cheap pre-check: no PAN without 13 digits (and dashes) in a row


def event_id(name: str) -> str:
    """uuid5 of `name`, re-hashed with a counter in the rare case (about 1 in 10,000) that the UUID's digits
    and dashes read as a Luhn-valid card number, so that PAN scanners never flag an event id."""
    eid, salt = uuid5_str(name), 0
    while _DIGIT_RUN.search(eid) and contains_pan(eid):
        salt += 1
        eid = uuid5_str(f"{name}#{salt}")
    return eid


def funnel_offsets(rng: random.Random, depth: int, bot: bool) -> list[float]:
    """Seconds from the landing page view to each of the first `depth` funnel steps."""
    out = [0.0]
    for step in FUNNEL[1:depth]:
        lo, hi = BOT_GAP if bot else HUMAN_GAPS[step]
        out.append(out[-1] + rng.uniform(lo, hi))
    return out


def typed_card_number(rng: random.Random) -> str:
    """A Luhn-valid test card number as a customer would type it (groups of four, or amex 4-6-5).
    Never a number of the vault: a fresh one under a test BIN."""
    brand = rng.choice(("visa", "mastercard", "amex"))
    prefix = rng.choice(BINS[brand])
    length = 15 if brand == "amex" else 16
    body = prefix + "".join(str(rng.randrange(10)) for _ in range(length - len(prefix) - 1))
    pan = body + luhn_check_digit(body)
    groups = (4, 6, 5) if brand == "amex" else (4, 4, 4, 4)
    parts, i = [], 0
    for g in groups:
        parts.append(pan[i:i + g])
        i += g
    return rng.choice((" ", "-", " ")).join(parts) if rng.random() < 0.8 else pan


_Draft = tuple[int, int, int, str, bytes, dict[str, Any]]   # (ms, anchor order, index, family, key, document)


class _Drafts:
    """The events of one anchor (a charge, a refund, a session, a day of background logs, …)."""

    def __init__(self, seed: int, anchor: str, order: int, floor: dt.datetime | None) -> None:
        self.seed, self.anchor, self.order, self.floor = seed, anchor, order, floor
        self.items: list[_Draft] = []

    def ident(self, what: str) -> str:
        """32 hex digits spelled with letters (session and trace ids): never a digit run a PAN scanner flags."""
        return letters_hex(uuid5_str(f"{self.seed}:{self.anchor}:{what}").replace("-", ""))

    def add(self, family: str, key: bytes, at: dt.datetime, event_type: str, customer_id: int | None,
            session_id: str | None, payload: dict[str, Any]) -> None:
        if self.floor is not None and at < self.floor - LEAD:
            raise RuntimeError(f"event of {self.anchor} at {at} precedes its anchor by more than {LEAD}")
        k = len(self.items)
        ms = _ms(at)
        doc = {"schema_version": SCHEMA_VERSION,
               "event_id": event_id(f"{self.seed}:{self.anchor}:{k}"),
               "event_type": event_type, "event_time": iso_ms(ms), "customer_id": customer_id,
               "session_id": session_id, "payload": payload}
        self.items.append((ms, self.order, k, family, key, doc))


class Noise:
    """Corrupts exactly floor(N * share) of N events (share in parts per million), evenly spread, the
    kinds in turn; deterministic for the seed and the order of events. Thread-safe."""

    def __init__(self, seed: int, share: float) -> None:
        self.seed, self.ppm = seed, round(share * PPM)
        self.seen = self.corrupted = 0
        self._lock = threading.Lock()

    def apply(self, doc: dict[str, Any]) -> tuple[bytes, str | None]:
        with self._lock:
            i = self.seen
            self.seen += 1
            hit = (i + 1) * self.ppm // PPM > i * self.ppm // PPM
            j = self.corrupted
            self.corrupted += hit
        if not hit:
            return _dumps(doc), None
        kind = NOISE_KINDS[j % len(NOISE_KINDS)]
        return corrupt(kind, doc, random.Random(f"{self.seed}:events:noise:{j}")), kind


def corrupt(kind: str, doc: dict[str, Any], rng: random.Random) -> bytes:
    """`doc` as one kind of broken message."""
    if kind == "not_json":
        form = rng.randrange(3)
        if form == 0:     # a plain log line from an old client
            return (f"{doc['event_time']} {doc['event_type']} customer={doc['customer_id']} "
                    f"session={doc['session_id']}").encode()
        if form == 1:     # form-encoded
            return (f"event_type={doc['event_type']}&event_id={doc['event_id']}"
                    f"&customer_id={doc['customer_id']}").encode()
        return b"<html><body><h1>502 Bad Gateway</h1></body></html>"    # a proxy's error page as the body
    if kind == "truncated_json":
        value = _dumps(doc)
        cut = rng.randint(1, len(value) - 1)
        return value[:cut].decode("utf-8", "ignore").encode()   # a strict prefix, still valid UTF-8
    if kind == "unknown_version":
        return _dumps({**doc, "schema_version": UNKNOWN_VERSION})
    if kind == "missing_event_id":
        return _dumps({k: v for k, v in doc.items() if k != "event_id"})
    raise ValueError(f"unknown noise kind {kind!r}")


# ------------------------------------------------------------------------------------ the generator
class _Generator:
    """Builds the drafts of each kind of anchor; shared by the history stream and live traffic."""

    def __init__(self, cfg: SimConfig, world: World, options: EventOptions, stats: EventStats, live: bool) -> None:
        self.cfg, self.world, self.options, self.stats, self.live = cfg, world, options, stats, live
        self.customers = {c.customer_id: c for c in world.customers}
        self.merchants = {m.merchant_id: m for m in world.merchants}
        self.geo_by_prefix = {".".join(net.split(".")[:2]): (country, city)
                              for net, country, city, *_ in reference.ip_networks()}
        self.networks = sorted(self.geo_by_prefix)
        self.end = None if live else dt.datetime.combine(cfg.end, dt.time(), UTC)
        self._order = itertools.count()

    def drafts(self, anchor: str, floor: dt.datetime | None) -> _Drafts:
        return _Drafts(self.cfg.seed, anchor, next(self._order), None if self.live else floor)

    # -- shared pieces
    def device(self, customer_id: int | None, device_type: str, ip: str | None) -> dict[str, Any]:
        h = _stable(self.cfg.seed, customer_id, device_type, ip)
        oses = OS_BY_DEVICE.get(device_type, ("unknown",))
        channel = "app" if device_type == "mobile" and (h >> 8) % 10 < 7 else "web"
        return {"type": device_type, "os": oses[h % len(oses)], "channel": channel,
                "app_version": APP_VERSIONS[(h >> 16) % len(APP_VERSIONS)] if channel == "app" else None}

    def geo(self, ip: str | None) -> dict[str, Any]:
        country, city = self.geo_by_prefix.get(".".join((ip or "").split(".")[:2]), (None, None))
        return {"ip": ip or None, "country": country, "city": city}

    def minor(self, usd: float, currency: str) -> int:
        _, exponent, usd_per_unit = reference.CURRENCIES[currency][:3]
        return max(1, round(usd / float(usd_per_unit) * 10**exponent))

    @staticmethod
    def cart(rng: random.Random, merchant_id: int, amount: int, currency: str) -> dict[str, Any]:
        """Items whose total is exactly `amount`."""
        n = min(amount, rng.choices((1, 2, 3), (6, 3, 1))[0])
        cuts = sorted(rng.sample(range(1, amount), n - 1)) if n > 1 else []
        items = []
        for a, b in itertools.pairwise([0, *cuts, amount]):
            part = b - a
            qty = 2 if part % 2 == 0 and rng.random() < 0.2 else 1
            items.append({"sku": f"M{merchant_id}-{rng.randrange(1, 1000):04d}", "quantity": qty,
                          "unit_amount_minor": part // qty})
        return {"items": items, "amount_minor": amount, "currency": currency}

    def session(self, d: _Drafts, rng: random.Random, *, customer_id: int | None, key: bytes, session_id: str,
                device_type: str, ip: str | None, merchant_id: int, cart: dict[str, Any] | None,
                times: Sequence[dt.datetime]) -> tuple[dt.datetime, dict[str, Any]]:
        """session_start and the first len(times) funnel steps at `times`; returns the start time and
        the payload for the session_end the caller adds (with the outcome)."""
        device, geo = self.device(customer_id, device_type, ip), self.geo(ip)
        landing = rng.choice(("/", f"/m/{merchant_id}", f"/search?q=m{merchant_id}"))
        referrer = rng.choices(REFERRERS, (4, 4, 2, 1, 1))[0]
        sku = cart["items"][0]["sku"] if cart else f"M{merchant_id}-{rng.randrange(1, 1000):04d}"
        paths = {"landing": landing, "product": f"/m/{merchant_id}/p/{sku}", "cart": "/cart", "checkout": "/checkout"}
        start = {"channel": device["channel"], "device": device, "geo": geo, "merchant_id": merchant_id,
                 "landing": {"path": landing, "referrer": referrer}, "duration_ms": None, "page_views": None,
                 "clicks": None, "outcome": None, "charge_id": None}
        started = times[0] - dt.timedelta(milliseconds=rng.randint(20, 400))
        d.add("sessions", key, started, "session_start", customer_id, session_id, start)
        previous = referrer
        page_views = clicks = 0
        for step, at in zip(FUNNEL, times, strict=False):
            in_cart = cart if step in ("add_to_cart", "cart", "checkout", "pay") else None
            if step in CLICKS:
                page, element = CLICKS[step]
                d.add("clickstream", key, at, "click", customer_id, session_id,
                      {"page": {"type": page, "path": paths[page], "referrer": None}, "element": element,
                       "merchant_id": merchant_id, "device": device, "geo": geo, "cart": in_cart})
                clicks += 1
            else:
                d.add("clickstream", key, at, "page_view", customer_id, session_id,
                      {"page": {"type": step, "path": paths[step], "referrer": previous}, "element": None,
                       "merchant_id": merchant_id, "device": device, "geo": geo, "cart": in_cart})
                previous = paths[step]
                page_views += 1
        return started, {**start, "page_views": page_views, "clicks": clicks}

    def session_end(self, d: _Drafts, key: bytes, customer_id: int | None, session_id: str, at: dt.datetime,
                    started: dt.datetime, payload: dict[str, Any], outcome: str, charge_id: int | None = None) -> None:
        d.add("sessions", key, at, "session_end", customer_id, session_id,
              {**payload, "duration_ms": _ms(at) - _ms(started), "outcome": outcome, "charge_id": charge_id})

    def log(self, d: _Drafts, key: bytes, at: dt.datetime, level: str, service: str, message: str, *,
            customer_id: int | None = None, session_id: str | None = None, trace_id: str | None = None,
            error: dict[str, Any] | None = None, context: dict[str, Any] | None = None,
            http: dict[str, Any] | None = None) -> None:
        ctx = {"charge_id": None, "merchant_id": None, "amount_minor": None, "currency": None, "refund_id": None,
               "dispute_id": None, **(context or {})}
        d.add("app_logs", key, at, "error" if level == "ERROR" else "log", customer_id, session_id,
              {"level": level, "service": service, "message": message, "trace_id": trace_id, "error": error,
               "context": ctx, "http": http})

    # -- anchors
    def charge(self, f: ChargeFact) -> _Drafts:
        """The checkout session (online charges) and the charge's logs."""
        d = self.drafts(f"charge:{f.charge_id}", f.created_at)
        rng = random.Random(f"{self.cfg.seed}:events:charge:{f.charge_id}")
        key = str(f.customer_id).encode()
        trace = d.ident("trace")
        ctx = {"charge_id": f.charge_id, "merchant_id": f.merchant_id, "amount_minor": f.amount_minor,
               "currency": f.currency}
        session_id = None
        if f.online:
            bot = f.scenario == "card_testing"
            session_id = "s_" + d.ident("session")[:24]
            cart = self.cart(rng, f.merchant_id, f.amount_minor, f.currency)
            # the funnel laid out forwards, then moved so that the pay click lands just before the charge
            offsets = funnel_offsets(rng, len(FUNNEL), bot)
            pay_at = f.created_at - dt.timedelta(milliseconds=rng.randint(150, 1500))
            times = [pay_at - _secs(offsets[-1] - o) for o in offsets]
            started, end_payload = self.session(d, rng, customer_id=f.customer_id, key=key, session_id=session_id,
                                                device_type=f.device, ip=f.ip, merchant_id=f.merchant_id,
                                                cart=cart, times=times)
            end_gap = rng.uniform(0.5, 2.0) if self.live else rng.uniform(2.0, 60.0)
            self.session_end(d, key, f.customer_id, session_id, f.settled_at + _secs(end_gap), started,
                             end_payload, "checkout_declined" if f.status == "failed" else "checkout_completed",
                             f.charge_id)
        common: dict[str, Any] = {"customer_id": f.customer_id, "session_id": session_id, "trace_id": trace,
                                  "context": ctx}
        # online: the checkout API declines, the payments API captures; renewals and POS log from their workers
        channel_service = "billing-worker" if f.subscription else None if f.online else "terminal-gateway"
        service = channel_service or "checkout-api"
        if f.status == "failed":
            at = (f.failed_at or f.created_at) + dt.timedelta(milliseconds=rng.randint(5, 200))
            self.log(d, key, at, "ERROR", service, f"payment declined for charge {f.charge_id}: {f.failure_code}",
                     error={"type": "card_error", "code": f.failure_code, "charge_id": f.charge_id},
                     http={"method": "POST", "path": "/v1/payments", "status": 402,
                           "duration_ms": rng.randint(80, 900)}, **common)
        elif f.status == "captured":
            at = (f.captured_at or f.created_at) + dt.timedelta(milliseconds=rng.randint(5, 200))
            self.log(d, key, at, "INFO", channel_service or "payments-api", f"charge {f.charge_id} captured",
                     http={"method": "POST", "path": f"/v1/charges/{f.charge_id}/capture", "status": 200,
                           "duration_ms": rng.randint(20, 400)}, **common)
        elif f.status == "canceled":
            at = (f.authorized_at or f.created_at) + dt.timedelta(milliseconds=rng.randint(5, 200))
            self.log(d, key, at, "INFO", "payments-api", f"charge {f.charge_id} authorized", **common)
            if f.canceled_at:
                self.log(d, key, f.canceled_at + dt.timedelta(milliseconds=rng.randint(5, 200)), "WARN",
                         "orders-service", f"authorization of charge {f.charge_id} voided: order canceled", **common)
        else:
            self.log(d, key, f.created_at, "INFO", "payments-api", f"charge {f.charge_id} {f.status}", **common)
        return d

    def refund(self, f: ChargeFact, i: int) -> _Drafts:
        refund_id, at, amount = f.refunds[i]
        d = self.drafts(f"refund:{f.charge_id}:{i}", at)
        rng = random.Random(f"{self.cfg.seed}:events:refund:{f.charge_id}:{i}")
        self.log(d, str(f.customer_id).encode(), at + dt.timedelta(milliseconds=rng.randint(5, 300)), "INFO",
                 "payments-api", f"refund of {amount} {f.currency} succeeded for charge {f.charge_id}",
                 customer_id=f.customer_id, trace_id=d.ident("trace"),
                 context={"charge_id": f.charge_id, "merchant_id": f.merchant_id, "amount_minor": amount,
                          "currency": f.currency, "refund_id": refund_id})
        return d

    def dispute(self, f: ChargeFact, i: int) -> _Drafts:
        dispute_id, opened, reason = f.disputes[i]
        d = self.drafts(f"dispute:{f.charge_id}:{i}", opened)
        rng = random.Random(f"{self.cfg.seed}:events:dispute:{f.charge_id}:{i}")
        self.log(d, str(f.customer_id).encode(), opened + dt.timedelta(milliseconds=rng.randint(5, 300)), "WARN",
                 "disputes-service", f"dispute opened on charge {f.charge_id}: {reason}",
                 customer_id=f.customer_id, trace_id=d.ident("trace"),
                 context={"charge_id": f.charge_id, "merchant_id": f.merchant_id, "amount_minor": f.amount_minor,
                          "currency": f.currency, "dispute_id": dispute_id})
        return d

    def feedback_plan(self, f: ChargeFact) -> list[tuple[dt.datetime, str, str | None, str | None]]:
        """(time, kind, topic, rating band) of the feedback this charge's customer leaves, if any."""
        rng = random.Random(f"{self.cfg.seed}:events:feedback-plan:{f.charge_id}")
        out: list[tuple[dt.datetime, str, str | None, str | None]] = []
        days = dt.timedelta(days=1)
        if f.scenario == "card_testing":
            return out                      # the cardholder never saw these attempts
        if f.scenario is not None:          # account takeover, compromised terminal, friendly fraud
            for _, opened, _ in f.disputes:
                if rng.random() < 0.3:
                    out.append((max(f.created_at + _secs(3600), opened - days * rng.uniform(0, 2)), "free_text",
                                "unrecognized", None))
        elif f.status == "failed":
            at = f.failed_at or f.created_at
            if rng.random() < 0.08:
                out.append((at + _secs(rng.uniform(120, 3 * 3600)), "free_text", "payment_failed", None))
            if f.online and rng.random() < 0.04:
                out.append((at + _secs(rng.uniform(60, 1800)), "survey", None, "low"))
        elif f.status == "captured":
            at = f.captured_at or f.created_at
            if f.refunds:
                if rng.random() < 0.3:
                    kind = rng.choice(("review", "free_text"))
                    out.append((f.refunds[0][1] + days * rng.uniform(0.05, 3), kind, "refund",
                                "low" if kind == "review" else None))
            else:
                if rng.random() < 0.03:
                    out.append((at + days * rng.uniform(0.5, 7), "review", None, "high"))
                if f.online and rng.random() < 0.02:
                    out.append((at + _secs(rng.uniform(60, 86400)), "survey", None, "mid"))
        if self.live:                        # live traffic: feedback follows within seconds
            out = [(f.settled_at + _secs(rng.uniform(1, 10)), kind, topic, band) for _, kind, topic, band in out]
        if self.end is not None:
            out = [item for item in out if item[0] < self.end]
        return sorted(out, key=lambda item: item[0])

    def feedback(self, f: ChargeFact, n: int, at: dt.datetime, kind: str, topic: str | None,
                 band: str | None) -> _Drafts:
        d = self.drafts(f"feedback:{f.charge_id}:{n}", at)
        rng = random.Random(f"{self.cfg.seed}:events:feedback:{f.charge_id}:{n}")
        merchant = self.merchants.get(f.merchant_id)
        merchant_name = (merchant.name if merchant and merchant.name else f"merchant {f.merchant_id}")
        rating = rng.choices((1, 2, 3, 4, 5), RATINGS[band])[0] if band else None
        survey = None
        if kind == "review":
            assert rating is not None
            text = rng.choice(REVIEW_TEXT[rating])
            channel = "app"
        elif kind == "survey":
            sid, question = rng.choice(SURVEYS)
            survey = {"id": sid, "question": question}
            text = rng.choice(("", "", "Too many steps.", "Quick and easy.", "The page was slow."))
            channel = "email_survey"
        else:
            text = rng.choice(FREE_TEXT[topic or "refund"]).format(merchant=merchant_name)
            channel = "support_form"
        if text and rng.random() < self.options.pii_share:
            customer = self.customers.get(f.customer_id)
            if rng.random() < 0.7:
                email = customer.email if customer and customer.email else f"customer{f.customer_id}@example.net"
                text += " " + rng.choice(PII_EMAIL).format(email=email)
                pii = "email"
            else:
                text += " " + rng.choice(PII_CARD).format(pan=typed_card_number(rng))
                pii = "card_number"
            with self.stats.lock:
                self.stats.pii[pii] += 1
        d.add("feedback", str(f.customer_id).encode(), at, kind, f.customer_id, None,
              {"kind": kind, "merchant_id": f.merchant_id, "charge_id": f.charge_id, "rating": rating, "text": text,
               "topic": topic, "survey": survey, "channel": channel})
        return d

    def abandoned(self, anchor: str, rng: random.Random, customer_id: int, device: str, ip: str | None,
                  merchant_id: int, usd: float, first_at: dt.datetime | None, last_at: dt.datetime | None) -> _Drafts:
        """A logged-in customer's funnel that stops before paying (at landing, product, cart or checkout).
        Placed from `first_at`, or (live) so that it ends at `last_at`."""
        merchant = self.merchants.get(merchant_id)
        currency = merchant.currency if merchant else "USD"
        depth = rng.choices((1, 2, 3, 4, 5), (30, 30, 15, 15, 10))[0]
        cart = self.cart(rng, merchant_id, self.minor(usd, currency), currency) if depth >= 3 else None
        return self._browse(anchor, rng, customer_id, device, ip, merchant_id, cart, depth, first_at, last_at,
                            "abandoned")

    def anonymous(self, anchor: str, rng: random.Random, first_at: dt.datetime | None,
                  last_at: dt.datetime | None) -> _Drafts:
        prefix = rng.choice(self.networks)
        ip = f"{prefix}.{rng.randrange(0, 256)}.{rng.randrange(1, 255)}"
        device = rng.choices(DEVICES, (6, 3, 1))[0]
        merchant_id = rng.choice(self.world.merchants).merchant_id
        depth = rng.choices((1, 2), (55, 45))[0]
        return self._browse(anchor, rng, None, device, ip, merchant_id, None, depth, first_at, last_at, "browsed")

    def _browse(self, anchor: str, rng: random.Random, customer_id: int | None, device: str, ip: str | None,
                merchant_id: int, cart: dict[str, Any] | None, depth: int, first_at: dt.datetime | None,
                last_at: dt.datetime | None, outcome: str) -> _Drafts:
        tail = _secs(rng.uniform(5, 300))
        offsets = funnel_offsets(rng, depth, bot=False)
        if first_at is None:     # live: the whole session ends at last_at
            assert last_at is not None
            first_at = last_at - tail - _secs(offsets[-1])
        d = self.drafts(anchor, first_at)
        session_id = "s_" + d.ident("session")[:24]
        key = str(customer_id).encode() if customer_id is not None else session_id.encode()
        times = [first_at + _secs(o) for o in offsets]
        started, payload = self.session(d, rng, customer_id=customer_id, key=key, session_id=session_id,
                                        device_type=device, ip=ip, merchant_id=merchant_id, cart=cart, times=times)
        self.session_end(d, key, customer_id, session_id, times[-1] + tail, started, payload, outcome)
        return d

    def background(self, anchor: str, rng: random.Random, at: dt.datetime) -> _Drafts:
        d = self.drafts(anchor, at)
        self.background_line(d, rng, at)
        return d

    def background_line(self, d: _Drafts, rng: random.Random, at: dt.datetime) -> None:
        (level, service, template, code), = rng.choices([b for b, _ in BACKGROUND], [w for _, w in BACKGROUND])
        message = template.format(n=rng.randint(2, 5000), k=rng.randint(2, 5))
        self.log(d, service.encode(), at, level, service, message, trace_id=d.ident(f"trace:{len(d.items)}"),
                 error={"type": "api_error", "code": code, "charge_id": None} if code else None)


# ------------------------------------------------------------------------------------ streams
class EventStream:
    """The events of a backfilled history, ordered by event time; iterate once. `stats` is complete when
    the iteration ends."""

    def __init__(self, cfg: SimConfig, world: World, history: History, options: EventOptions | None = None) -> None:
        self.cfg, self.world, self.history = cfg, world, history
        self.options = options or EventOptions()
        self.stats = EventStats()

    def __iter__(self) -> Iterator[Event]:
        cfg = self.cfg
        gen = _Generator(cfg, self.world, self.options, self.stats, live=False)
        noise = Noise(cfg.seed, self.options.noise)
        # anchors known up front, by day: charges, refunds, disputes, feedback
        by_day: dict[dt.date, list[tuple[str, ChargeFact, int, Any]]] = {}

        def put(at: dt.datetime, kind: str, f: ChargeFact, i: int, extra: Any = None) -> None:
            by_day.setdefault(at.date(), []).append((kind, f, i, extra))

        for f in charge_facts(self.history):
            put(f.created_at, "charge", f, 0)
            for i, (_, at, _) in enumerate(f.refunds):
                put(at, "refund", f, i)
            for i, (_, opened, _) in enumerate(f.disputes):
                put(opened, "dispute", f, i)
            for n, item in enumerate(gen.feedback_plan(f)):
                put(item[0], "feedback", f, n, item)
        window = [cfg.start + dt.timedelta(days=i) for i in range(cfg.days)]
        heap: list[_Draft] = []
        for day in sorted(set(by_day) | set(window)):
            batches = [self._anchor(gen, kind, f, i, extra) for kind, f, i, extra in by_day.pop(day, [])]
            if cfg.start <= day < cfg.end:
                batches += self._day_traffic(gen, day)
            for d in batches:
                for draft in d.items:
                    heapq.heappush(heap, draft)
            horizon = _ms(dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), UTC) - LEAD)
            while heap and heap[0][0] < horizon:
                yield self._emit(heapq.heappop(heap), noise)
        while heap:
            yield self._emit(heapq.heappop(heap), noise)

    @staticmethod
    def _anchor(gen: _Generator, kind: str, f: ChargeFact, i: int, extra: Any) -> _Drafts:
        if kind == "charge":
            return gen.charge(f)
        if kind == "refund":
            return gen.refund(f, i)
        if kind == "dispute":
            return gen.dispute(f, i)
        return gen.feedback(f, i, *extra)

    def _day_traffic(self, gen: _Generator, day: dt.date) -> list[_Drafts]:
        """The day's sessions without a payment and its background logs."""
        cfg, out = self.cfg, []
        midnight = dt.datetime.combine(day, dt.time(), UTC)
        for c in self.world.customers:
            rng = random.Random(f"{cfg.seed}:events:abandon:{day.isoformat()}:{c.customer_id}")
            for k in range(poisson(c.rate * WEEKDAY[day.weekday()] * ABANDONED_PER_PURCHASE, rng)):
                at = midnight + _secs(rng.choices(range(24), DIURNAL)[0] * 3600 + rng.uniform(0, 3600))
                if at < c.created_at:
                    continue
                device = c.device if rng.random() < 0.95 else rng.choice(DEVICES)
                out.append(gen.abandoned(f"abandon:{day.isoformat()}:{c.customer_id}:{k}", rng, c.customer_id,
                                         device, c.ip, rng.choice(c.favourites),
                                         c.mean_amount_usd * rng.lognormvariate(0, 0.5), at, None))
        rng = random.Random(f"{cfg.seed}:events:anonymous:{day.isoformat()}")
        lam = len(self.world.customers) * ANONYMOUS_PER_CUSTOMER_DAY * WEEKDAY[day.weekday()]
        for k in range(poisson(lam, rng)):
            srng = random.Random(f"{cfg.seed}:events:anonymous:{day.isoformat()}:{k}")
            at = midnight + _secs(srng.choices(range(24), DIURNAL)[0] * 3600 + srng.uniform(0, 3600))
            out.append(gen.anonymous(f"anonymous:{day.isoformat()}:{k}", srng, at, None))
        rng = random.Random(f"{cfg.seed}:events:background:{day.isoformat()}")
        d = gen.drafts(f"background:{day.isoformat()}", midnight)
        for hour in range(24):
            for _ in range(poisson(DIURNAL[hour] * BACKGROUND_PER_HOUR_WEIGHT, rng)):
                gen.background_line(d, rng, midnight + _secs(hour * 3600 + rng.uniform(0, 3600)))
        out.append(d)
        return out

    def _emit(self, item: _Draft, noise: Noise) -> Event:
        _, _, _, family, key, doc = item
        value, kind = noise.apply(doc)
        self.stats.record(family, doc["event_type"], kind)
        return Event(family, key, value, kind)


def history_events(cfg: SimConfig, world: World, history: History,
                   options: EventOptions | None = None) -> EventStream:
    """The events of a backfilled history (see the module docstring); iterate once."""
    return EventStream(cfg, world, history, options)


class LiveEvents:
    """Events of live payments as they happen (`run_live`'s `on_payment` callback feeds them). Content is
    drawn from the seed and the charge id; times come from the database's `created_at`. Thread-safe."""

    def __init__(self, cfg: SimConfig, world: World, options: EventOptions | None = None) -> None:
        self.options = options or EventOptions()
        self.stats = EventStats()
        self.gen = _Generator(cfg, world, self.options, self.stats, live=True)
        self.noise = Noise(cfg.seed, self.options.noise)
        self.cfg, self.world = cfg, world
        self._rejected = itertools.count(1)

    def for_payment(self, payment: dict[str, Any], charge_id: int | None, created_at: dt.datetime | None,
                    ok: bool) -> list[Event]:
        """The events of one live payment (`payment` is a `live_plan` item): the checkout session and logs
        (or an ERROR log when the service rejected it), feedback, and now and then an abandoned or anonymous
        session and a background log line."""
        gen, seed = self.gen, self.cfg.seed
        now = created_at or dt.datetime.now(UTC)
        batches: list[_Drafts] = []
        key = str(payment["customer_id"]).encode()
        if not ok or charge_id is None:
            d = gen.drafts(f"live-rejected:{seed}:{payment['customer_id']}:{next(self._rejected)}", None)
            gen.log(d, key, now, "ERROR", "checkout-api", "payment request rejected by the payments service",
                    customer_id=payment["customer_id"], trace_id=d.ident("trace"),
                    error={"type": "api_error", "code": "rejected", "charge_id": charge_id},
                    context={"charge_id": charge_id, "merchant_id": payment["merchant_id"],
                             "amount_minor": payment["amount_minor"], "currency": payment["currency_code"]})
            return self._finish([d])
        rng = random.Random(f"{seed}:events:live:{charge_id}")
        settle = now + dt.timedelta(milliseconds=rng.randint(50, 400))
        declined = bool(payment.get("decline"))
        refunds: tuple[tuple[int | None, dt.datetime, int], ...] = ()
        if payment.get("refund") and not declined:
            refunds = ((None, settle + dt.timedelta(milliseconds=rng.randint(20, 300)),
                        max(1, payment["amount_minor"] // 2)),)
        f = ChargeFact(charge_id=charge_id, created_at=now, merchant_id=payment["merchant_id"],
                       customer_id=payment["customer_id"], amount_minor=payment["amount_minor"],
                       currency=payment["currency_code"], status="failed" if declined else "captured",
                       failure_code="card_declined" if declined else None, device=payment["device_type"],
                       ip=payment.get("ip_address"), authorized_at=None if declined else settle,
                       captured_at=None if declined else settle, failed_at=settle if declined else None,
                       refunds=refunds)
        batches.append(gen.charge(f))
        batches += [gen.refund(f, i) for i in range(len(f.refunds))]
        batches += [gen.feedback(f, n, *item) for n, item in enumerate(gen.feedback_plan(f))]
        if rng.random() < LIVE_EXTRA_SHARE:
            c = rng.choice(self.world.customers)
            batches.append(gen.abandoned(f"live-abandon:{charge_id}", rng, c.customer_id, c.device, c.ip or None,
                                         rng.choice(c.favourites), c.mean_amount_usd, None, now))
        if rng.random() < LIVE_EXTRA_SHARE * ANONYMOUS_PER_CUSTOMER_DAY / ABANDONED_PER_PURCHASE:
            batches.append(gen.anonymous(f"live-anonymous:{charge_id}", rng, None, now))
        if rng.random() < 0.05:
            batches.append(gen.background(f"live-background:{charge_id}", rng, now))
        return self._finish(batches)

    def _finish(self, batches: Sequence[_Drafts]) -> list[Event]:
        out = []
        for _, _, _, family, key, doc in sorted(item for d in batches for item in d.items):
            value, kind = self.noise.apply(doc)
            self.stats.record(family, doc["event_type"], kind)
            out.append(Event(family, key, value, kind))
        return out
