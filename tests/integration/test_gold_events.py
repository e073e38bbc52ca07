"""The app-event queries of the pack (checkout_funnel, error_spikes, feedback_themes, session_reconstruction)
end to end on the `gold_lakehouse`, each against an answer computed here in plain Python.

The events are regenerated in-process from the fixture's own simulate arguments (`build_world`,
`build_history`, `history_events` with the same seed, end date, noise and PII share): the same bytes
`lakehouse simulate` produced, which the generator's counts confirm against its report. The noise's
corrupted events (`Event.corruption` set) are quarantined by silver; the first test proves that silver
holds exactly the others, by event id, and every expected answer is computed over those. Payments
(status, decline code, amounts, refunds, disputes, fraud labels) come from the OLTP database, USD at the
rate in effect on the payment's UTC day rounded half up, not from gold.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from lakehouse.cli import _json_default as json_default
from lakehouse.common.tables import table_path
from lakehouse.events import FAMILIES
from lakehouse.events.generate import EventOptions, history_events
from lakehouse.oltp.db import connect
from lakehouse.oltp.simulator import SimConfig, build_history, build_world
from lakehouse.silver.events import FAMILIES as SILVER_FAMILIES
from tests.conftest import catalog_of
from tests.integration.conftest import GOLD_SIM, GoldLakehouse, run_query

CENT = Decimal("0.01")
STEPS = ("landing", "product", "add_to_cart", "cart", "checkout", "pay_click", "payment_attempted",
         "payment_authorized")
AUTHORIZED = frozenset({"authorized", "captured", "canceled"})     # the charge was authorized at some point

Row = tuple[Any, ...]


# ------------------------------------------------------------------------------------ the data
@dataclass(frozen=True)
class Ev:
    """One event that reached silver, as the generator wrote it (`at`: naive UTC)."""

    event_id: str
    event_type: str
    at: dt.datetime
    customer_id: int | None
    session_id: str | None
    payload: dict[str, Any]


@dataclass(frozen=True)
class Events:
    clickstream: list[Ev]
    sessions: list[Ev]
    app_logs: list[Ev]
    feedback: list[Ev]
    generated: dict[str, Any]        # the generator's counts (EventStats.as_dict())


@dataclass(frozen=True)
class Charge:
    merchant_id: int
    created_at: dt.datetime          # naive UTC
    status: str
    failure_code: str | None
    currency_code: str
    amount: Decimal
    amount_usd: Decimal | None
    refunded: bool
    disputed: bool
    scenario: str | None


def _arg(args: Sequence[str], name: str) -> str:
    return args[list(args).index(name) + 1]


def regenerate(sim_args: Sequence[str], end: dt.date, pii_share: float) -> Events:
    """The events `lakehouse simulate <sim_args> --end <end> --events` produced, without the corrupted ones."""
    cfg = SimConfig(seed=int(_arg(sim_args, "--seed")), days=int(_arg(sim_args, "--days")), end=end,
                    merchants=int(_arg(sim_args, "--merchants")), customers=int(_arg(sim_args, "--customers")))
    world = build_world(cfg)
    stream = history_events(cfg, world, build_history(cfg, world),
                            EventOptions(noise=float(_arg(sim_args, "--noise")), pii_share=pii_share))
    valid: dict[str, list[Ev]] = {family: [] for family in FAMILIES}
    for event in stream:
        if event.corruption is None:
            doc = json.loads(event.value)
            valid[event.family].append(Ev(doc["event_id"], doc["event_type"],
                                          dt.datetime.strptime(doc["event_time"], "%Y-%m-%dT%H:%M:%S.%fZ"),
                                          doc["customer_id"], doc["session_id"], doc["payload"]))
    return Events(valid["clickstream"], valid["sessions"], valid["app_logs"], valid["feedback"],
                  stream.stats.as_dict())


CHARGES = """SELECT c.charge_id, c.merchant_id, c.created_at, c.status, c.failure_code, c.currency_code,
       c.amount_minor, cur.minor_unit,
       (SELECT f.usd_per_unit FROM ref.fx_rates f
        WHERE f.currency_code = c.currency_code AND f.rate_date <= (c.created_at AT TIME ZONE 'UTC')::date
        ORDER BY f.rate_date DESC LIMIT 1),
       c.refunded_amount_minor > 0,
       EXISTS (SELECT 1 FROM payments.disputes d WHERE d.charge_id = c.charge_id),
       l.scenario
