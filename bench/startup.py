"""Start-up costs of the runtime: stack up (first time and restart), a Spark session, the self-check.

    python bench/startup.py [--rows 1000000] [--sessions 3]

Runs on a private state dir and free ports; prints the figures and writes bench/results/startup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import private_env, write_result

from lakehouse.common.config import load_settings
from lakehouse.stack import stack

SESSION_PROBE = """
import time, json
t0 = time.monotonic()
from lakehouse.common.config import load_settings
from lakehouse.common.spark import get_spark
spark = get_spark(load_settings())
t1 = time.monotonic()
spark.range(1000).selectExpr("sum(id)").collect()
t2 = time.monotonic()
print(json.dumps({"session_s": t1 - t0, "first_query_s": t2 - t1}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--sessions", type=int, default=3)
    args = ap.parse_args()
    env = private_env()
    os.environ.update(env)
    settings = load_settings("local")
    figures: dict[str, float | int | str] = {}
    try:
        t0 = time.monotonic()
        stack.up(settings)
        figures["stack_up_first_s"] = round(time.monotonic() - t0, 1)
        stack.down(settings)
        t0 = time.monotonic()
        stack.up(settings)
        figures["stack_up_restart_s"] = round(time.monotonic() - t0, 1)
        t0 = time.monotonic()
        stack.up(settings)
        figures["stack_up_noop_s"] = round(time.monotonic() - t0, 2)

        probes = []
        for _ in range(args.sessions):
            out = subprocess.run([sys.executable, "-c", SESSION_PROBE], capture_output=True, text=True, check=True)
            probes.append(json.loads(out.stdout.strip().splitlines()[-1]))
        figures["spark_session_start_s_median"] = round(statistics.median(p["session_s"] for p in probes), 1)
        figures["spark_first_query_s_median"] = round(statistics.median(p["first_query_s"] for p in probes), 1)

        lakehouse = Path(sys.executable).parent / "lakehouse"
        t0 = time.monotonic()
        out = subprocess.run([str(lakehouse), "run", "selfcheck", "--rows", str(args.rows)], capture_output=True,
                             text=True, check=True)
        wall = time.monotonic() - t0
        summary = json.loads(out.stdout.strip().splitlines()[-1])
        figures["selfcheck_rows"] = args.rows
        figures["selfcheck_job_s"] = summary["seconds"]
        figures["selfcheck_process_wall_s"] = round(wall, 1)
        figures["selfcheck_rows_per_s"] = int(args.rows / summary["seconds"])
        figures["selfcheck_ok"] = str(summary["ok"])
    finally:
        stack.down(settings, purge=True)
        shutil.rmtree(env["LAKEHOUSE__PATHS__STATE_DIR"], ignore_errors=True)
    write_result("startup", figures, {"rows": args.rows, "sessions": args.sessions, "master": settings.spark.master})


if __name__ == "__main__":
    main()
