"""Running the project's own commands as separate processes, the way users run them."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(cmd: list[str], env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """Runs `cmd` in the repo; prints the command's words that are not --set options and its wall time
    (pytest shows it with a failure's output, or with -s / --durations' neighbours when profiling)."""
    started = time.monotonic()
    try:
        return subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                              timeout=timeout)
    finally:
        words = [w for before, w in itertools.pairwise(cmd) if "--set" not in (before, w)]
        print(f"[{time.monotonic() - started:6.1f}s] {Path(cmd[0]).name} {' '.join(words)}", flush=True)


def lakehouse(*args: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return run([str(BIN / "lakehouse"), *args], env=env, timeout=timeout)


def spark_submit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run([str(BIN / "spark-submit"), *args], env=env)


def last_json(stdout: str) -> Any:
    """The last line of stdout that is a JSON document (jobs print their summary last)."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith(("{", "[")):
            return json.loads(line)
    raise AssertionError(f"no JSON line in output:\n{stdout[-2000:]}")


def explain(res: subprocess.CompletedProcess[str]) -> str:
    """A failed command's exit code and output's ends; stdout's lines without their padding (the demo's summary
    table pads to the terminal's width, and its first rows say what failed)."""
    stdout = "\n".join(line.rstrip() for line in res.stdout.splitlines())
    return f"exit {res.returncode}\n--- stdout\n{stdout[-8000:]}\n--- stderr\n{res.stderr[-3000:]}"


def fresh_database(settings: Any, name: str, seed_reference: bool = False) -> Any:
    """A new, migrated database `name` on the test PostgreSQL (dropped first if it exists); returns
    settings that point at it. Lets a test count exactly, whatever other tests wrote elsewhere."""
    import dataclasses

    from psycopg import sql

    from lakehouse.oltp.db import admin_connect, connect
    from lakehouse.oltp.migrate import migrate
    from lakehouse.oltp.reference import ensure_reference_data

    with admin_connect(settings) as admin:
        admin.autocommit = True
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name),
                                                                  sql.Identifier(settings.services.postgres.user)))
    db = dataclasses.replace(settings, services=dataclasses.replace(
        settings.services, postgres=dataclasses.replace(settings.services.postgres, database=name)))
    migrate(db)
    if seed_reference:
        with connect(db) as conn:
            ensure_reference_data(conn)
            conn.commit()
    return db


def kafka_total(db: Any) -> int:
    from kafka import KafkaConsumer, TopicPartition

    from lakehouse.common.connections import kafka_bootstrap

    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap(db))
    try:
        topics = [t for t in consumer.topics() if t.startswith(f"{db.cdc.topic_prefix}.")]
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        return sum(consumer.end_offsets(tps).values())
    finally:
        consumer.close()


def wait_for_debezium(db: Any, quiet_s: float = 6, timeout_s: float = 180) -> None:
    """Until the CDC topics have not grown for `quiet_s` seconds (Debezium sent what PostgreSQL committed)."""
    deadline = time.monotonic() + timeout_s
    last, since = kafka_total(db), time.monotonic()
    while time.monotonic() - since < quiet_s:
        assert time.monotonic() < deadline, "the CDC topics never stopped growing"
        time.sleep(1)
        now = kafka_total(db)
        if now != last:
            last, since = now, time.monotonic()
