"""The OLTP verbs of the `lakehouse` command line: `oltp …` and `simulate`.

`lakehouse.cli` calls `add_parsers`; each handler takes the parsed args and returns an exit code.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from lakehouse.common.config import Settings


def add_parsers(sub: argparse._SubParsersAction, settings_of: Callable[[argparse.Namespace], Settings]) -> None:
    """Adds `oltp` (with its own sub-verbs) to the top-level parser. `settings_of(args)` loads settings."""
    oltp = sub.add_parser("oltp", help="the OLTP database: migrations, failover, import")
    osub = oltp.add_subparsers(dest="oltp_action", required=True)

    p = osub.add_parser("migrate", help="apply the versioned schema migrations (idempotent)")
    p.set_defaults(func=lambda args: cmd_migrate(settings_of(args)))

    sim = sub.add_parser("simulate", help="generate payment traffic: backfill --days N, or real time --rate R")
    sim.add_argument("--seed", type=int, default=42, help="the same seed gives the same data (default 42)")
    sim.add_argument("--days", type=int, help="backfill this many days of history ending at --end (bulk COPY)")
    sim.add_argument("--end", type=dt.date.fromisoformat, help="last day (exclusive) of the backfill, "
                     "YYYY-MM-DD (default: today, UTC)")
    sim.add_argument("--merchants", type=int, default=60)
    sim.add_argument("--customers", type=int, default=4000)
    sim.add_argument("--rate", type=float, help="real time: payments per second through the ACID service layer")
    sim.add_argument("--duration", type=float, default=60, help="real time: seconds to run (default 60)")
    sim.add_argument("--workers", type=int, default=16, help="real time: concurrent clients (default 16)")
    sim.add_argument("--events", action="store_true", help="also produce the app events (clickstream, sessions, "
                     "logs, feedback) of the history / of the live payments to Kafka (docs/events.md)")
    sim.add_argument("--noise", type=_share, help="with --events: share of malformed or unknown-version events, "
                     "0..1 (default: events.noise)")
    sim.set_defaults(func=lambda args: cmd_simulate(settings_of(args), args))

    p = osub.add_parser("failover", help="fence the primary, promote the hot standby, repoint clients")
    p.add_argument("--immediate", action="store_true",
                   help="fence with an immediate stop (like a crash) instead of a fast shutdown")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=lambda args: cmd_failover(settings_of(args), args.immediate, args.json))

    p = osub.add_parser("import", help="load transaction history from CSV or Parquet (all rows or none)",
                        description="Loads externally produced transaction history; see docs/oltp/import.md. "
                        "Exit 0: loaded; 1: bad rows (listed; nothing loaded); 2: the mapping does not fit.")
    p.add_argument("file", help="a .csv or .parquet file")
    p.add_argument("--mapping", required=True, help="the mapping YAML (source columns -> fields)")
    p.add_argument("--json", action="store_true", help="print the report (every bad row) as JSON")
    p.add_argument("--dry-run", action="store_true", help="validate and load in a transaction, then roll back")
    p.add_argument("--seed-reference", action="store_true",
                   help="first insert the missing standard reference data (currencies, countries, MCCs)")
    p.add_argument("--max-errors", type=int, default=100, help="bad rows listed in text output (default 100)")
    p.set_defaults(func=lambda args: cmd_import(settings_of(args), args))


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def cmd_migrate(settings: Settings) -> int:
    from lakehouse.oltp.migrate import migrate

    applied = migrate(settings)
    print(f"{len(applied)} migration(s) applied" + (f": {', '.join(applied)}" if applied else " (up to date)"))
    return 0


def cmd_failover(settings: Settings, immediate: bool, as_json: bool) -> int:
    import json

    from lakehouse.stack.replica import failover, format_failover

    report = failover(settings, immediate=immediate)
    print(json.dumps(report) if as_json else format_failover(report))
    return 0


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from lakehouse.oltp.db import admin_connect, make_pool
    from lakehouse.oltp.service import PaymentsService
    from lakehouse.oltp.simulator import (
        SimConfig,
        backfill,
        build_history,
        build_world,
        ensure_partitions_ahead,
        percentile,
        run_live,
        world_from_db,
    )
    from lakehouse.oltp.vault import load_vault_key

    if (args.days is None) == (args.rate is None):
        print("error: give either --days N (backfill) or --rate R [--duration S] (real time)", file=sys.stderr)
        return 2
    end = args.end or dt.datetime.now(dt.UTC).date()
    cfg = SimConfig(seed=args.seed, days=args.days or 0, end=end, merchants=args.merchants, customers=args.customers)
    key = load_vault_key(settings)
    if args.events:
        from lakehouse.events import producer as events

        events.ensure_topics(settings)          # fail before loading anything when Kafka is not there
    if args.days is not None:
        t0 = time.monotonic()
        world = build_world(cfg) if args.events else None
        history = build_history(cfg, world) if world is not None else None
        with admin_connect(settings) as conn:   # a bulk load: runs as the administrator, like migrations
            counts = backfill(conn, cfg, key, world=world, history=history)
        took = round(time.monotonic() - t0, 1)
        doc: dict[str, Any] = {"seed": cfg.seed, "days": cfg.days, "end": str(end), "seconds": took, "rows": counts}
        if world is not None and history is not None:
            doc["events"] = events.produce_history(settings, cfg, world, history, noise=args.noise)
        print(json.dumps(doc, indent=2))
        return 1 if doc.get("events", {}).get("failed") else 0
    with admin_connect(settings) as conn:
        empty = conn.execute("SELECT count(*) = 0 FROM payments.customers").fetchone()
        if empty and empty[0]:
            backfill(conn, cfg, key)            # the world (parties, cards) without history
        ensure_partitions_ahead(conn)
        world = world_from_db(conn, cfg)
    sink = events.live_sink(settings, cfg, world, noise=args.noise) if args.events else None
    with make_pool(settings, min_size=args.workers, max_size=args.workers) as pool:
        t0 = time.monotonic()
        stats = run_live(PaymentsService(pool, key), cfg, world, args.rate, args.duration, workers=args.workers,
                         on_payment=sink)
        took = time.monotonic() - t0
    doc = {"seed": cfg.seed, "rate_target": args.rate, "seconds": round(took, 1),
           "committed": stats.committed, "rejected": stats.failed,
           "rate_achieved": round(stats.committed / took, 1),
           "p50_ms": round(percentile(stats.latencies_ms, 50), 2),
           "p95_ms": round(percentile(stats.latencies_ms, 95), 2),
           "p99_ms": round(percentile(stats.latencies_ms, 99), 2)}
    failed = False
    if sink is not None:
        doc["events"] = report = sink.close()
        failed = bool(report["failed"] or report["sink_errors"])
    print(json.dumps(doc, indent=2))
    return 1 if failed else 0


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    from lakehouse.oltp.importer import ImportFailed, MappingError, format_report, run_import

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        report = run_import(settings, args.file, args.mapping, dry_run=args.dry_run,
                            seed_reference=args.seed_reference, progress=progress)
    except MappingError as e:
        if args.json:
            print(json.dumps({"ok": False, "mapping_error": str(e)}))
        print(f"error: mapping: {e}", file=sys.stderr)
        return 2
    except ImportFailed as e:
        if args.json:
            print(json.dumps({"ok": False, "error": str(e)}))
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(report.as_dict(), indent=2) if args.json else format_report(report, args.max_errors))
    return 0 if report.ok else 1
