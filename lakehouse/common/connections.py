"""Connection settings of the services, derived from `Settings`: the one place clients look them up."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

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


def pg_conninfo(settings: Settings, database: str | None = None) -> dict[str, str | int]:
    """Keyword arguments for `psycopg.connect` as the application role (password included)."""
    pg = settings.services.postgres
    return {"host": settings.services.host, "port": pg.port, "dbname": database or pg.database,
            "user": pg.user, "password": pg_password(settings)}


def pg_jdbc_url(settings: Settings) -> str:
    pg = settings.services.postgres
    return f"jdbc:postgresql://{settings.services.host}:{pg.port}/{pg.database}"


def kafka_bootstrap(settings: Settings) -> str:
    return f"{settings.services.host}:{settings.services.kafka.port}"


def connect_url(settings: Settings) -> str:
    return f"http://{settings.services.host}:{settings.services.connect.port}"


def redis_url(settings: Settings) -> str:
    return f"redis://{settings.services.host}:{settings.services.redis.port}/0"
