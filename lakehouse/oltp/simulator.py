"""Payment traffic simulator: a seeded world of merchants and customers, history backfilled fast with
COPY, or real-time traffic through the ACID service layer.

Determinism: every entity draws from its own `random.Random` stream keyed by the seed and the
entity, and ids are assigned in generation order, so the same seed and end date give identical rows
(the vault's ciphertext excepted: its nonces are random by design).

Fraud is injected with ground truth in `labels.fraud_ground_truth`:
- card_testing: bursts of small charges on one stolen card at one merchant within minutes, many declined;
- account_takeover: a customer's card used from a new device in a new country, for a high amount;
- compromised_terminal: many different cards charged at one terminal over several days;
- friendly_fraud: a genuine purchase later disputed by the customer as unrecognised.
Fraud leads to disputes (chargebacks) 5 to 45 days later — the label delay models train with.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from lakehouse.oltp import reference
from lakehouse.oltp.service import platform_fee
from lakehouse.oltp.vault import VaultKey, card_brand, luhn_check_digit

UTC = dt.UTC
DEVICES = ("mobile", "desktop", "tablet")
FIRST_NAMES = ("Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivan", "Jaya", "Kofi", "Lena",
               "Mateo", "Nia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tariq", "Uma", "Vera", "Wei", "Yara")
LAST_NAMES = ("Silva", "Okafor", "Müller", "Tanaka", "Dubois", "Smith", "Kowalski", "Rossi", "Haddad", "Nguyen",
              "Patel", "García", "Jensen", "Kim", "Mensah", "Novak")
BINS = {"visa": ("424242", "411111", "450875", "476173"), "mastercard": ("555555", "510510", "522222"),
        "amex": ("378282", "371449"), "discover": ("601111",), "jcb": ("353011",)}
# Hour-of-day weights (UTC, roughly one big region): quiet nights, lunch and evening peaks.
DIURNAL = (1, 1, 1, 1, 1, 2, 3, 5, 7, 8, 8, 9, 10, 9, 8, 8, 8, 9, 10, 10, 8, 6, 4, 2)
WEEKDAY = (1.0, 1.0, 1.0, 1.05, 1.15, 1.25, 0.9)   # Monday … Sunday


@dataclass(frozen=True)
class SimConfig:
    seed: int = 42
    days: int = 30
    end: dt.date = field(default_factory=lambda: dt.datetime.now(UTC).date())
    merchants: int = 60
    customers: int = 4000
    tx_per_customer_per_day: float = 0.8
    refund_rate: float = 0.04
    card_testing_bursts_per_day: float = 1.0
    account_takeovers_per_day: float = 2.0
    compromised_terminals: int = 1
    friendly_fraud_rate: float = 0.002
    subscription_share: float = 0.12

    @property
    def start(self) -> dt.date:
        return self.end - dt.timedelta(days=self.days)


# ------------------------------------------------------------------------------------ the world
@dataclass
class Merchant:
    merchant_id: int
    name: str
    country: str
    mcc: str
    currency: str
    terminals: list[int]
    subscription_plan: int | None = None


@dataclass
class Customer:
    customer_id: int
    email: str
    full_name: str
    phone: str
    country: str
    created_at: dt.datetime
    mean_amount_usd: float
    rate: float
    favourites: list[int]
    device: str
    ip: str
    cards: list[int] = field(default_factory=list)


@dataclass
class Card:
    payment_method_id: int
    customer_id: int
    token: str
    pan: str
    exp_month: int
    exp_year: int
    issuing_country: str


@dataclass
class World:
    merchants: list[Merchant]
    customers: list[Customer]
    cards: dict[int, Card]
    terminals: list[tuple[int, int, str]]                      # (terminal_id, merchant_id, kind)
    products: list[tuple[int, int, str, str]]                  # (product_id, merchant_id, name, category)
    plans: list[tuple[int, int, str, int, str, str]]           # (plan_id, product_id, name, amount, currency, interval)


def _rng(cfg: SimConfig, *key: object) -> random.Random:
    return random.Random(":".join(str(k) for k in (cfg.seed, *key)))


def _ip_in(network: str, rng: random.Random) -> str:
    a, b = network.split(".")[:2]
    return f"{a}.{b}.{rng.randrange(0, 256)}.{rng.randrange(1, 255)}"


def _networks_by_country() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for network, country, *_ in reference.ip_networks():
        out.setdefault(country, []).append(network)
    return out


def _make_pan(brand: str, rng: random.Random) -> str:
    prefix = rng.choice(BINS[brand])
    length = 15 if brand == "amex" else 16
    body = prefix + "".join(str(rng.randrange(10)) for _ in range(length - len(prefix) - 1))
    return body + luhn_check_digit(body)


def _token(rng: random.Random) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "tok_" + "".join(rng.choice(alphabet) for _ in range(24))


def build_world(cfg: SimConfig) -> World:
    """Merchants (with terminals and, for some, a subscription plan), customers with spending
    profiles, devices, home IPs and cards — all from the seed."""
    countries = sorted(reference.COUNTRIES)
    networks = _networks_by_country()
    mccs = sorted(reference.MCCS)
    merchants: list[Merchant] = []
    terminals: list[tuple[int, int, str]] = []
    products: list[tuple[int, int, str, str]] = []
    plans: list[tuple[int, int, str, int, str, str]] = []
    for i in range(cfg.merchants):
        rng = _rng(cfg, "merchant", i)
        country = rng.choice(countries)
        currency = reference.COUNTRIES[country][3]
        mcc = mccs[i % len(mccs)]
        kind = ("Market", "Digital", "Goods", "Travel", "Media")[i % 5]
        m = Merchant(i + 1, f"{rng.choice(LAST_NAMES)} {kind} {i + 1}", country, mcc, currency, [])
        for _ in range(rng.randint(1, 3)):
            tid = len(terminals) + 1
            terminals.append((tid, m.merchant_id, rng.choice(("pos", "ecommerce", "in_app"))))
            m.terminals.append(tid)
        if mcc in ("5815", "4814"):  # digital media and telecom sell subscriptions
            pid = len(products) + 1
            products.append((pid, m.merchant_id, f"{m.name} Plus", "subscription"))
            amount = rng.choice((499, 999, 1499)) * (100 if reference.CURRENCIES[currency][1] == 0 else 1)
            plans.append((len(plans) + 1, pid, "monthly", amount, currency, "month"))
            m.subscription_plan = len(plans)
        merchants.append(m)

    customers: list[Customer] = []
    cards: dict[int, Card] = {}
    start = dt.datetime.combine(cfg.start, dt.time(), UTC)
    for i in range(cfg.customers):
        rng = _rng(cfg, "customer", i)
        country = rng.choice(countries)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        local = [m.merchant_id for m in merchants if m.country == country] or [merchants[0].merchant_id]
        favourites = rng.sample(local, min(len(local), rng.randint(1, 4)))
        favourites += [rng.randrange(1, cfg.merchants + 1) for _ in range(rng.randint(0, 2))]
        c = Customer(
            customer_id=i + 1, email=f"{first}.{last}.{i + 1}@example.com".lower(), full_name=f"{first} {last}",
            phone=f"+{rng.randint(10, 99)}{rng.randint(10**8, 10**9 - 1)}", country=country,
            created_at=start - dt.timedelta(days=rng.randint(1, 700), seconds=rng.randint(0, 86399)),
            mean_amount_usd=math.exp(rng.gauss(3.4, 0.7)),
            rate=cfg.tx_per_customer_per_day * rng.lognormvariate(0, 0.6),
            favourites=favourites, device=rng.choices(DEVICES, (6, 3, 1))[0],
            ip=_ip_in(rng.choice(networks[country]), rng))
        for _ in range(1 if rng.random() < 0.8 else 2):
            brand = rng.choices(sorted(BINS), (1, 1, 3, 8, 6))[0]
            pm_id = len(cards) + 1
            cards[pm_id] = Card(pm_id, c.customer_id, _token(rng), _make_pan(brand, rng), rng.randint(1, 12),
                                cfg.end.year + rng.randint(1, 5),
                                country if rng.random() < 0.9 else rng.choice(countries))
            c.cards.append(pm_id)
        customers.append(c)
    return World(merchants, customers, cards, terminals, products, plans)


# ------------------------------------------------------------------------------------ history
@dataclass
class History:
    charges: list[tuple[Any, ...]] = field(default_factory=list)
    ledger: list[tuple[Any, ...]] = field(default_factory=list)
    refunds: list[tuple[Any, ...]] = field(default_factory=list)
    disputes: list[tuple[Any, ...]] = field(default_factory=list)
    labels: list[tuple[Any, ...]] = field(default_factory=list)
    subscriptions: list[tuple[Any, ...]] = field(default_factory=list)
    invoices: list[tuple[Any, ...]] = field(default_factory=list)


class _Builder:
    """Accumulates rows in the column order of the COPY statements below."""

    def __init__(self, cfg: SimConfig, world: World) -> None:
        self.cfg, self.world, self.h = cfg, world, History()
        self.end = dt.datetime.combine(cfg.end, dt.time(), UTC)
        self.networks = _networks_by_country()
        self.merchant = {m.merchant_id: m for m in world.merchants}
        self.usd = {c: float(v[2]) for c, v in reference.CURRENCIES.items()}

    def minor(self, usd: float, currency: str) -> int:
        exponent = reference.CURRENCIES[currency][1]
        return max(1, round(usd / self.usd[currency] * 10**exponent))

    def charge(self, at: dt.datetime, m: Merchant, c: Customer, card: int, usd: float, device: str, ip: str,
               status: str, rng: random.Random, risk: float, terminal: int | None = None,
               description: str | None = None, amount_minor: int | None = None) -> tuple[int, dt.datetime, int, str]:
        charge_id = len(self.h.charges) + 1
        amount = amount_minor if amount_minor is not None else self.minor(usd, m.currency)
        captured = amount if status == "captured" else 0
        auth_at = at + dt.timedelta(milliseconds=rng.randint(150, 1500)) if status in ("captured", "canceled") else None
        cap_at = auth_at + dt.timedelta(seconds=rng.randint(1, 30)) if status == "captured" and auth_at else None
        failed = at + dt.timedelta(milliseconds=rng.randint(100, 900)) if status == "failed" else None
        canceled = auth_at + dt.timedelta(minutes=rng.randint(1, 60)) if status == "canceled" and auth_at else None
        code = rng.choice(("card_declined", "insufficient_funds", "expired_card", "do_not_honor")) if failed else None
        terminal = terminal if terminal is not None else rng.choice(m.terminals)
        updated = cap_at or failed or canceled or at
        # how unusual the amount is for this customer: |ln(amount / their typical amount)|
        anomaly = f"{abs(math.log(usd / c.mean_amount_usd)):.3f}" if usd > 0 else None
        self.h.charges.append((charge_id, at, m.merchant_id, terminal, c.customer_id, card, amount, m.currency,
                               status, captured, code, description, device, ip, f"{risk:.4f}", anomaly, auth_at,
                               cap_at, failed, canceled, updated))
        if status == "captured" and cap_at is not None:
            fee = platform_fee(amount)
            self.h.ledger.append((len(self.h.ledger) + 1, cap_at, m.merchant_id, "charge", charge_id, at, None, None,
                                  amount, fee, amount - fee, m.currency))
        return charge_id, at, amount, m.currency

    def refund(self, ch: tuple[int, dt.datetime, int, str], merchant_id: int, rng: random.Random,
               reason: str = "requested_by_customer") -> None:
        charge_id, at, amount, currency = ch
        when = at + dt.timedelta(days=rng.uniform(0.5, 10))
        if when >= self.end:
            return
        part = amount if rng.random() < 0.6 else max(1, int(amount * rng.uniform(0.1, 0.9)))
        refund_id = len(self.h.refunds) + 1
        self.h.refunds.append((refund_id, charge_id, at, part, currency, reason, "succeeded", when, when))
        self.h.ledger.append((len(self.h.ledger) + 1, when, merchant_id, "refund", charge_id, at, refund_id, None,
                              -part, 0, -part, currency))

    def dispute(self, ch: tuple[int, dt.datetime, int, str], merchant_id: int, rng: random.Random, reason: str,
                fraud: bool) -> None:
        charge_id, at, amount, currency = ch
        opened = at + dt.timedelta(days=rng.uniform(5, 45))
        if opened >= self.end:
            return                                           # not known yet: the label delay
        dispute_id = len(self.h.disputes) + 1
        decided = opened + dt.timedelta(days=rng.uniform(7, 30))
        status, closed = ("needs_response", None)
        if decided < self.end:
            status, closed = ("lost" if fraud or rng.random() < 0.6 else "won", decided)
        self.h.disputes.append((dispute_id, charge_id, at, amount, currency, reason, status, opened, closed,
                                closed or opened))
        self.h.ledger.append((len(self.h.ledger) + 1, opened, merchant_id, "dispute", charge_id, at, None, dispute_id,
                              -amount, 0, -amount, currency))
        if status == "won" and closed is not None:
            self.h.ledger.append((len(self.h.ledger) + 1, closed, merchant_id, "dispute_won", charge_id, at, None,
                                  dispute_id, amount, 0, amount, currency))

    def label(self, charge_id: int, at: dt.datetime, scenario: str | None) -> None:
        self.h.labels.append((charge_id, at, scenario is not None, scenario, "simulator"))

    def moment(self, day: dt.date, rng: random.Random) -> dt.datetime:
        hour = rng.choices(range(24), DIURNAL)[0]
        return dt.datetime.combine(day, dt.time(hour), UTC) + dt.timedelta(seconds=rng.uniform(0, 3600))

    # -- legitimate traffic
    def genuine_day(self, day: dt.date, c: Customer) -> None:
        rng = _rng(self.cfg, "day", day.isoformat(), c.customer_id)
        n = poisson(c.rate * WEEKDAY[day.weekday()], rng)
        for _ in range(n):
            m = self.merchant[rng.choice(c.favourites)]
            at = self.moment(day, rng)
            if at < c.created_at:
                continue
            status = rng.choices(("captured", "failed", "canceled"), (93, 5, 2))[0]
            ch = self.charge(at, m, c, rng.choice(c.cards), c.mean_amount_usd * rng.lognormvariate(0, 0.5),
                             c.device if rng.random() < 0.95 else rng.choice(DEVICES), c.ip, status, rng,
                             risk=rng.betavariate(1.2, 30))
            friendly = status == "captured" and rng.random() < self.cfg.friendly_fraud_rate
            self.label(ch[0], at, "friendly_fraud" if friendly else None)
            if status != "captured":
                continue
            if friendly:
                self.dispute(ch, m.merchant_id, rng, "unrecognized", fraud=True)
            elif rng.random() < self.cfg.refund_rate:
                self.refund(ch, m.merchant_id, rng)

    # -- fraud
    def card_testing(self, day: dt.date, k: int) -> None:
        rng = _rng(self.cfg, "card_testing", day.isoformat(), k)
        victim = rng.choice(self.world.customers)
        digital = [m for m in self.world.merchants if m.mcc in ("5815", "5999", "5967")] or self.world.merchants
        m = rng.choice(digital)
        at = self.moment(day, rng)
        device, ip = rng.choice(DEVICES), _ip_in(rng.choice(self.networks[rng.choice(sorted(self.networks))]), rng)
        for _ in range(rng.randint(8, 25)):
            at += dt.timedelta(seconds=rng.uniform(5, 40))
            status = "failed" if rng.random() < 0.6 else "captured"
            ch = self.charge(at, m, victim, rng.choice(victim.cards), rng.uniform(0.5, 3.0), device, ip, status, rng,
                             risk=rng.uniform(0.3, 0.9))
            self.label(ch[0], at, "card_testing")

    def account_takeover(self, day: dt.date, k: int) -> None:
        rng = _rng(self.cfg, "ato", day.isoformat(), k)
        victim = rng.choice(self.world.customers)
        foreign = rng.choice([c for c in sorted(self.networks) if c != victim.country])
        ip = _ip_in(rng.choice(self.networks[foreign]), rng)
        device = rng.choice([d for d in DEVICES if d != victim.device])
        high_risk = [m for m in self.world.merchants if reference.MCCS[m.mcc][1] == "high"] or self.world.merchants
        at = self.moment(day, rng)
        for _ in range(rng.randint(1, 3)):
            at += dt.timedelta(minutes=rng.uniform(1, 30))
            m = rng.choice(high_risk)
            ch = self.charge(at, m, victim, rng.choice(victim.cards), victim.mean_amount_usd * rng.uniform(5, 20),
                             device, ip, "captured", rng, risk=rng.uniform(0.2, 0.95))
            self.label(ch[0], at, "account_takeover")
            if rng.random() < 0.85:
                self.dispute(ch, m.merchant_id, rng, "fraudulent", fraud=True)

    def compromised_terminal(self, k: int) -> None:
        rng = _rng(self.cfg, "terminal", k)
        tid, merchant_id, _ = rng.choice(self.world.terminals)
        m = self.merchant[merchant_id]
        first = self.cfg.start + dt.timedelta(days=rng.randint(0, max(0, self.cfg.days - 6)))
        for d in range(rng.randint(3, 6)):
            day = first + dt.timedelta(days=d)
            if day >= self.cfg.end:
                break
            for _ in range(rng.randint(5, 15)):
                c = rng.choice(self.world.customers)
                at = self.moment(day, rng)
                ch = self.charge(at, m, c, rng.choice(c.cards), rng.uniform(40, 400), "pos", c.ip, "captured", rng,
                                 risk=rng.uniform(0.05, 0.6), terminal=tid)
                self.label(ch[0], at, "compromised_terminal")
                if rng.random() < 0.7:
                    self.dispute(ch, m.merchant_id, rng, "fraudulent", fraud=True)

    def subscriptions(self) -> None:
        subscribable = [m for m in self.world.merchants if m.subscription_plan]
        if not subscribable:
            return
        plan_by_id = {p[0]: p for p in self.world.plans}
        for c in self.world.customers:
            rng = _rng(self.cfg, "subscription", c.customer_id)
            if rng.random() >= self.cfg.subscription_share:
                continue
            m = rng.choice(subscribable)
            assert m.subscription_plan is not None
            plan = plan_by_id[m.subscription_plan]
            sub_id = len(self.h.subscriptions) + 1
            start = dt.datetime.combine(self.cfg.start, dt.time(), UTC) - dt.timedelta(days=rng.randint(0, 90),
                                                                                        seconds=rng.randint(0, 86399))
            period_start = start
            canceled_at = None
            card = c.cards[0]
            while True:
                period_end = _add_month(period_start)
                if period_start >= dt.datetime.combine(self.cfg.start, dt.time(), UTC) and period_start < self.end:
                    ch = self.charge(period_start, m, c, card, 0, "unknown", c.ip, "captured", rng, risk=0.01,
                                     description=f"subscription {sub_id}", amount_minor=plan[3])
                    captured_at = self.h.charges[-1][17]
                    self.label(ch[0], period_start, None)
                    self.h.invoices.append((len(self.h.invoices) + 1, sub_id, period_start, period_end, plan[3],
                                            plan[4], "paid", ch[0], period_start, period_start, captured_at))
                if period_end >= self.end:
                    break
                if rng.random() < 0.05:
                    canceled_at = period_end - dt.timedelta(days=rng.uniform(0.1, 5))
                    break
                period_start = period_end
            status = "canceled" if canceled_at else "active"
            self.h.subscriptions.append((sub_id, c.customer_id, plan[0], card, status, period_start,
                                         _add_month(period_start), canceled_at, start, canceled_at or period_start))


def _add_month(t: dt.datetime) -> dt.datetime:
    year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
    return t.replace(year=year, month=month, day=min(t.day, 28))


def poisson(lam: float, rng: random.Random) -> int:
    """A Poisson draw (Knuth's method; a normal approximation above 50, where exp(-lam) loses precision)."""
    if lam <= 0:
        return 0
    if lam > 50:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    threshold, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= threshold:
            return k
        k += 1


def build_history(cfg: SimConfig, world: World) -> History:
    """Every charge, refund, dispute, ledger entry, subscription, invoice and label of the window."""
    b = _Builder(cfg, world)
    for offset in range(cfg.days):
        day = cfg.start + dt.timedelta(days=offset)
        for c in world.customers:
            b.genuine_day(day, c)
        rng = _rng(cfg, "fraud-count", day.isoformat())
        for k in range(poisson(cfg.card_testing_bursts_per_day, rng)):
            b.card_testing(day, k)
        for k in range(poisson(cfg.account_takeovers_per_day, rng)):
            b.account_takeover(day, k)
    for k in range(cfg.compromised_terminals):
        b.compromised_terminal(k)
    b.subscriptions()
    return b.h


# ------------------------------------------------------------------------------------ loading
TABLE_COLUMNS: dict[str, Sequence[str]] = {
    "payments.merchants": ("merchant_id", "name", "country_code", "mcc", "default_currency", "created_at",
                           "updated_at"),
    "payments.terminals": ("terminal_id", "merchant_id", "kind", "created_at"),
    "payments.customers": ("customer_id", "email", "full_name", "phone", "country_code", "created_at", "updated_at"),
    "payments.products": ("product_id", "merchant_id", "name", "category", "created_at"),
    "payments.plans": ("plan_id", "product_id", "name", "amount_minor", "currency_code", "billing_interval"),
    "payments.payment_methods": ("payment_method_id", "customer_id", "kind", "created_at", "updated_at"),
    "payments.cards": ("payment_method_id", "token", "brand", "bin", "last4", "exp_month", "exp_year", "fingerprint",
                       "issuing_country"),
    "payments.charges": ("charge_id", "created_at", "merchant_id", "terminal_id", "customer_id", "payment_method_id",
                         "amount_minor", "currency_code", "status", "captured_amount_minor", "failure_code",
                         "description", "device_type", "ip_address", "risk_score", "anomaly_score", "authorized_at",
                         "captured_at", "failed_at", "canceled_at", "updated_at"),
    "payments.balance_transactions": ("txn_id", "created_at", "merchant_id", "kind", "charge_id", "charge_created_at",
                                      "refund_id", "dispute_id", "amount_minor", "fee_minor", "net_minor",
                                      "currency_code"),
    "payments.refunds": ("refund_id", "charge_id", "charge_created_at", "amount_minor", "currency_code", "reason",
                         "status", "created_at", "updated_at"),
    "payments.disputes": ("dispute_id", "charge_id", "charge_created_at", "amount_minor", "currency_code", "reason",
                          "status", "opened_at", "closed_at", "updated_at"),
    "payments.subscriptions": ("subscription_id", "customer_id", "plan_id", "payment_method_id", "status",
                               "current_period_start", "current_period_end", "canceled_at", "created_at", "updated_at"),
    "payments.invoices": ("invoice_id", "subscription_id", "period_start", "period_end", "amount_minor",
                          "currency_code", "status", "charge_id", "charge_created_at", "created_at", "paid_at"),
    "labels.fraud_ground_truth": ("charge_id", "charge_created_at", "is_fraud", "scenario", "source"),
}
SEQUENCES = {  # table -> (sequence, id column)
    "payments.merchants": "merchant_id", "payments.terminals": "terminal_id", "payments.customers": "customer_id",
    "payments.products": "product_id", "payments.plans": "plan_id", "payments.payment_methods": "payment_method_id",
    "payments.charges": "charge_id", "payments.balance_transactions": "txn_id", "payments.refunds": "refund_id",
    "payments.disputes": "dispute_id", "payments.subscriptions": "subscription_id", "payments.invoices": "invoice_id",
}


# Tables whose only row triggers are foreign-key checks (and guards on UPDATE / DELETE): their COPY
# skips the per-row checks, and every foreign key is then verified set-wise in the same transaction.
BULK_VALIDATED = ("payments.balance_transactions", "labels.fraud_ground_truth")


def foreign_key_violations(conn: psycopg.Connection[Any], table: str) -> dict[str, int]:
    """Rows of `table` whose foreign keys point nowhere, per constraint (one anti-join each)."""
    fks = conn.execute(
        "SELECT c.conname, c.confrelid::regclass::text,"
        " array(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, o) JOIN pg_attribute a"
        "       ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o),"
        " array(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, o) JOIN pg_attribute a"
        "       ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o) "
        "FROM pg_constraint c WHERE c.contype = 'f' AND c.conrelid = %s::regclass AND c.conparentid = 0",
        (table,)).fetchall()
    out = {}
    for name, ref, cols, ref_cols in fks:
        t = sql.SQL
        present = t(" AND ").join(t("t.{} IS NOT NULL").format(sql.Identifier(c)) for c in cols)
        match = t(" AND ").join(t("r.{} = t.{}").format(sql.Identifier(rc), sql.Identifier(c))
                                for c, rc in zip(cols, ref_cols, strict=True))
        schema, _, rel = ref.partition(".")
        query = t("SELECT count(*) FROM {tbl} t WHERE {present} AND NOT EXISTS (SELECT 1 FROM {ref} r WHERE {match})"
                  ).format(tbl=sql.Identifier(*table.split(".")), present=present,
                           ref=sql.Identifier(schema, rel) if rel else sql.Identifier(schema), match=match)
        row = conn.execute(query).fetchone()
        out[name] = int(row[0]) if row else 0
    return out


def _copy(conn: psycopg.Connection[Any], table: str, rows: Iterable[Sequence[Any]]) -> int:
    cols = ", ".join(TABLE_COLUMNS[table])
    n = 0
    with conn.cursor().copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            n += 1
    return n


def _world_rows(cfg: SimConfig, world: World, key: VaultKey) -> dict[str, list[tuple[Any, ...]]]:
    t0 = dt.datetime.combine(cfg.start, dt.time(), UTC) - dt.timedelta(days=800)
    cards = world.cards.values()
    return {
        "payments.merchants": [(m.merchant_id, m.name, m.country, m.mcc, m.currency, t0, t0) for m in world.merchants],
        "payments.terminals": [(tid, mid, kind, t0) for tid, mid, kind in world.terminals],
        "payments.customers": [(c.customer_id, c.email, c.full_name, c.phone, c.country, c.created_at, c.created_at)
                               for c in world.customers],
        "payments.products": [(*p, t0) for p in world.products],
        "payments.plans": list(world.plans),
        "payments.payment_methods": [(card.payment_method_id, card.customer_id, "card", t0, t0) for card in cards],
        "payments.cards": [(card.payment_method_id, card.token, card_brand(card.pan), card.pan[:6], card.pan[-4:],
                            card.exp_month, card.exp_year, key.fingerprint(card.pan), card.issuing_country)
                           for card in cards],
    }


def backfill(conn: psycopg.Connection[Any], cfg: SimConfig, key: VaultKey, progress: bool = True,
             world: World | None = None, history: History | None = None) -> dict[str, int]:
    """Generates the world and its history (unless given, as built by `build_world` / `build_history`
    for `cfg`) and loads it with COPY in one transaction.

    Needs an empty payments schema (ids are the simulator's). Returns rows loaded per table."""
    def say(msg: str) -> None:
        if progress:
            print(msg, file=sys.stderr, flush=True)

    existing = conn.execute("SELECT count(*) FROM payments.customers").fetchone()
    if existing and existing[0]:
        raise RuntimeError("backfill needs an empty payments schema (found customers); start from a fresh database, "
                           "e.g. `lakehouse stack down --purge` then `lakehouse stack up` and `lakehouse oltp migrate`")
    t0 = time.monotonic()
    say(f"simulate: seed {cfg.seed}, {cfg.days} days to {cfg.end}, {cfg.merchants} merchants, "
        f"{cfg.customers} customers")
    world = world if world is not None else build_world(cfg)
    history = history if history is not None else build_history(cfg, world)
    say(f"  generated {len(history.charges):,} charges in {time.monotonic() - t0:.1f}s; loading …")
    counts: dict[str, int] = {}
    with conn.transaction():
        reference.ensure_reference_data(conn, cfg.start - dt.timedelta(days=1), cfg.end, seed=cfg.seed)
        for table in ("charges", "balance_transactions"):
            conn.execute("SELECT payments.ensure_month_partitions(%s, %s, %s)",
                         (table, cfg.start - dt.timedelta(days=31), cfg.end + dt.timedelta(days=62)))
        tables = _world_rows(cfg, world, key)
        tables |= {"payments.subscriptions": history.subscriptions, "payments.charges": history.charges,
                   "payments.refunds": history.refunds, "payments.disputes": history.disputes,
                   "payments.balance_transactions": history.ledger, "payments.invoices": history.invoices,
                   "labels.fraud_ground_truth": history.labels}
        for table, rows in tables.items():
            t1 = time.monotonic()
            if table in BULK_VALIDATED:
                conn.execute("SET LOCAL session_replication_role = replica")
            counts[table] = _copy(conn, table, rows)
            if table in BULK_VALIDATED:
                conn.execute("SET LOCAL session_replication_role = origin")
                broken = {k: v for k, v in foreign_key_violations(conn, table).items() if v}
                if broken:
                    raise RuntimeError(f"backfill: {table} has rows violating foreign keys {broken}; nothing loaded")
            say(f"  {table:<32} {counts[table]:>9,} rows  {time.monotonic() - t1:6.1f}s")
        with conn.cursor() as cur:
            cur.executemany("SELECT vault.store_pan(%s, %s, %s)",
                            [(c.token, key.encrypt(c.pan, c.token), key.key_id) for c in world.cards.values()])
        counts["vault.card_pans"] = len(world.cards)
        for table, column in SEQUENCES.items():
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                         f"(SELECT coalesce(max({column}), 0) + 1 FROM {table}), false)")
    say(f"  loaded in {time.monotonic() - t0:.1f}s total")
    return counts


