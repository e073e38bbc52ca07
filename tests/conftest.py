"""Shared fixtures.

- `test_env` (session, autouse): points every process of the run (this one and the subprocesses
  it starts) at a private state dir and free ports, through LAKEHOUSE__… variables.
- `settings`: the validated `test` settings.
- `spark`: one session-scoped Spark session from the one factory (local[2], few partitions, UI off,
  UTC, Delta, a temporary lakehouse).
- `stack`: the real services, started once per run and stopped (and purged) at the end.
- `catalog_of`: the session's catalog pointed at another lakehouse for a while.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PORT_KEYS = ("POSTGRES__PORT", "REPLICA__PORT", "KAFKA__PORT", "KAFKA__CONTROLLER_PORT", "CONNECT__PORT",
             "REDIS__PORT")


def free_ports(n: int) -> list[int]:
    """`n` distinct ports that are free right now (bound to port 0 together, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@contextmanager
def catalog_of(spark: Any, lakehouse: Any, home: Any) -> Iterator[None]:
    """Points this session's catalog (`bronze.*`, `silver.*`, `gold.*`, `ops.*`) at `lakehouse`'s tables
    for a while, then back at `home`'s. The entries are external: dropping one leaves its data alone."""
    from lakehouse.common.tables import LAYERS, attach_catalog

    def detach() -> None:
        for layer in LAYERS:
            for table in spark.catalog.listTables(layer):
                spark.sql(f"DROP TABLE IF EXISTS {layer}.{table.name}")

    detach()
    attach_catalog(spark, lakehouse)
    try:
        yield
    finally:
        detach()
        attach_catalog(spark, home)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        item.add_marker(pytest.mark.integration if parts[0] == "integration" else pytest.mark.unit)


@pytest.fixture(scope="session", autouse=True)
def test_env() -> Iterator[dict[str, str]]:
    # Under /tmp and world-traversable: when tests run as root, PostgreSQL runs as `postgres`
    # and must reach its data dir (pytest's own tmp dirs are 0700).
    state = Path(tempfile.mkdtemp(prefix="lakehouse-test-", dir="/tmp"))
    state.chmod(0o755)
    env = {"LAKEHOUSE_ENV": "test", "LAKEHOUSE__PATHS__STATE_DIR": str(state),
           "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    ports = free_ports(len(PORT_KEYS))
    env.update({f"LAKEHOUSE__SERVICES__{key}": str(port) for key, port in zip(PORT_KEYS, ports, strict=True)})
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(test_env: dict[str, str]):
    from lakehouse.common.config import load_settings

    return load_settings("test")


@pytest.fixture(scope="session")
def spark(settings):
    from lakehouse.common.spark import get_spark

    session = get_spark(settings, app_name="lakehouse-tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def _services(settings):
    """Stops (and purges) whatever the run started, once, at the end of the session."""
    from lakehouse.stack import stack as stack_mod

    try:
        yield stack_mod
    finally:
        stack_mod.down(settings, purge=True)


@pytest.fixture(scope="session")
def stack(_services, settings):
    """All four services, healthy; returns their status."""
    _services.up(settings)
    return _services.status(settings)


@pytest.fixture(scope="session")
def postgres(_services, settings):
    """Only PostgreSQL (for tests that need nothing else), healthy; returns the settings."""
    _services.up(settings, only=["postgres"])
    return settings


@pytest.fixture(scope="session")
def oltp(postgres):
    """PostgreSQL with the OLTP schema migrated; returns the settings."""
    from lakehouse.oltp.migrate import migrate

    migrate(postgres)
    return postgres
