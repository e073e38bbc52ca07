"""Online fraud scoring latency: the Feast online lookup alone, the in-process decision (features from Redis
+ the champion) and the HTTP endpoint.

    python bench/online_scoring.py [--days 45] [--customers 1000] [--calls 2000]

Runs on a private PostgreSQL + Redis (free ports, a temporary state dir):

1. `lakehouse simulate` backfills `--days` of history; silver is loaded in bulk through the silver
   pipeline's transforms (bench/_silver_snapshot.py); `refresh_features` builds the feature tables,
   applies the Feast repo and materializes Redis; `train` + `promote` make a champion (gradient-boosted
   trees only, label delay and windows of 7 days: the history is short).
2. `--calls` timed calls each, over payments built from random recent payments (their customer, card,
   merchant, IP, device; amount and time now), after 50 warm-up calls:
   - Feast lookup, one entity: `get_online_features` of one view's features for one customer (target p99 <= 10 ms);
   - Feast lookup, one payment: the whole fraud_detection_v1 service for one payment's six entity keys;
   - decision in process: `Scorer.score` (lookup, TTLs, input derivation, model) (target p99 <= 25 ms);
   - decision over HTTP: POST /score to `lakehouse.ml.serve`'s server in this process, one connection.

Prints p50 / p95 / p99 / max per measure and writes bench/results/online_scoring.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import private_env, write_result

from lakehouse.oltp.simulator import percentile

TARGETS_MS = {"feast_one_entity": 10.0, "decision_in_process": 25.0}


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} online_scoring: {message}", file=sys.stderr, flush=True)


def timed(fn: Callable[[int], Any], calls: int, warmup: int = 50) -> list[float]:
    for i in range(warmup):
        fn(i)
    out = []
    for i in range(calls):
        started = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - started) * 1000)
    return out


def figures(ms: list[float]) -> dict[str, float]:
    return {"calls": len(ms), "p50_ms": round(percentile(ms, 50), 3), "p95_ms": round(percentile(ms, 95), 3),
            "p99_ms": round(percentile(ms, 99), 3), "max_ms": round(max(ms), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=45)
    ap.add_argument("--customers", type=int, default=1000)
    ap.add_argument("--merchants", type=int, default=20)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    env = private_env()
    os.environ.update(env)
    state = Path(env["LAKEHOUSE__PATHS__STATE_DIR"])

    from lakehouse.common.config import load_settings
    from lakehouse.common.spark import get_spark
    from lakehouse.oltp.migrate import migrate
    from lakehouse.stack import stack

    settings = load_settings("local", overrides={"ml.label_delay_days": 7, "ml.validation_days": 7,
                                                 "ml.test_days": 7, "features.skew_sample": 100})
    spark = None
    setup_s: dict[str, float] = {}
    try:
        stack.up(settings, only=["postgres", "redis"])
        migrate(settings)
        started = time.monotonic()
        subprocess.run([str(Path(sys.executable).parent / "lakehouse"), "simulate", "--seed", str(args.seed),
                        "--days", str(args.days), "--customers", str(args.customers), "--merchants",
                        str(args.merchants)], check=True, stdout=subprocess.DEVNULL, env=os.environ.copy())
        setup_s["backfill"] = round(time.monotonic() - started, 1)
        from _silver_snapshot import load_silver

        from lakehouse.features.jobs import feature_payments, refresh_features
        from lakehouse.features.online import entity_keys
        from lakehouse.features.store import FEATURE_SERVICE, feature_store
        from lakehouse.ml.registry import promote
        from lakehouse.ml.serve import Scorer, make_server
        from lakehouse.ml.train import train

        spark = get_spark(settings, app_name="bench-online-scoring")
        for name, step in (("silver", lambda: load_silver(spark, settings, progress=lambda m: None)),
                           ("features", lambda: refresh_features(spark, settings, progress=say)),
                           ("train", lambda: train(spark, settings, ("hist_gradient_boosting",), progress=say)),
                           ("promote", lambda: promote(spark, settings))):
            say(f"== {name}")
            started = time.monotonic()
            step()
            setup_s[name] = round(time.monotonic() - started, 1)
        payments = [r.asDict() for r in feature_payments(spark, settings).orderBy("created_at", ascending=False)
                    .limit(2000).collect()]
        payments_n = feature_payments(spark, settings).count()
        spark.stop()
        spark = None

        rng = random.Random(args.seed)
        now = dt.datetime.now(dt.UTC)
        requests = []
        for _ in range(args.calls + 50):
            p = rng.choice(payments)
            requests.append({"customer_id": p["customer_id"], "payment_method_id": p["payment_method_id"],
                             "merchant_id": p["merchant_id"], "terminal_id": p["terminal_id"],
                             "device_type": p["device_type"], "ip_pseudo": p["ip_pseudo"],
                             "ip_country": p["ip_country"], "ip_latitude": p["ip_lat"], "ip_longitude": p["ip_lon"],
                             "amount_usd": round(rng.uniform(5, 500), 2), "created_at": now.isoformat()})
        scorer = Scorer(settings)
        store = feature_store(settings)
        service = store.get_feature_service(FEATURE_SERVICE)
        one_view = ["customer_30d_fv:cust_txn_30d", "customer_30d_fv:cust_amount_usd_30d"]
        results: dict[str, Any] = {}
        say("== timing")
        results["feast_one_entity"] = figures(timed(
            lambda i: store.get_online_features(features=one_view,
                                                entity_rows=[{"customer_id": requests[i]["customer_id"]}]).to_dict(),
            args.calls))
        results["feast_one_payment"] = figures(timed(
            lambda i: store.get_online_features(features=service,
                                                entity_rows=[entity_keys(requests[i])]).to_dict(), args.calls))
        results["decision_in_process"] = figures(timed(lambda i: scorer.score(requests[i]), args.calls))
        server = make_server(scorer, 0, "127.0.0.1")
        threading.Thread(target=server.serve_forever, daemon=True).start()
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)

        def post(i: int) -> None:
            conn.request("POST", "/score", body=json.dumps(requests[i]), headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")

        results["decision_http"] = figures(timed(post, args.calls))
        server.shutdown()
        server.server_close()
        for name, row in results.items():
            target = TARGETS_MS.get(name)
            say(f"{name}: p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms"
                + (f" (target p99 <= {target} ms: {'ok' if row['p99_ms'] <= target else 'MISSED'})" if target else ""))
    finally:
        if spark is not None:
            spark.stop()
        stack.down(settings, purge=True)
        shutil.rmtree(state, ignore_errors=True)
    summary = {f"{k}_{m}": v[m] for k, v in results.items() for m in ("p50_ms", "p99_ms")}
    summary.update({f"{k}_p99_ok": results[k]["p99_ms"] <= t for k, t in TARGETS_MS.items()})
    summary["load_1m"] = round(os.getloadavg()[0], 1)
    write_result("online_scoring", summary, {"payments": payments_n, "days": args.days, "customers": args.customers,
                                             "calls": args.calls}, details={"results": results, "setup_s": setup_s})


if __name__ == "__main__":
    main()