FROM payments.charges c
JOIN ref.currencies cur ON cur.currency_code = c.currency_code
LEFT JOIN labels.fraud_ground_truth l ON l.charge_id = c.charge_id"""


def load_charges(conn: psycopg.Connection[Any]) -> dict[int, Charge]:
    """Every OLTP charge; the amount exact in its currency, USD at the day's rate, half up to cents."""
    out = {}
    with decimal.localcontext() as ctx:
        ctx.prec = 60                                   # exact products: 19 + 4 digits times a (20, 10) rate
        for (charge_id, merchant_id, created_at, status, failure_code, currency, amount_minor, minor_unit, rate,
             refunded, disputed, scenario) in conn.execute(CHARGES).fetchall():
            amount = Decimal(amount_minor).scaleb(-minor_unit)
            usd = None if rate is None else (amount * rate).quantize(CENT, decimal.ROUND_HALF_UP)
            out[charge_id] = Charge(merchant_id, created_at.astimezone(dt.UTC).replace(tzinfo=None), status,
                                    failure_code, currency.strip(), amount, usd, refunded, disputed, scenario)
    return out


# ------------------------------------------------------------------------------------ helpers
def query(lake: GoldLakehouse, name: str, *params: str) -> list[dict[str, Any]]:
    """The query's rows as `lakehouse query <name> --json` prints them (decimals as text, timestamps as ISO
    text), run in this process on the module's catalog (see `catalog`)."""
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    assert spark is not None
    rows: list[dict[str, Any]] = json.loads(json.dumps(run_query(spark, name, *params), default=json_default))
    return rows


def _ratio(numerator: int, denominator: int) -> Decimal | None:
    """numerator / denominator rounded half up to 2 decimals (Spark's ROUND of an exact DECIMAL quotient)."""
    if not denominator:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(CENT, decimal.ROUND_HALF_UP)


def _pct(part: int, whole: int) -> Decimal | None:
    return _ratio(100 * part, whole)


def _dec(v: Any) -> Decimal | None:
    return None if v is None else Decimal(str(v))


def _ts(v: str | None) -> dt.datetime | None:
    return None if v is None else dt.datetime.fromisoformat(v)


def rows_of(result: list[dict[str, Any]], columns: str, **convert: Callable[[Any], Any]) -> list[Row]:
    """The named columns of a query's JSON rows, converted (decimals arrive as strings, timestamps as ISO text)."""
    names = columns.split()
    return [tuple(convert.get(c, lambda v: v)(r[c]) for c in names) for r in result]


def assert_rows(got: list[Row], expected: list[Row]) -> None:
    """Equal row lists; on a difference, the first few differing rows rather than a diff of thousands."""
    if got == expected:
        return
    diffs = [(i, g, e) for i, (g, e) in enumerate(zip(got, expected, strict=False)) if g != e][:3]
    raise AssertionError(f"{len(got)} rows, expected {len(expected)}; first differences (index, got, expected): "
                         f"{diffs}")


def by_session(events: Iterable[Ev]) -> dict[str, list[Ev]]:
    out: dict[str, list[Ev]] = defaultdict(list)
    for e in events:
        if e.session_id is not None:
            out[e.session_id].append(e)
    return out


def _in_range(day: dt.date, start: dt.date | None, end: dt.date | None) -> bool:
    return (start is None or day >= start) and (end is None or day <= end)


# ------------------------------------------------------------------------------------ expected answers
def click_step(e: Ev) -> int:
    if e.event_type == "click":
        return {"add-to-cart": 3, "pay-button": 6}[e.payload["element"]["id"]]
    return {"landing": 1, "product": 2, "cart": 4, "checkout": 5}[e.payload["page"]["type"]]


def cart_units(e: Ev) -> int | None:
    cart = e.payload["cart"]
    return None if cart is None else sum(item["quantity"] for item in cart["items"])


