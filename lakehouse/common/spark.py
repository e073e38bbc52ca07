"""The one Spark session factory, used by jobs, the CLI, notebooks and tests.

Library code never builds a session: it takes `spark` or calls `active_spark()`.
"""

from __future__ import annotations

import functools
import logging
import operator
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pyspark import InheritableThread
from pyspark.errors import StreamingQueryException
from pyspark.sql import Column, SparkSession
from pyspark.sql.streaming import StreamingQuery

from lakehouse.common.config import ConfigError, Settings

log = logging.getLogger(__name__)


def spark_jars(settings: Settings) -> list[Path]:
    """The cached jars every session loads (Delta, spark-sql-kafka, JDBC); resolved by `make setup`."""
    jar_dir = settings.jar_dir / "spark"
    jars = sorted(jar_dir.glob("*.jar"))
    if not any(j.name.startswith("delta-spark_") for j in jars):
        raise ConfigError(f"paths.jar_dir: no Delta jars under {jar_dir}; run `make setup` to resolve them")
    return jars


def spark_conf(settings: Settings, app_name: str | None = None) -> dict[str, str]:
    """Every Spark setting the factory applies, as a plain mapping (also written to docs and tests)."""
    sc = settings.spark
    conf = {
        "spark.app.name": app_name or sc.app_name,
        "spark.jars": ",".join(str(j) for j in spark_jars(settings)),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
        "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
        "spark.sql.ansi.enabled": str(sc.ansi).lower(),
        "spark.sql.shuffle.partitions": str(sc.shuffle_partitions),
        "spark.default.parallelism": str(max(2, sc.shuffle_partitions)),
        "spark.sql.warehouse.dir": f"{settings.lakehouse_dir.rstrip('/')}/_warehouse",
        "spark.sql.streaming.checkpointLocation": settings.checkpoint_dir,
        "spark.ui.enabled": str(sc.ui_enabled).lower(),
        "spark.ui.port": str(sc.ui_port),
        "spark.ui.showConsoleProgress": "false",
        # VACUUM refuses retention shorter than the safe default (7 days) unless explicitly overridden.
        "spark.databricks.delta.retentionDurationCheck.enabled": "true",
        # Delta replays its log with 50 partitions by default: 50 tiny tasks per table on 2 cores.
        "spark.databricks.delta.snapshotPartitions": str(sc.shuffle_partitions),
    }
    if sc.master:
        conf["spark.master"] = sc.master
    if sc.driver_memory:
        conf["spark.driver.memory"] = sc.driver_memory
    conf.update(sc.extra)
    return conf


def get_spark(settings: Settings, app_name: str | None = None) -> SparkSession:
    """Returns the process's Spark session, building it from `settings` the first time.

    Under `spark-submit` the launcher's master wins when `spark.master` is empty in conf
    (the `cluster` environment). The table registry's catalog (`bronze.*`, `silver.*`, `gold.*`,
    `ops.*`) is attached, so tables written by other processes resolve by name.
    """
    existing = SparkSession.getActiveSession()
    if existing is not None:
        return existing
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if settings.spark.master.startswith("local"):
        # On one machine everything talks over loopback (and Spark stops guessing an interface).
        os.environ.setdefault("SPARK_LOCAL_IP", settings.services.host)
    started = time.monotonic()
    builder = SparkSession.builder
    for key, value in spark_conf(settings, app_name).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(settings.spark.log_level.upper())
    from lakehouse.common.tables import attach_catalog  # here: avoids an import cycle

    attach_catalog(spark, settings)
    log.info("spark session %s on %s in %.1fs", spark.sparkContext.appName, spark.sparkContext.master,
             time.monotonic() - started)
    return spark


def active_spark() -> SparkSession:
    """The session an entry point built; library functions use this instead of building one."""
    spark = SparkSession.getActiveSession()
    if spark is None:
        raise RuntimeError("no active Spark session: build one with lakehouse.common.spark.get_spark(settings)")
    return spark


def activate(spark: SparkSession) -> None:
    """Makes `spark` this thread's active session, in Python and in the JVM. A streaming query's
    foreachBatch leaves its batch's cloned session active, and libraries that take
    `getActiveSession()` (Feast) would then run on the clone, which lacks the caller's temp views."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    SparkSession._activeSession = spark
    SparkSession._get_j_spark_session_class(jvm).setActiveSession(spark._jsparkSession)


def run_parallel(tasks: list[Callable[[], None]], parallelism: int) -> None:
    """Runs the tasks on at most `parallelism` threads; raises the first failure once all have ended.

    InheritableThread passes the calling thread's Spark local properties on (the streaming query's job
    group), so stopping the query also cancels these threads' jobs."""
    failures: list[BaseException] = []
    slots = threading.BoundedSemaphore(parallelism)

    def run(task: Callable[[], None]) -> None:
        with slots:
            try:
                task()
            except BaseException as e:  # re-raised below, in the caller's thread
                failures.append(e)

    threads = [InheritableThread(target=run, args=(task,)) for task in tasks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def await_query(query: StreamingQuery, should_stop: Callable[[], bool], name: str) -> None:
    """Waits for `query` to end, stopping it when `should_stop()` (a signal) turns true; a failure is left
    for the caller to read from `query.exception()`."""
    try:
        while not query.awaitTermination(1):
            if should_stop():
                log.info("%s: stopping the query", name)
                query.stop()
    except StreamingQueryException:
        pass  # the caller reads query.exception()
    finally:
        if query.isActive:
            query.stop()


def all_of(conditions: Sequence[Column]) -> Column:
    """The conjunction of one or more boolean columns."""
    return functools.reduce(operator.and_, conditions)


def any_of(conditions: Sequence[Column]) -> Column:
    """The disjunction of one or more boolean columns."""
    return functools.reduce(operator.or_, conditions)
