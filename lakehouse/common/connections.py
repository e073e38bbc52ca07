"""Connection settings of the services, derived from `Settings`: the one place clients look them up."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from lakehouse.common.config import ConfigError, Settings


def secrets_dir(settings: Settings) -> Path:
    return settings.state_dir / "secrets"


def pg_password_file(settings: Settings) -> Path:
    return secrets_dir(settings) / "postgres_password"


def pg_password(settings: Settings, create: bool = False) -> str:
    """The application role's password: from the environment variable named by
    `services.postgres.password_env`, else from the generated file under the state dir."""
    from_env = os.environ.get(settings.services.postgres.password_env)
    if from_env:
        return from_env
    path = pg_password_file(settings)
    if path.exists():
        return path.read_text().strip()
    if not create:
        raise ConfigError(f"services.postgres.password_env: {settings.services.postgres.password_env} is not set "
                          f"and {path} does not exist yet; run `lakehouse stack up` first")
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    password = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    return password


# --- the PostgreSQL pair (primary + hot standby) --------------------------------------------------
PG_PRIMARY_NODE = "postgres"            # the node on services.postgres.port
PG_REPLICA_NODE = "postgres-replica"    # the node on services.replica.port


def pg_roles_file(settings: Settings) -> Path:
    """Which node of the pair is the primary: written by `stack up` and `oltp failover`."""
    return settings.state_dir / "postgres-roles.json"


def pg_roles(settings: Settings) -> dict[str, Any]:
    """`{"primary": node, "standby": node | None, "fenced": [node, …], …}`; before any replica exists
    (no file yet) the node on services.postgres.port is the primary."""
    try:
        doc: dict[str, Any] = json.loads(pg_roles_file(settings).read_text())
    except (OSError, ValueError):
        doc = {}
    doc.setdefault("primary", PG_PRIMARY_NODE)
    doc.setdefault("standby", None)
    doc.setdefault("fenced", [])
    return doc


def pg_replicated(settings: Settings) -> bool:
    """True when PostgreSQL runs as a primary + hot standby pair: configured, or created earlier."""
    return settings.services.replica.enabled or pg_roles_file(settings).exists()


def pg_node_ports(settings: Settings) -> dict[str, int]:
    """Port of every PostgreSQL node, the current primary first."""
    ports = {PG_PRIMARY_NODE: settings.services.postgres.port}
    if pg_replicated(settings):
        ports[PG_REPLICA_NODE] = settings.services.replica.port
        primary = pg_roles(settings)["primary"]
        if primary in ports:
            ports = {primary: ports[primary], **ports}
    return ports


def pg_conninfo(settings: Settings, database: str | None = None) -> dict[str, str | int]:
    """Keyword arguments for `psycopg.connect` as the application role (password included).

    With a replica, a libpq multi-host connection: every node, the recorded primary first, and
    `target_session_attrs=read-write`, so that a client connecting after a failover lands on the
    promoted node (libpq skips a node that is down or read-only)."""
    pg = settings.services.postgres
    info: dict[str, str | int] = {"host": settings.services.host, "port": pg.port,
                                  "dbname": database or pg.database, "user": pg.user,
                                  "password": pg_password(settings)}
    if pg_replicated(settings):
        ports = list(pg_node_ports(settings).values())
        info.update(host=",".join([settings.services.host] * len(ports)), port=",".join(map(str, ports)),
                    target_session_attrs="read-write")
    return info


def pg_jdbc_url(settings: Settings) -> str:
    """The JDBC URL; with a replica, every node and `targetServerType=primary` (the JDBC driver's multi-host)."""
    pg = settings.services.postgres
    if pg_replicated(settings):
        hosts = ",".join(f"{settings.services.host}:{p}" for p in pg_node_ports(settings).values())
        return f"jdbc:postgresql://{hosts}/{pg.database}?targetServerType=primary"
    return f"jdbc:postgresql://{settings.services.host}:{pg.port}/{pg.database}"


def kafka_bootstrap(settings: Settings) -> str:
    return f"{settings.services.host}:{settings.services.kafka.port}"


def connect_url(settings: Settings) -> str:
    return f"http://{settings.services.host}:{settings.services.connect.port}"


def redis_url(settings: Settings) -> str:
    return f"redis://{settings.services.host}:{settings.services.redis.port}/0"