def expected_funnel(ev: Events, charges: dict[int, Charge], by: str, merchant_id: int | None = None,
                    start: dt.date | None = None, end: dt.date | None = None) -> list[Row]:
    """checkout_funnel: a session's depth is its deepest clickstream step, 7 when its session_end names a
    charge, 8 when that charge was authorized; it reaches every step up to its depth."""
    paid: dict[str, int] = {}
    for e in ev.sessions:
        charge_id = e.payload["charge_id"]
        if e.event_type == "session_end" and charge_id is not None and e.session_id is not None:
            charge = charges.get(charge_id)
            depth = 8 if charge is not None and charge.status in AUTHORIZED else 7
            paid[e.session_id] = max(paid.get(e.session_id, 0), depth)
    segments: dict[str, list[tuple[int, int | None, int | None]]] = defaultdict(list)
    for session_id, events in by_session(ev.clickstream).items():
        first = min(events, key=lambda e: e.at)
        p = first.payload
        if (merchant_id is not None and p["merchant_id"] != merchant_id) or not _in_range(first.at.date(), start, end):
            continue
        segment = {"none": "all", "merchant": str(p["merchant_id"]), "device": p["device"]["type"],
                   "channel": p["device"]["channel"]}[by]
        units = [u for u in map(cart_units, events) if u is not None]
        depth = max(max(map(click_step, events)), paid.get(session_id, 0))
        segments[segment].append((depth, first.customer_id, max(units) if units else None))
    rows: list[Row] = []
    for segment in sorted(segments):
        reached: list[int] = []
        for step_no, step in enumerate(STEPS, 1):
            at = [s for s in segments[segment] if s[0] >= step_no]
            carts = [s[2] for s in at if s[2] is not None]
            reached.append(len(at))
            rows.append((segment, step_no, step, len(at), len({s[1] for s in at if s[1] is not None}),
                         _pct(len(at), reached[-2]) if step_no > 1 else None, _pct(len(at), reached[0]),
                         _ratio(sum(carts), len(carts)) if step_no >= 3 else None))
    return rows


def expected_spikes(ev: Events, charges: dict[int, Charge], *, per_merchant: bool = False,
                    multiple: Decimal = Decimal("3.0"), window_hours: int = 24, min_errors: int = 5,
                    spikes_only: bool = True, start: dt.date | None = None, end: dt.date | None = None) -> list[Row]:
    """error_spikes: ERROR lines and failed charges per hour (and merchant) on the full hour grid; a spike
    when errors >= min_errors and errors > multiple x the mean of the up to `window_hours` hours before."""
    def hour(at: dt.datetime) -> dt.datetime:
        return at.replace(minute=0, second=0, microsecond=0)

    errors: dict[tuple[dt.datetime, int | None], list[dict[str, Any]]] = defaultdict(list)
    for e in ev.app_logs:
        merchant = e.payload["context"]["merchant_id"]
        if e.payload["level"] == "ERROR" and (merchant is not None or not per_merchant):
            errors[hour(e.at), merchant if per_merchant else None].append(e.payload["error"])
    failures: dict[tuple[dt.datetime, int | None], list[Charge]] = defaultdict(list)
    for c in charges.values():
        if c.status == "failed":
            failures[hour(c.created_at), c.merchant_id if per_merchant else None].append(c)
    hours = [h for h, _ in (*errors, *failures)]
    first, last = min(hours), max(hours)
    grid = [first + dt.timedelta(hours=i) for i in range(int((last - first) / dt.timedelta(hours=1)) + 1)]
    keys = {k for _, k in (*errors, *failures)}
    rows: list[tuple[dt.datetime, int | None, Row]] = []
    for key in keys:
        counts: list[int] = []
        for h in grid:
            errs, fails = errors.get((h, key), []), failures.get((h, key), [])
            n = len(errs)
            before = counts[max(0, len(counts) - window_hours):]
            spike = bool(before) and n >= min_errors and n * len(before) > multiple * sum(before)
            counts.append(n)
            card = sum(1 for x in errs if x["type"] == "card_error")
            row = (h, key, n, card, n - card, len(fails), sum(1 for c in fails if c.scenario == "card_testing"),
                   _ratio(sum(before), len(before)), _ratio(n * len(before), sum(before)) if before else None, spike,
                   sorted({f"{x['type']}:{x['code']}" for x in errs if x["type"] and x["code"]}),
                   sorted({c.failure_code for c in fails if c.failure_code}))
            if (spike or not spikes_only) and _in_range(h.date(), start, end):
                rows.append((h, key, row))
    return [row for _, _, row in sorted(rows, key=lambda r: (r[0], -1 if r[1] is None else r[1]))]


def _theme(p: dict[str, Any]) -> str:
    if p["topic"] is not None:
        return str(p["topic"])
    if p["survey"] is not None and p["survey"]["id"] is not None:
        return f"survey:{p['survey']['id']}"
    return str(p["kind"])


