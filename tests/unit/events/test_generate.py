"""The app events generated from the simulated payments: determinism, consistency with the charges,
exact noise, the envelope and the nested payloads — without Kafka."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import uuid
from collections import Counter, defaultdict
from typing import Any

import pytest

from lakehouse.events import FAMILIES, SCHEMA_VERSION, topic_name
from lakehouse.events.generate import (
    NAMESPACE,
    NOISE_KINDS,
    UNKNOWN_VERSION,
    ChargeFact,
    Event,
    EventOptions,
    LiveEvents,
    Noise,
    charge_facts,
    history_events,
    iso_ms,
    planned_noise,
    uuid5_str,
)
from lakehouse.oltp.pan_scan import CANDIDATE, contains_pan
from lakehouse.oltp.simulator import History, SimConfig, World, build_history, build_world
from lakehouse.oltp.vault import luhn_valid

UTC = dt.UTC
CFG = SimConfig(seed=7, days=6, end=dt.date(2026, 3, 1), merchants=12, customers=200,
                card_testing_bursts_per_day=2, account_takeovers_per_day=3)
TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
PAN_RUN = re.compile(r"[0-9][0-9 -]{11,}[0-9]")
ENVELOPE = {"schema_version", "event_id", "event_type", "event_time", "customer_id", "session_id", "payload"}


def pan_in(text: str) -> bool:
    """`contains_pan`, after a cheap pre-check (13 digits with spaces or dashes in a row)."""
    return bool(PAN_RUN.search(text)) and contains_pan(text)


def at(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def ms_floor(t: dt.datetime) -> dt.datetime:
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


@pytest.fixture(scope="module")
def sim() -> tuple[World, History]:
    world = build_world(CFG)
    return world, build_history(CFG, world)


@pytest.fixture(scope="module")
def clean(sim: tuple[World, History]) -> list[Event]:
    return list(history_events(CFG, *sim))


@pytest.fixture(scope="module")
def parsed(clean: list[Event]) -> list[tuple[Event, dict[str, Any]]]:
    return [(e, json.loads(e.value)) for e in clean]


@pytest.fixture(scope="module")
def facts(sim: tuple[World, History]) -> list[ChargeFact]:
    return charge_facts(sim[1])


def test_the_same_seed_gives_identical_bytes_and_another_seed_other_events(clean: list[Event]) -> None:
    world = build_world(CFG)                              # everything rebuilt from the seed alone
    again = history_events(CFG, world, build_history(CFG, world))
    assert list(again) == clean
    other_cfg = dataclasses.replace(CFG, seed=8)
    other_world = build_world(other_cfg)
    other = list(history_events(other_cfg, other_world, build_history(other_cfg, other_world)))
    assert other != clean
    ids = {json.loads(e.value)["event_id"] for e in clean}
    assert ids.isdisjoint(json.loads(e.value)["event_id"] for e in other)


def test_valid_events_have_the_envelope_and_the_nested_payload_of_their_family(
        parsed: list[tuple[Event, dict[str, Any]]]) -> None:
    assert {e.family for e, _ in parsed} == set(FAMILIES)
    ids = [doc["event_id"] for _, doc in parsed]
    assert len(set(ids)) == len(ids)
    for e, doc in parsed:
        assert e.corruption is None
        assert set(doc) == ENVELOPE
        assert doc["schema_version"] == SCHEMA_VERSION == 1
        assert uuid.UUID(doc["event_id"]).version == 5
        assert TIME.match(doc["event_time"]), doc["event_time"]
        p = doc["payload"]
        if e.family == "clickstream":
            assert doc["event_type"] in ("page_view", "click")
            assert set(p) == {"page", "element", "merchant_id", "device", "geo", "cart"}
            assert set(p["page"]) == {"type", "path", "referrer"} and p["page"]["path"].startswith("/")
            assert set(p["device"]) == {"type", "os", "channel", "app_version"}
            assert set(p["geo"]) == {"ip", "country", "city"}
            if p["cart"] is not None:
                assert sum(i["quantity"] * i["unit_amount_minor"] for i in p["cart"]["items"]) \
                    == p["cart"]["amount_minor"]
            assert (p["element"] is None) == (doc["event_type"] == "page_view")
        elif e.family == "sessions":
            assert doc["event_type"] in ("session_start", "session_end")
            assert {"channel", "device", "geo", "landing", "outcome", "charge_id", "duration_ms"} <= set(p)
            assert (p["outcome"] is None) == (doc["event_type"] == "session_start")
        elif e.family == "app_logs":
            assert p["level"] in ("INFO", "WARN", "ERROR")
            assert doc["event_type"] == ("error" if p["level"] == "ERROR" else "log")
            assert set(p) == {"level", "service", "message", "trace_id", "error", "context", "http"}
            assert (p["error"] is not None) == (p["level"] == "ERROR")
        else:
            assert doc["event_type"] == p["kind"] and p["kind"] in ("review", "survey", "free_text")
            assert p["rating"] is None if p["kind"] == "free_text" else 1 <= p["rating"] <= 5
            assert doc["customer_id"] is not None and doc["session_id"] is None


def test_keys_are_the_customer_or_else_the_session_or_the_service(parsed: list[tuple[Event, dict[str, Any]]]) -> None:
    kinds: Counter[str] = Counter()
    for e, doc in parsed:
        if doc["customer_id"] is not None:
            assert e.key == str(doc["customer_id"]).encode()
            kinds["customer"] += 1
        elif doc["session_id"] is not None:
            assert e.key == doc["session_id"].encode()          # anonymous browsing
            kinds["session"] += 1
        else:
            assert e.family == "app_logs" and e.key == doc["payload"]["service"].encode()   # background logs
            kinds["service"] += 1
    assert min(kinds.values()) > 0 and set(kinds) == {"customer", "session", "service"}


def test_events_come_in_event_time_order(parsed: list[tuple[Event, dict[str, Any]]]) -> None:
    times = [doc["event_time"] for _, doc in parsed]
    assert times == sorted(times)


def test_every_failed_charge_has_an_error_log_with_its_decline_code_and_charge_id(
        parsed: list[tuple[Event, dict[str, Any]]], facts: list[ChargeFact]) -> None:
    errors = defaultdict(list)
    for e, doc in parsed:
        if e.family == "app_logs" and doc["payload"]["level"] == "ERROR" and doc["payload"]["error"]["charge_id"]:
            errors[doc["payload"]["error"]["charge_id"]].append(doc)
    failed = {f.charge_id: f for f in facts if f.status == "failed"}
    assert len(failed) > 50
    assert set(errors) == set(failed)          # one for every failed charge, and only for failed charges
    for charge_id, docs in errors.items():
        f = failed[charge_id]
        assert len(docs) == 1
        doc = docs[0]
        assert doc["customer_id"] == f.customer_id
        assert doc["payload"]["error"] == {"type": "card_error", "code": f.failure_code, "charge_id": charge_id}
        assert f.failed_at is not None
        assert ms_floor(f.failed_at) <= at(doc["event_time"]) <= f.failed_at + dt.timedelta(seconds=1)


def test_every_captured_online_charge_has_a_checkout_session_before_the_payment(
        parsed: list[tuple[Event, dict[str, Any]]], facts: list[ChargeFact]) -> None:
    by_session: dict[str, list[dict[str, Any]]] = defaultdict(list)
    checkout: dict[int, list[str]] = defaultdict(list)
    for e, doc in parsed:
        if doc["session_id"] and e.family in ("clickstream", "sessions"):
            by_session[doc["session_id"]].append(doc)
            if doc["event_type"] == "session_end" and doc["payload"]["charge_id"]:
                checkout[doc["payload"]["charge_id"]].append(doc["session_id"])
    captured = [f for f in facts if f.status == "captured" and f.device in ("mobile", "desktop", "tablet")]
    assert len(captured) > 1000
    offline = {f.charge_id for f in facts if f.device not in ("mobile", "desktop", "tablet")}
    assert offline and offline.isdisjoint(checkout)       # POS and subscription renewals have no session
    for f in captured:
        assert len(checkout[f.charge_id]) == 1, f
        docs = by_session[checkout[f.charge_id][0]]
        views = [d for d in docs if d["event_type"] == "page_view"]
        assert [v["payload"]["page"]["type"] for v in views] == ["landing", "product", "cart", "checkout"]
        steps = [d for d in docs if d["event_type"] in ("page_view", "click")]
        assert all(at(d["event_time"]) < f.created_at for d in steps)
        assert steps[-1]["payload"]["element"]["id"] == "pay-button"
        assert docs[0]["event_type"] == "session_start" and docs[-1]["event_type"] == "session_end"
        assert docs[-1]["payload"]["outcome"] == "checkout_completed"
        assert at(docs[-1]["event_time"]) > f.settled_at - dt.timedelta(milliseconds=1)
        for d in docs:                                    # the same customer, device, IP and amount as the charge
            assert d["customer_id"] == f.customer_id
            assert d["payload"]["device"]["type"] == f.device and d["payload"]["geo"]["ip"] == f.ip
        assert steps[-1]["payload"]["cart"]["amount_minor"] == f.amount_minor
        assert steps[-1]["payload"]["cart"]["currency"] == f.currency


def test_sessions_without_a_payment_exist_and_are_complete(parsed: list[tuple[Event, dict[str, Any]]]) -> None:
    outcomes: Counter[str] = Counter()
    starts = {doc["session_id"] for _, doc in parsed if doc["event_type"] == "session_start"}
    ends = {doc["session_id"]: doc for _, doc in parsed if doc["event_type"] == "session_end"}
    assert starts == set(ends)
    for doc in ends.values():
        outcomes[doc["payload"]["outcome"]] += 1
        assert (doc["payload"]["charge_id"] is None) == (doc["payload"]["outcome"] in ("abandoned", "browsed"))
        assert (doc["customer_id"] is None) == (doc["payload"]["outcome"] == "browsed")
    assert set(outcomes) == {"checkout_completed", "checkout_declined", "abandoned", "browsed"}


def test_feedback_follows_purchases_and_ratings_drop_after_refunds() -> None:
    cfg = dataclasses.replace(CFG, customers=150, refund_rate=0.6)      # many refunds
    world = build_world(cfg)
    history = build_history(cfg, world)
    by_id = {f.charge_id: f for f in charge_facts(history)}
    ratings: dict[str, list[int]] = defaultdict(list)
    for e in history_events(cfg, world, history):
        if e.family != "feedback":
            continue
        doc = json.loads(e.value)
        p = doc["payload"]
        f = by_id[p["charge_id"]]
        assert doc["customer_id"] == f.customer_id and p["merchant_id"] == f.merchant_id
        assert at(doc["event_time"]) > f.created_at
        assert at(doc["event_time"]) < dt.datetime.combine(cfg.end, dt.time(), UTC)
        assert f.scenario != "card_testing"
        if p["topic"] == "refund":
            assert f.refunds and at(doc["event_time"]) > f.refunds[0][1]
        if p["topic"] == "payment_failed":
            assert f.status == "failed"
        if p["kind"] == "review":
            ratings["refund" if p["topic"] == "refund" else "plain"].append(p["rating"])
    assert len(ratings["refund"]) >= 5 and len(ratings["plain"]) >= 5
    mean = {k: sum(v) / len(v) for k, v in ratings.items()}
    assert mean["refund"] < 3 < 4 < mean["plain"]


def test_noise_corrupts_exactly_the_planned_share_per_kind(sim: tuple[World, History], clean: list[Event]) -> None:
    noisy = list(history_events(CFG, *sim, EventOptions(noise=0.1)))
    assert len(noisy) == len(clean)
    planned = planned_noise(len(clean), 0.1)
    assert sum(planned.values()) == len(clean) // 10
    assert Counter(e.corruption for e in noisy if e.corruption) == planned
    seen: Counter[str] = Counter()
    for good, bad in zip(clean, noisy, strict=True):
        assert (good.family, good.key) == (bad.family, bad.key)
        if bad.corruption is None:
            assert bad.value == good.value                 # the noise changes nothing else
            continue
        seen[classify(bad.value)] += 1
        assert bad.corruption == classify(bad.value)
    assert seen == planned


def classify(value: bytes) -> str:
    """The noise kind a consumer would diagnose from the bytes alone."""
    try:
        doc = json.loads(value)
    except ValueError:
        return "truncated_json" if value.startswith(b"{") else "not_json"
    if "event_id" not in doc:
        return "missing_event_id"
    return "unknown_version" if doc["schema_version"] == UNKNOWN_VERSION else "valid"


@pytest.mark.parametrize(("n", "share"), [(1000, 0.1), (999, 0.25), (12345, 0.037), (10, 0.0), (7, 1.0),
                                          (100, 0.333333)])
def test_the_noise_plan_is_exact_for_any_count(n: int, share: float) -> None:
    noise = Noise(seed=1, share=share)
    doc = {"schema_version": 1, "event_id": "x", "event_type": "t", "event_time": "2026-01-01T00:00:00.000Z",
           "customer_id": 1, "session_id": None, "payload": {"a": [1, 2]}}
    kinds = Counter(kind for kind in (noise.apply(doc)[1] for _ in range(n)) if kind)
    assert dict(kinds) == {k: v for k, v in planned_noise(n, share).items() if v}
    assert sum(kinds.values()) == n * round(share * 1_000_000) // 1_000_000


def test_no_card_number_anywhere_but_customer_typed_free_text(sim: tuple[World, History]) -> None:
    world, history = sim
    stream = history_events(CFG, world, history, EventOptions(pii_share=1.0))
    events = list(stream)
    vault_pans = {c.pan for c in world.cards.values()}
    texts = 0
    for e in events:
        doc = json.loads(e.value)
        if e.family != "feedback":
            assert not pan_in(e.value.decode()), doc
            continue
        text = doc["payload"]["text"]
        without = doc["payload"] | {"text": ""}
        assert not pan_in(json.dumps(without))
        if text:
            texts += 1
            pans = [re.sub(r"[ -]", "", m.group()) for m in CANDIDATE.finditer(text)]
            emails = re.findall(r"[\w.]+@example\.(?:com|net)", text)
            assert len(pans) + len(emails) == 1, text         # pii_share 1: every text carries one
            assert all(luhn_valid(p) and p not in vault_pans for p in pans)
    assert stream.stats.pii["email"] + stream.stats.pii["card_number"] == texts > 20
    assert stream.stats.pii["card_number"] > 3
    none = history_events(CFG, world, history, EventOptions(pii_share=0.0))
    assert not any(b"@example." in e.value or pan_in(e.value.decode()) for e in none)
    assert not none.stats.pii


def test_live_payments_get_the_same_kind_of_events_deterministically(sim: tuple[World, History]) -> None:
    world, _ = sim
    created = dt.datetime(2026, 3, 2, 12, 0, 0, 123456, tzinfo=UTC)
    c = world.customers[0]
    payment = {"merchant_id": c.favourites[0], "customer_id": c.customer_id, "payment_method_id": c.cards[0],
               "currency_code": "EUR", "amount_minor": 4321, "device_type": "mobile", "ip_address": c.ip,
               "refund": False, "decline": True}
    first = LiveEvents(CFG, world).for_payment(payment, 90001, created, True)
    assert LiveEvents(CFG, world).for_payment(payment, 90001, created, True) == first
    docs = [json.loads(e.value) for e in first]
    errors = [d for d in docs if d["event_type"] == "error"]
    assert [d["payload"]["error"] for d in errors] == [{"type": "card_error", "code": "card_declined",
                                                        "charge_id": 90001}]
    mine = [d for d in docs if d["customer_id"] == c.customer_id and d["event_type"] in ("page_view", "click")]
    assert len(mine) >= 6 and all(at(d["event_time"]) < created for d in mine)
    assert all(at(d["event_time"]) <= created + dt.timedelta(seconds=15) for d in docs)
    rejected = LiveEvents(CFG, world, EventOptions(noise=0.5)).for_payment(payment, None, created, False)
    assert len(rejected) == 1 and rejected[0].family == "app_logs"


def test_helpers() -> None:
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"
    assert iso_ms(1_772_369_999_999) == "2026-03-01T12:59:59.999Z"
    for name in ("a", "7:charge:1:0", "x" * 300):
        assert uuid5_str(name) == str(uuid.uuid5(NAMESPACE, name))
    assert topic_name("events", "feedback") == "events.feedback"
    with pytest.raises(ValueError, match="unknown event family"):
        topic_name("events", "payments")
    with pytest.raises(ValueError, match="noise: must be between 0 and 1"):
        EventOptions(noise=1.5)
    assert set(planned_noise(0, 0.5)) == set(NOISE_KINDS)


def test_simulate_takes_events_and_noise(capsys: pytest.CaptureFixture[str]) -> None:
    from lakehouse.cli import build_parser

    args = build_parser().parse_args(["simulate", "--days", "1", "--events", "--noise", "0.2"])
    assert args.events is True and args.noise == 0.2
    assert build_parser().parse_args(["simulate", "--rate", "5"]).noise is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["simulate", "--days", "1", "--events", "--noise", "1.5"])
    assert "must be between 0 and 1, got 1.5" in capsys.readouterr().err
