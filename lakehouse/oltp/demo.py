"""The OLTP part of `lakehouse demo`: schema, a short history, live traffic, and what landed."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from lakehouse.common.config import Settings
from lakehouse.oltp.db import admin_connect, make_pool
from lakehouse.oltp.migrate import migrate
from lakehouse.oltp.service import PaymentsService
from lakehouse.oltp.simulator import (
    SimConfig,
    backfill,
    ensure_partitions_ahead,
    percentile,
    run_live,
    world_from_db,
)
from lakehouse.oltp.vault import load_vault_key


def run_oltp_demo(settings: Settings, seed: int, days: int, live_seconds: float, rate: float) -> dict[str, Any]:
    """Migrates, backfills `days` of history when the database is empty, runs live traffic, and
    returns counts read back from PostgreSQL."""
    out: dict[str, Any] = {"migrations_applied": migrate(settings)}
    key = load_vault_key(settings)
    cfg = SimConfig(seed=seed, days=days, end=dt.datetime.now(dt.UTC).date(), merchants=30, customers=1500)
    with admin_connect(settings) as conn:
        row = conn.execute("SELECT count(*) FROM payments.customers").fetchone()
        if row is not None and row[0] == 0:
            t0 = time.monotonic()
            backfill(conn, cfg, key)
            out["backfill_s"] = round(time.monotonic() - t0, 1)
        ensure_partitions_ahead(conn)
        world = world_from_db(conn, cfg)
    with make_pool(settings, min_size=8, max_size=8) as pool:
        t0 = time.monotonic()
        stats = run_live(PaymentsService(pool, key), cfg, world, rate, live_seconds, workers=8, progress=False)
        took = time.monotonic() - t0
    out["live_committed"] = stats.committed
    out["live_rate"] = round(stats.committed / took, 1)
    out["live_p95_ms"] = round(percentile(stats.latencies_ms, 95), 1)
    with admin_connect(settings) as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM payments.charges), (SELECT count(*) FROM payments.charges "
            "WHERE status = 'captured'), (SELECT count(*) FROM payments.refunds), (SELECT count(*) FROM "
            "payments.disputes), (SELECT count(*) FROM labels.fraud_ground_truth WHERE is_fraud), "
            "(SELECT count(*) FROM payments.balance_transactions)").fetchone()
    assert counts is not None
    out.update(zip(("charges", "captured", "refunds", "disputes", "fraud_charges", "ledger_rows"), counts,
                   strict=True))
    return out