def expected_feedback(ev: Events, charges: dict[int, Charge], names: dict[int, str], merchant_id: int | None = None,
                      start: dt.date | None = None, end: dt.date | None = None,
                      negative_max_rating: int = 2) -> list[Row]:
    """feedback_themes: per merchant, an `(all)` row, then one per theme in name order."""
    groups: dict[int, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for e in ev.feedback:
        p = e.payload
        if (merchant_id is None or p["merchant_id"] == merchant_id) and _in_range(e.at.date(), start, end):
            groups[p["merchant_id"]][_theme(p)].append(p)
            groups[p["merchant_id"]]["(all)"].append(p)

    def row(merchant: int, theme: str, items: list[dict[str, Any]]) -> Row:
        ratings = [p["rating"] for p in items if p["rating"] is not None]
        negative = sum(1 for p in items if (p["rating"] is not None and p["rating"] <= negative_max_rating)
                       or (p["rating"] is None and p["kind"] == "free_text"))
        about = {p["charge_id"] for p in items if p["charge_id"] is not None}
        return (merchant, names.get(merchant), theme, len(items), len(ratings),
                [ratings.count(r) for r in range(1, 6)], _ratio(sum(ratings), len(ratings)), negative,
                _pct(negative, len(items)), len(about),
                sum(1 for c in about if c in charges and charges[c].refunded),
                sum(1 for c in about if c in charges and charges[c].disputed))

    return [row(m, theme, groups[m][theme]) for m in sorted(groups)
            for theme in ["(all)", *sorted(t for t in groups[m] if t != "(all)")]]


def expected_sessions(ev: Events, charges: dict[int, Charge], customer_id: int | None = None,
                      start: dt.date | None = None, end: dt.date | None = None) -> list[Row]:
    """session_reconstruction: every session id of the clickstream or the session events, in start order."""
    clicks, marks = by_session(ev.clickstream), by_session(ev.sessions)
    rows = []
    for session_id in clicks.keys() | marks.keys():
        c = sorted(clicks.get(session_id, []), key=lambda e: e.at)
        m = sorted(marks.get(session_id, []), key=lambda e: e.at)
        first = c[0] if c else m[0]
        p = first.payload
        device = p["device"]
        starts = [e.at for e in m if e.event_type == "session_start"]
        ends = [e for e in m if e.event_type == "session_end"]
        end_ev = max(ends, key=lambda e: e.at) if ends else None
        started = (min(starts) if starts
                   else end_ev.at - dt.timedelta(milliseconds=end_ev.payload["duration_ms"]) if end_ev else c[0].at)
        ended = end_ev.at if end_ev else c[-1].at
        if (customer_id is not None and first.customer_id != customer_id) or not _in_range(started.date(), start, end):
            continue
        views = [e for e in c if e.event_type == "page_view"]
        pages = [path for _, path in sorted((e.at, e.payload["page"]["path"]) for e in views)]
        steps = [step for _, step, _ in sorted(
            (e.at, f"click:{e.payload['element']['id']}" if e.event_type == "click"
             else f"view:{e.payload['page']['type']}", e.payload["page"]["path"]) for e in c)]
        carts = [e for e in c if e.payload["cart"] is not None]
        skus = [i["sku"] for i in max(carts, key=lambda e: e.at).payload["cart"]["items"]] if carts else None
        charge_id = end_ev.payload["charge_id"] if end_ev else None
        ch = charges.get(charge_id) if charge_id is not None else None
        payment = (ch.status, ch.failure_code, ch.currency_code, ch.amount, ch.amount_usd) if ch else (None,) * 5
        rows.append((session_id, first.customer_id, p["merchant_id"], device["type"], device["channel"], started,
                     ended, (ended - started) // dt.timedelta(milliseconds=1), bool(starts and ends), len(views),
                     len(c) - len(views), pages, steps, skus, end_ev.payload["outcome"] if end_ev else None, charge_id,
                     *payment))
    return sorted(rows, key=lambda r: (r[5], r[0]))


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module", autouse=True)
def catalog(spark: Any, gold_lakehouse: GoldLakehouse, settings: Any) -> Iterator[None]:
    """The queries run in this process on the module's lakehouse (one Spark session, not one per query)."""
    with catalog_of(spark, gold_lakehouse.settings, settings):
        yield


@pytest.fixture(scope="module")
def events(gold_lakehouse: GoldLakehouse) -> Events:
    lake = gold_lakehouse
    ev = regenerate(GOLD_SIM, dt.date.fromisoformat(lake.history["end"]), lake.settings.events.pii_share)
    assert ev.generated == lake.history["events"]["generated"], "the regenerated events differ from simulate's"
    assert sum(ev.generated["corrupted"].values()) > 0
    return ev


@pytest.fixture(scope="module")
def oltp(gold_lakehouse: GoldLakehouse) -> tuple[dict[int, Charge], dict[int, str]]:
    with connect(gold_lakehouse.settings) as conn:
        names = dict(conn.execute("SELECT merchant_id, name FROM payments.merchants").fetchall())
        return load_charges(conn), names


# ------------------------------------------------------------------------------------ tests
def test_silver_holds_exactly_the_uncorrupted_events(gold_lakehouse: GoldLakehouse, events: Events,
                                                      spark: Any) -> None:
    """What every expected answer below rests on: silver = the generated events minus the corrupted ones."""
    for family, spec in SILVER_FAMILIES.items():
        path = table_path(gold_lakehouse.settings, spec.table.full_name)
        in_silver = [r["event_id"] for r in spark.read.format("delta").load(path).select("event_id").collect()]
        expected = {e.event_id for e in getattr(events, family)}
        assert len(in_silver) == len(set(in_silver)) == len(expected), family
        assert set(in_silver) == expected, family
        generated = events.generated
        assert len(expected) == generated["per_family"][family] - generated["corrupted_per_family"][family]


FUNNEL_COLUMNS = "segment step_no step sessions customers conversion_pct overall_pct avg_cart_units"
FUNNEL_DECIMALS = {c: _dec for c in ("conversion_pct", "overall_pct", "avg_cart_units")}


def test_checkout_funnel(gold_lakehouse: GoldLakehouse, events: Events,
                         oltp: tuple[dict[int, Charge], dict[int, str]]) -> None:
    lake, (charges, _) = gold_lakehouse, oltp
    overall = rows_of(query(lake, "checkout_funnel"), FUNNEL_COLUMNS, **FUNNEL_DECIMALS)
    expected = expected_funnel(events, charges, "none")
    assert_rows(overall, expected)
    by_step = {r[2]: r for r in overall}
    # the funnel narrows at every step, and both payment outcomes are in it
    assert [r[3] for r in overall] == sorted((r[3] for r in overall), reverse=True)
    assert by_step["payment_attempted"][3] > by_step["payment_authorized"][3] > 0
    assert by_step["landing"][3] > by_step["add_to_cart"][3] > by_step["pay_click"][3]

    by_device = rows_of(query(lake, "checkout_funnel", "by=device"), FUNNEL_COLUMNS, **FUNNEL_DECIMALS)
    assert_rows(by_device, expected_funnel(events, charges, "device"))
    assert {r[0] for r in by_device} == {"mobile", "desktop", "tablet"}

    days = sorted({e.at.date() for e in events.clickstream})
    start, end = days[10], days[30]
    per_merchant = Counter(e.payload["merchant_id"] for e in events.clickstream)
    merchant = max(per_merchant, key=lambda m: (per_merchant[m], -m))
    one = rows_of(query(lake, "checkout_funnel", "by=merchant", f"merchant_id={merchant}", f"start_date={start}",
                        f"end_date={end}"), FUNNEL_COLUMNS, **FUNNEL_DECIMALS)
    assert_rows(one, expected_funnel(events, charges, "merchant", merchant, start, end))
    assert [r[0] for r in one] == [str(merchant)] * len(STEPS) and one[0][3] > 0

    with pytest.raises(Exception, match="unknown breakdown colour"):
        query(lake, "checkout_funnel", "by=colour")


SPIKE_COLUMNS = ("hour merchant_id errors card_errors other_errors failed_payments card_testing_declines "
                 "trailing_avg_errors errors_vs_avg is_spike error_codes failure_codes")
SPIKE_CONVERT: dict[str, Callable[[Any], Any]] = {"hour": _ts, "trailing_avg_errors": _dec, "errors_vs_avg": _dec}


def test_error_spikes(gold_lakehouse: GoldLakehouse, events: Events,
                      oltp: tuple[dict[int, Charge], dict[int, str]]) -> None:
    lake, (charges, _) = gold_lakehouse, oltp
    spikes = rows_of(query(lake, "error_spikes"), SPIKE_COLUMNS, **SPIKE_CONVERT)
    assert_rows(spikes, expected_spikes(events, charges))
    # card-testing bursts decline many payments within minutes: they show up as spikes of card errors
    assert spikes and all(r[9] for r in spikes)
    assert any(r[6] >= 5 and r[3] >= 5 for r in spikes)

    days = sorted({e.at.date() for e in events.app_logs})
    start, end = days[5], days[20]
    every_hour = rows_of(query(lake, "error_spikes", "per_merchant=true", "spikes_only=false", "multiple=2.5",
                               "window_hours=6", "min_errors=2", f"start_date={start}", f"end_date={end}"),
                         SPIKE_COLUMNS, **SPIKE_CONVERT)
    expected = expected_spikes(events, charges, per_merchant=True, multiple=Decimal("2.5"), window_hours=6,
                               min_errors=2, spikes_only=False, start=start, end=end)
    assert_rows(every_hour, expected)
    merchants = {r[1] for r in every_hour}
    assert None not in merchants and len(merchants) > 1
    assert len(every_hour) == 24 * ((end - start).days + 1) * len(merchants)
    assert any(r[9] for r in every_hour)


FEEDBACK_COLUMNS = ("merchant_id merchant_name theme feedback rated rating_counts avg_rating negative negative_pct "
                    "charges refunded_charges disputed_charges")
FEEDBACK_DECIMALS = {c: _dec for c in ("avg_rating", "negative_pct")}


def test_feedback_themes(gold_lakehouse: GoldLakehouse, events: Events,
                         oltp: tuple[dict[int, Charge], dict[int, str]]) -> None:
    lake, (charges, names) = gold_lakehouse, oltp
    themes = rows_of(query(lake, "feedback_themes"), FEEDBACK_COLUMNS, **FEEDBACK_DECIMALS)
    assert_rows(themes, expected_feedback(events, charges, names))
    seen = {r[2] for r in themes}
    assert {"(all)", "review", "refund", "payment_failed"} <= seen and any(t.startswith("survey:") for t in seen)
    assert sum(r[3] for r in themes if r[2] == "(all)") == len(events.feedback)
    assert any(r[10] for r in themes if r[2] == "refund")     # complaints about refunds are about refunded payments

    days = sorted({e.at.date() for e in events.feedback})
    start, end = days[3], days[-10]
    merchant = themes[0][0]
    one = rows_of(query(lake, "feedback_themes", f"merchant_id={merchant}", f"start_date={start}",
                        f"end_date={end}", "negative_max_rating=3"), FEEDBACK_COLUMNS, **FEEDBACK_DECIMALS)
    assert_rows(one, expected_feedback(events, charges, names, merchant, start, end, negative_max_rating=3))
    assert one and {r[0] for r in one} == {merchant}


SESSION_COLUMNS = ("session_id customer_id merchant_id device_type channel started_at ended_at duration_ms complete "
                   "page_views clicks pages steps cart_skus outcome charge_id payment_status failure_code "
                   "currency_code amount amount_usd")
SESSION_CONVERT: dict[str, Callable[[Any], Any]] = {"started_at": _ts, "ended_at": _ts, "amount": _dec,
                                                    "amount_usd": _dec}


def test_session_reconstruction(gold_lakehouse: GoldLakehouse, events: Events,
                                oltp: tuple[dict[int, Charge], dict[int, str]]) -> None:
    lake, (charges, _) = gold_lakehouse, oltp
    every = rows_of(query(lake, "session_reconstruction"), SESSION_COLUMNS, **SESSION_CONVERT)
    expected = expected_sessions(events, charges)
    assert_rows(every, expected)
    assert len(every) == len({e.session_id for e in events.sessions + events.clickstream if e.session_id})
    outcomes = {(r[14], r[16]) for r in every}
    assert {("checkout_completed", "captured"), ("checkout_declined", "failed"), ("abandoned", None),
            ("browsed", None)} <= outcomes
    assert any(not r[8] for r in every) and any(r[1] is None for r in every)   # incomplete and anonymous ones

    days = sorted({r[5].date() for r in every})
    start, end = days[2], days[-3]
    per_customer = Counter(r[1] for r in every if r[1] is not None)
    customer = max(per_customer, key=lambda cid: (per_customer[cid], -cid))
    one = rows_of(query(lake, "session_reconstruction", f"customer_id={customer}", f"start_date={start}",
                        f"end_date={end}"), SESSION_COLUMNS, **SESSION_CONVERT)
    assert_rows(one, expected_sessions(events, charges, customer, start, end))
    assert one and {r[1] for r in one} == {customer}
