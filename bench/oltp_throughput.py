"""OLTP throughput: payment transactions (create + authorize + capture + ledger entry, one ACID
transaction each) per second with p50 / p95 / p99 latency, and pgbench's TPC-B-like TPS on the same
server in the same run, so the ratio to what the server itself does is visible.

    python bench/oltp_throughput.py [--seconds 30] [--clients 12] [--processes 2]

Runs on a private PostgreSQL (free port, temporary state dir); prints the figures and writes
bench/results/oltp_throughput.json. Target: >= 1,000 tx/s with p95 <= 20 ms on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import private_env, write_result

from lakehouse.common.config import Settings, load_settings
from lakehouse.common.connections import pg_password
from lakehouse.oltp.db import admin_connect, make_pool
from lakehouse.oltp.migrate import migrate
from lakehouse.oltp.service import PaymentsService
from lakehouse.oltp.simulator import SimConfig, backfill, build_world, live_plan, percentile
from lakehouse.oltp.vault import load_vault_key
from lakehouse.stack import stack
from lakehouse.stack.services import Postgres

WORLD = SimConfig(seed=1, days=0, end=dt.date(2026, 1, 1), merchants=60, customers=4000)


def client_process(env: dict[str, str], clients: int, seconds: float, offset: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    """One OS process with `clients` threads, each paying in a closed loop for `seconds`."""
    import threading

    os.environ.update(env)
    settings = load_settings("local")
    payments = [p for _, p in live_plan(WORLD, build_world(WORLD), rate=1000, duration_s=20)]
    latencies: list[float] = []
    lock = threading.Lock()
    with make_pool(settings, min_size=clients, max_size=clients) as pool:
        svc = PaymentsService(pool, load_vault_key(settings))
        deadline = time.monotonic() + seconds

        def loop(k: int) -> None:
            mine: list[float] = []
            i = offset * 7919 + k * 104729
            while time.monotonic() < deadline:
                p = payments[i % len(payments)]
                i += 1
                t0 = time.perf_counter()
                svc.pay(p["merchant_id"], p["customer_id"], p["payment_method_id"], p["amount_minor"],
                        p["currency_code"], p["device_type"], p["ip_address"])
                mine.append((time.perf_counter() - t0) * 1000)
            with lock:
                latencies.extend(mine)

        threads = [threading.Thread(target=loop, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    out.put(latencies)


PAY_SCRIPT = """\\set c random(1, 4000)
SELECT payments.pay(m.merchant_id, pm.customer_id, pm.payment_method_id, 1000 + :c, m.default_currency, 'mobile',
       '44.10.1.1'::inet) FROM payments.payment_methods pm, LATERAL (SELECT merchant_id, default_currency
       FROM payments.merchants ORDER BY merchant_id LIMIT 1 OFFSET (:c % 60)) m WHERE pm.customer_id = :c LIMIT 1;
"""


def pgbench_args(settings: Settings) -> tuple[dict[str, str], list[str]]:
    env = {**os.environ, "PGPASSWORD": pg_password(settings)}
    return env, ["-h", settings.services.host, "-p", str(settings.services.postgres.port), "-U",
                 settings.services.postgres.user]


def pgbench_pay(settings: Settings, clients: int, seconds: int) -> float:
    """The same payment transaction driven by pgbench (a C client): what the server alone sustains."""
    pg = Postgres(settings)
    env, args = pgbench_args(settings)
    script = Path(settings.state_dir) / "pay.sql"
    script.write_text(PAY_SCRIPT)
    res = subprocess.run([pg.bin("pgbench"), "-n", "-c", str(clients), "-j", "2", "-T", str(seconds), "-M",
                          "prepared", "-f", str(script), *args, settings.services.postgres.database],
                         env=env, check=True, capture_output=True, text=True)
    m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", res.stdout)
    assert m, res.stdout
    return float(m.group(1))


def pgbench(settings: Settings, clients: int, seconds: int) -> float:
    pg = Postgres(settings)
    env, args = pgbench_args(settings)
    with admin_connect(settings) as admin:
        admin.autocommit = True
        admin.execute("DROP DATABASE IF EXISTS pgbench")
        admin.execute(f"CREATE DATABASE pgbench OWNER {settings.services.postgres.user}")
    subprocess.run([pg.bin("pgbench"), "-i", "-q", "-s", "10", *args, "pgbench"], env=env, check=True,
                   capture_output=True)
    res = subprocess.run([pg.bin("pgbench"), "-c", str(clients), "-j", "2", "-T", str(seconds), "-M", "prepared",
                          *args, "pgbench"], env=env, check=True, capture_output=True, text=True)
    m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", res.stdout)
    assert m, res.stdout
    return float(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--clients", type=int, default=12, help="client threads in all (default 12)")
    ap.add_argument("--processes", type=int, default=2, help="client processes (default 2: one per core)")
    args = ap.parse_args()
    env = private_env()
    os.environ.update(env)
    settings = load_settings("local")
    figures: dict[str, float | int] = {}
    try:
        stack.up(settings, only=["postgres"])
        migrate(settings)
        with admin_connect(settings) as conn:
            backfill(conn, WORLD, load_vault_key(settings), progress=False)

        out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
        per = max(1, args.clients // args.processes)
        procs = [mp.Process(target=client_process, args=(env, per, args.seconds, k, out))
                 for k in range(args.processes)]
        t0 = time.monotonic()
        for p in procs:
            p.start()
        latencies = [x for _ in procs for x in out.get()]
        for p in procs:
            p.join()
        wall = time.monotonic() - t0
        with admin_connect(settings) as conn:
            row = conn.execute("SELECT count(*) FROM payments.charges WHERE status = 'captured'").fetchone()
            ledger = conn.execute("SELECT count(*) FROM payments.balance_transactions").fetchone()
        assert row is not None and ledger is not None
        figures["payment_tx"] = len(latencies)
        figures["payment_tx_committed_in_db"] = int(row[0])
        figures["ledger_rows"] = int(ledger[0])
        figures["payment_tx_per_s"] = round(len(latencies) / args.seconds, 1)
        figures["payment_p50_ms"] = round(percentile(latencies, 50), 2)
        figures["payment_p95_ms"] = round(percentile(latencies, 95), 2)
        figures["payment_p99_ms"] = round(percentile(latencies, 99), 2)
        figures["wall_s_incl_startup"] = round(wall, 1)
        figures["pgbench_driving_payments_pay_tps"] = round(pgbench_pay(settings, args.clients, int(args.seconds)), 1)
        tps = pgbench(settings, args.clients, int(args.seconds))
        figures["pgbench_tpcb_tps"] = round(tps, 1)
        figures["ratio_payment_to_pgbench"] = round(figures["payment_tx_per_s"] / tps, 2)
    finally:
        stack.down(settings, purge=True)
        shutil.rmtree(env["LAKEHOUSE__PATHS__STATE_DIR"], ignore_errors=True)
    write_result("oltp_throughput", figures, {"seconds": args.seconds, "clients": args.clients,
                                              "processes": args.processes, "cpus": os.cpu_count()})
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