# ------------------------------------------------------------------------------------ real time
@dataclass
class LiveStats:
    attempted: int = 0
    committed: int = 0
    failed: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, ok: bool, ms: float) -> None:
        with self.lock:
            self.attempted += 1
            if ok:
                self.committed += 1
                self.latencies_ms.append(ms)
            else:
                self.failed += 1


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def ensure_partitions_ahead(conn: psycopg.Connection[Any], months: int = 2) -> None:
    """Monthly partitions of charges and the ledger from this month to `months` ahead (idempotent), so
    that live traffic never lands in the default partition."""
    today = dt.datetime.now(UTC).date()
    ahead = today + dt.timedelta(days=31 * months)
    for table in ("charges", "balance_transactions"):
        conn.execute("SELECT payments.ensure_month_partitions(%s, %s, %s)", (table, today, ahead))
    conn.commit()


def world_from_db(conn: psycopg.Connection[Any], cfg: SimConfig) -> World:
    """The parties and cards that exist in the database (simulated, imported or created by the
    service), with spending profiles drawn from the seed per customer id — so live traffic works on
    any populated database."""
    networks = _networks_by_country()
    merchants = [Merchant(mid, "", country, mcc, currency.strip(), list(terminals or []))
                 for mid, country, mcc, currency, terminals in conn.execute(
                     "SELECT m.merchant_id, m.country_code, m.mcc, m.default_currency, "
                     "array_agg(t.terminal_id ORDER BY t.terminal_id) FILTER (WHERE t.terminal_id IS NOT NULL) "
                     "FROM payments.merchants m LEFT JOIN payments.terminals t USING (merchant_id) "
                     "WHERE m.status = 'active' GROUP BY 1 ORDER BY 1")]
    if not merchants:
        raise RuntimeError("no active merchants: backfill first (lakehouse simulate --days N) or import history")
    by_country: dict[str, list[int]] = {}
    for m in merchants:
        by_country.setdefault(m.country, []).append(m.merchant_id)
    customers = []
    for cid, country, created, methods in conn.execute(
            "SELECT c.customer_id, c.country_code, c.created_at, array_agg(pm.payment_method_id ORDER BY 1) "
            "FROM payments.customers c JOIN payments.payment_methods pm USING (customer_id) "
            "WHERE pm.status = 'active' GROUP BY 1 ORDER BY 1"):
        rng = _rng(cfg, "live-profile", cid)
        local = by_country.get(country) or [m.merchant_id for m in merchants]
        favourites = rng.sample(local, min(len(local), rng.randint(1, 4)))
        ip = _ip_in(rng.choice(networks[country]), rng) if country in networks else None
        customers.append(Customer(cid, "", "", "", country, created, math.exp(rng.gauss(3.4, 0.7)), 0.0,
                                  favourites, rng.choices(DEVICES, (6, 3, 1))[0], ip or "", list(methods)))
    if not customers:
        raise RuntimeError("no customers with an active payment method: backfill or import first")
    return World(merchants, customers, {}, [], [], [])


