"""Connections to the OLTP database: one pool per process, built from the settings."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from lakehouse.common.config import Settings
from lakehouse.common.connections import pg_conninfo


def connect(settings: Settings, autocommit: bool = False, **kwargs: Any) -> psycopg.Connection[Any]:
    """A single connection as the application role."""
    return psycopg.connect(**pg_conninfo(settings), autocommit=autocommit, **kwargs)  # type: ignore[arg-type]


def admin_connect(settings: Settings) -> psycopg.Connection[Any]:
    """An administrator connection to the application database, for migrations and DDL.

    On the local stack: the `postgres` superuser over the current primary's private Unix socket
    (after a failover, the promoted replica).
    """
    from lakehouse.stack.replica import primary_node

    conn: psycopg.Connection[Any] = primary_node(settings).superuser_conn(settings.services.postgres.database)
    conn.autocommit = False
    return conn


def make_pool(settings: Settings, min_size: int = 1, max_size: int = 16) -> ConnectionPool:
    """A connection pool as the application role (open; close it, or use it as a context manager)."""
    info = pg_conninfo(settings)
    conninfo = psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items()})
    pool = ConnectionPool(conninfo, min_size=min_size, max_size=max_size, open=True, name="lakehouse-oltp",
                          kwargs={"autocommit": False})
    pool.wait(timeout=30)
    return pool
