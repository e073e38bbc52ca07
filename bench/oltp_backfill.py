"""OLTP backfill: how long `lakehouse simulate --days N` takes and how many rows it loads.

    python bench/oltp_backfill.py [--days 30] [--seed 42]

Runs on a private PostgreSQL (free port, temporary state dir); prints the figures and writes
bench/results/oltp_backfill.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import private_env, write_result

from lakehouse.common.config import load_settings
from lakehouse.oltp.db import admin_connect
from lakehouse.oltp.migrate import migrate
from lakehouse.oltp.simulator import SimConfig, backfill
from lakehouse.oltp.vault import load_vault_key
from lakehouse.stack import stack


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    env = private_env()
    os.environ.update(env)
    settings = load_settings("local")
    cfg = SimConfig(seed=args.seed, days=args.days, end=dt.date(2026, 11, 1))
    try:
        stack.up(settings, only=["postgres"])
        migrate(settings)
        t0 = time.monotonic()
        with admin_connect(settings) as conn:
            counts = backfill(conn, cfg, load_vault_key(settings))
        took = time.monotonic() - t0
    finally:
        stack.down(settings, purge=True)
        shutil.rmtree(env["LAKEHOUSE__PATHS__STATE_DIR"], ignore_errors=True)
    total = sum(counts.values())
    figures: dict[str, float | int] = {"seconds": round(took, 1), "rows_total": total,
                                       "rows_per_s": int(total / took)}
    figures.update({table: n for table, n in counts.items()})
    write_result("oltp_backfill", figures, {"days": args.days, "seed": args.seed, "merchants": cfg.merchants,
                                            "customers": cfg.customers, "end": str(cfg.end)})


if __name__ == "__main__":
    main()