def live_plan(cfg: SimConfig, world: World, rate: float, duration_s: float) -> Iterator[tuple[float, dict[str, Any]]]:
    """(offset seconds, payment) pairs at `rate` per second, deterministic for the seed."""
    rng = _rng(cfg, "live")
    merchants = {m.merchant_id: m for m in world.merchants}
    n = int(rate * duration_s)
    for i in range(n):
        c = rng.choice(world.customers)
        m = merchants[rng.choice(c.favourites)]
        usd = c.mean_amount_usd * rng.lognormvariate(0, 0.5)
        yield i / rate, {"merchant_id": m.merchant_id, "customer_id": c.customer_id,
                         "payment_method_id": rng.choice(c.cards), "currency_code": m.currency,
                         "amount_minor": max(1, round(usd / float(reference.CURRENCIES[m.currency][2])
                                                      * 10 ** reference.CURRENCIES[m.currency][1])),
                         "device_type": c.device, "ip_address": c.ip or None,
                         "refund": rng.random() < cfg.refund_rate,
                         "decline": rng.random() < 0.05}


def run_live(svc: Any, cfg: SimConfig, world: World, rate: float, duration_s: float, workers: int = 16,
             progress: bool = True, on_payment: Callable[[dict[str, Any], Any, bool], None] | None = None
             ) -> LiveStats:
    """Real-time traffic at `rate` payments/s for `duration_s`, through the ACID service layer, from
    `workers` concurrent clients, over `world` (see `world_from_db`). Prints progress every 5 seconds.

    `on_payment(payment, ref, ok)`, when given, is called by the worker after each payment (outside the
    latency measured): the `live_plan` item, the charge's `ChargeRef` (None if none was created) and
    whether the service accepted it — e.g. the app events' sink."""
    import queue

    from lakehouse.oltp.service import ChargeRef, PaymentError

    stats = LiveStats()
    work: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=workers * 4)

    def worker() -> None:
        while (p := work.get()) is not None:
            t0 = time.perf_counter()
            ok = True
            ref: ChargeRef | None = None
            try:
                args = {k: p[k] for k in ("merchant_id", "customer_id", "payment_method_id", "amount_minor",
                                          "currency_code", "device_type", "ip_address")}
                if p["decline"]:
                    charge = svc.create_charge(**args)
                    ref = charge.ref
                    svc.fail(charge.ref, "card_declined")
                else:
                    ref = svc.pay(**args)
                    if p["refund"]:
                        svc.refund(ref, max(1, p["amount_minor"] // 2))
            except PaymentError:
                ok = False
            stats.record(ok, (time.perf_counter() - t0) * 1000)
            if on_payment is not None:
                on_payment(p, ref, ok)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    start = time.monotonic()
    last = start
    for offset, payment in live_plan(cfg, world, rate, duration_s):
        delay = start + offset - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        work.put(payment)
        if progress and time.monotonic() - last >= 5:
            last = time.monotonic()
            with stats.lock:
                lat = list(stats.latencies_ms[-2000:])
                done = stats.committed
            print(f"  {last - start:5.0f}s  {done:,} committed  {done / (last - start):7.1f}/s  "
                  f"p50 {percentile(lat, 50):.1f} ms  p95 {percentile(lat, 95):.1f} ms", file=sys.stderr, flush=True)
    for _ in threads:
        work.put(None)
    for t in threads:
        t.join()
    return stats
