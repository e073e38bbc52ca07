"""Job plumbing shared by `jobs/*.py` (spark-submit entry points) and `lakehouse run <job>`.

A job is a function `(spark, settings, args) -> JobOutcome` from a layer module. `run_job` parses
the common options (`--env`, `--set key=value`, `--once`), loads the settings, builds the session
with the one factory, runs the job and records the run in `ops.job_runs`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import logging
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from pyspark.sql import SparkSession

from lakehouse.common.config import ConfigError, Settings, load_settings, parse_overrides


@dataclass(frozen=True)
class JobOutcome:
    rows_written: int
    summary: dict[str, Any] = field(default_factory=dict)
    ok: bool = True


JobFn = Callable[[SparkSession, Settings, argparse.Namespace], JobOutcome]


@dataclass(frozen=True)
class Job:
    name: str
    help: str
    target: str  # "module:function" of the JobFn, imported only when the job runs
    add_arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None

    def function(self) -> JobFn:
        module, _, attr = self.target.partition(":")
        fn: JobFn = getattr(importlib.import_module(module), attr)
        return fn


def _selfcheck_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=100_000, help="rows to write and verify (default 100000)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the deterministic rows (default 42)")


def _gold_args(parser: argparse.ArgumentParser) -> None:
    from lakehouse.gold.jobs import gold_arguments

    gold_arguments(parser)


def _ml_args(name: str) -> Callable[[argparse.ArgumentParser], None]:
    def add(parser: argparse.ArgumentParser) -> None:
        from lakehouse.ml import jobs

        getattr(jobs, f"{name}_arguments")(parser)
    return add


JOBS: dict[str, Job] = {
    job.name: job
    for job in [
        Job("selfcheck", "write a deterministic batch to Delta, read it back by name, verify it",
            "lakehouse.ops.jobs:selfcheck_job", _selfcheck_args),
        Job("bronze", "Kafka (CDC and event topics) -> bronze Delta tables, exactly once; --once: catch up and stop",
            "lakehouse.bronze.jobs:bronze_job"),
        Job("silver", "bronze Delta -> silver (CDC merge, SCD2, conformance, PII protection, data quality); "
                      "--once: catch up and stop", "lakehouse.silver.jobs:silver_job"),
        Job("gold", "silver Delta -> gold star schema and aggregates: a refresh from silver's Change Data Feed "
                    "(a full build the first time or with --full); --once: one refresh",
            "lakehouse.gold.jobs:gold_job", _gold_args),
        Job("features", "silver -> feature tables (gold.feat_*) -> Feast registry -> Redis (incremental "
                        "materialization), then the online / offline skew check",
            "lakehouse.features.jobs:features_job"),
        Job("stream_scoring", "new payments in silver (Change Data Feed) -> streaming features pushed to Redis and "
                              "fraud scores with online features, within seconds; --once: catch up and stop",
            "lakehouse.ml.streaming:stream_scoring_job"),
        Job("train", "fraud models from a point-in-time Feast training set, logged to MLflow; the best becomes "
                     "the challenger", "lakehouse.ml.jobs:train_job", _ml_args("train")),
        Job("promote", "the promotion gate: challenger -> champion only when it beats the champion on the same "
                       "held-out window", "lakehouse.ml.jobs:promote_job", _ml_args("promote")),
        Job("score", "batch fraud scoring with the champion (spark_udf) into gold.fact_payment_scores",
            "lakehouse.ml.jobs:score_job", _ml_args("score")),
        Job("monitor", "feature / score drift (PSI) and delayed-label performance of the champion into "
                       "gold.ml_monitoring; flags a retrain", "lakehouse.ml.jobs:monitor_job", _ml_args("monitor")),
        Job("churn", "subscription churn model from the feature store: train, register, batch-score into "
                     "gold.fact_churn_scores", "lakehouse.ml.jobs:churn_job", _ml_args("churn")),
    ]
}


def job_parser(job: Job) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"jobs/{job.name}.py", description=job.help)
    add_common_options(parser)
    parser.add_argument("--once", action="store_true",
                        help="process what is available and stop (availableNow) instead of running continuously")
    job.add_arguments(parser)
    return parser


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default=None, help="configuration environment: local, test or cluster "
                                                    "(default: $LAKEHOUSE_ENV or local)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set spark.shuffle_partitions=8 (repeatable)")


def record_run(spark: SparkSession, settings: Settings, run_id: str, job: str, started: dt.datetime,
               status: str, rows: int, detail: dict[str, Any]) -> None:
    """Appends one row to ops.job_runs."""
    from lakehouse.common.tables import append
    from lakehouse.ops.tables import JOB_RUNS

    row = (run_id, job, settings.env, spark.sparkContext.master, started,
           dt.datetime.now(dt.UTC).replace(tzinfo=None), status, rows, json.dumps(detail, default=str))
    append(spark.createDataFrame([row], JOB_RUNS.schema), settings, JOB_RUNS)


QUIET_LOGGERS = ("py4j", "great_expectations")


def run_job(name: str, argv: list[str] | None = None) -> int:
    """Entry point of `jobs/<name>.py` and `lakehouse run <name>`; returns the process exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in QUIET_LOGGERS:     # their INFO is per call or per import, not per job step
        logging.getLogger(chatty).setLevel(logging.WARNING)
    job = JOBS.get(name)
    if job is None:
        print(f"error: unknown job {name!r}; known jobs: {', '.join(sorted(JOBS))}", file=sys.stderr)
        return 2
    args = job_parser(job).parse_args(argv)
    try:
        settings = load_settings(args.env, parse_overrides(args.set))
    except ConfigError as e:
        print(f"error: configuration: {e}", file=sys.stderr)
        return 2
    from lakehouse.common.spark import get_spark  # here: keeps `--help` fast

    run_id = uuid.uuid4().hex[:12]
    spark = get_spark(settings, app_name=f"lakehouse-{name}")
    started = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    t0 = time.monotonic()
    try:
        try:
            outcome = job.function()(spark, settings, argparse.Namespace(**vars(args), run_id=run_id))
        except Exception as e:
            record_run(spark, settings, run_id, name, started, "failed", 0, {"error": repr(e)})
            traceback.print_exc()
            print(f"error: job {name} failed (run {run_id}): {e}", file=sys.stderr)
            return 1
        summary = {"job": name, "run_id": run_id, "env": settings.env, "master": spark.sparkContext.master,
                   "executor_jvms": executor_jvms(spark), "seconds": round(time.monotonic() - t0, 2),
                   "rows_written": outcome.rows_written, **outcome.summary, "ok": outcome.ok}
        record_run(spark, settings, run_id, name, started, "succeeded" if outcome.ok else "failed",
                   outcome.rows_written, summary)
        print(json.dumps(summary, default=str), flush=True)
        return 0 if outcome.ok else 1
    finally:
        spark.stop()


def run_streaming(name: str, once: bool, run: Callable[[Callable[[], bool]], Any]) -> Any:
    """Runs a streaming layer: `run(should_stop)` until it returns. Continuous mode (`once` false) stops
    cleanly on SIGTERM (and Ctrl-C): a batch cut short is re-run on the next start. Returns what `run`
    returned, or None when interrupted."""
    stop = threading.Event()
    previous = None
    if not once and threading.current_thread() is threading.main_thread():
        def on_signal(signum: int, _frame: FrameType | None) -> None:
            logging.getLogger(__name__).info("%s: signal %d, stopping", name, signum)
            stop.set()
        previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        return run(stop.is_set)
    except KeyboardInterrupt:  # Ctrl-C: the layer already stopped its query on the way out
        logging.getLogger(__name__).info("%s: interrupted", name)
        return None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def executor_jvms(spark: SparkSession) -> int:
    """Executor JVMs registered besides the driver (0 in local mode, where the driver runs the tasks)."""
    block_managers = spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size()
    return max(0, int(block_managers) - 1)
