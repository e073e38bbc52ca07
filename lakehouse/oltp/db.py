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


def ensure_database(settings: Settings, name: str, setting: str) -> None:
    """Creates the database `name` (owned by the application role) on the stack's PostgreSQL when it does
    not exist: the side databases of Feast's registry and MLflow's backend store. `setting` names the
    config key that chose `name`, for the error when the administrator cannot reach the server."""
    from psycopg import sql

    from lakehouse.stack.replica import primary_node

    try:
        with connect(settings, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                return
        with primary_node(settings).superuser_conn() as admin:
            if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(settings.services.postgres.user)))
    except psycopg.Error as e:
        raise RuntimeError(f"{setting}: cannot create or reach database {name!r} on PostgreSQL "
                           f"({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}); "
                           "is the stack up (`lakehouse stack up`)?") from e


def sqlalchemy_url(settings: Settings, database: str) -> str:
    """`postgresql+psycopg://user:password@host:port/database` for SQLAlchemy clients (MLflow, Feast's
    registry), with the current primary's port."""
    from urllib.parse import quote

    from lakehouse.common.connections import pg_node_ports, pg_password

    pg = settings.services.postgres
    port = next(iter(pg_node_ports(settings).values()))
    return (f"postgresql+psycopg://{quote(pg.user)}:{quote(pg_password(settings), safe='')}@"
            f"{settings.services.host}:{port}/{database}")
