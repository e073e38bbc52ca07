"""Versioned schema migrations: `lakehouse/oltp/migrations/V<NNN>__<name>.sql`, applied in order, once.

Each file runs in one transaction together with its row in `public.schema_migrations` (version,
name, checksum). A file changed after it was applied fails the next `migrate` with its name: a
migration is never edited, a new one is added.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from psycopg import sql

from lakehouse.common.config import Settings
from lakehouse.oltp.db import admin_connect

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_NAME = re.compile(r"^V(\d{3})__([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql_text(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    @property
    def label(self) -> str:
        return f"V{self.version:03d}__{self.name}"


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise MigrationError(f"{path.name}: migration files are named V<NNN>__<snake_name>.sql")
        found.append(Migration(int(m.group(1)), m.group(2), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions in {directory}")
    return found


def migrate(settings: Settings, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Applies every pending migration as the administrator; returns the labels applied. Then makes
    the application role a member of `payments_app` (DML only; no DDL, no vault reads)."""
    applied: list[str] = []
    with admin_connect(settings) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS public.schema_migrations ("
                     " version int PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                     " applied_at timestamptz NOT NULL DEFAULT now())")
        conn.commit()
        # One migrator at a time, across processes.
        conn.execute("SELECT pg_advisory_lock(hashtext('lakehouse.schema_migrations'))")
        try:
            done = {v: c for v, c in conn.execute("SELECT version, checksum FROM public.schema_migrations")}
            conn.commit()
            for mig in discover(directory):
                if mig.version in done:
                    if done[mig.version] != mig.checksum:
                        raise MigrationError(f"{mig.label}: changed after it was applied; add a new migration "
                                             "instead of editing an applied one")
                    continue
                with conn.transaction():
                    conn.execute(sql.SQL(mig.sql_text))
                    conn.execute("INSERT INTO public.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                                 (mig.version, mig.name, mig.checksum))
                applied.append(mig.label)
            conn.execute(sql.SQL("GRANT payments_app TO {}").format(sql.Identifier(settings.services.postgres.user)))
            conn.commit()
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext('lakehouse.schema_migrations'))")
            conn.commit()
    return applied
