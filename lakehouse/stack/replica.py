"""The PostgreSQL hot standby: streaming replication with synchronous commit, and failover.

With a replica (`services.replica.enabled`, `lakehouse stack up --with-replica`, or one created earlier)
PostgreSQL runs as two nodes of the same cluster:

- `postgres` on `services.postgres.port`, data under `<state_dir>/postgres/`;
- `postgres-replica` on `services.replica.port`, data under `<state_dir>/postgres-replica/`.

Which node is the primary is recorded in `<state_dir>/postgres-roles.json` (`pg_roles`). A node's role
decides how it starts:

- primary: like the single server (`Postgres`), plus `synchronous_commit = on` and
  `synchronous_standby_names` naming the standby, so that a COMMIT returns only once the standby has
  flushed its WAL;
- standby: created by `pg_basebackup -R` from the primary as the application role (it has REPLICATION)
  with its own physical replication slot, then streams from it; read-only (hot standby);
- fenced: a former primary after a failover. It is never started as a primary again: `stack up`
  deletes its data and rebuilds it as the standby of the new primary (anything it holds that the
  new primary lacks was, with synchronous commit, never acknowledged to a client).

`failover` fences the primary, promotes the standby, carries the logical (CDC) replication slots over
and records the new roles; clients use a libpq multi-host connection (`pg_conninfo`) and land on the
new primary when they reconnect. See docs/oltp/replication.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import shutil
import sys
import time
from typing import Any

from lakehouse.common.config import Settings
from lakehouse.common.connections import (
    PG_PRIMARY_NODE,
    PG_REPLICA_NODE,
    pg_password,
    pg_replicated,
    pg_roles,
    pg_roles_file,
)
from lakehouse.stack.process import ServiceError, stop_pid, wait_for
from lakehouse.stack.services import Health, Postgres


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def with_replica(settings: Settings) -> Settings:
    """`settings` with `services.replica.enabled` set (what `stack up --with-replica` does)."""
    services = settings.services
    return dataclasses.replace(settings, services=dataclasses.replace(
        services, replica=dataclasses.replace(services.replica, enabled=True)))


def application_name(node: str) -> str:
    """The standby's `application_name` (what `synchronous_standby_names` lists) and its slot's name."""
    return "lakehouse_" + node.replace("-", "_")


def write_roles(settings: Settings, **changes: Any) -> dict[str, Any]:
    """Updates the roles record atomically (clients read it concurrently)."""
    doc = pg_roles(settings)
    doc.update(changes)
    doc["updated_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
    path = pg_roles_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)
    return doc


class PostgresNode(Postgres):
    """One node of the replicated pair, on `services.postgres.port`; its role comes from the roles record."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.read_only_gate = False  # during a failover: keep clients out until the CDC slots exist

    # --- role ---------------------------------------------------------------------------------
    def role(self) -> str:
        roles = pg_roles(self.settings)
        if roles["primary"] == self.name:
            return "primary"
        return "fenced" if self.name in roles["fenced"] else "standby"

    def peer(self) -> PostgresNode:
        return PostgresReplica(self.settings) if self.name == PG_PRIMARY_NODE else PostgresNode(self.settings)

    @property
    def app_name(self) -> str:
        return application_name(self.name)

    # --- Postgres hooks -----------------------------------------------------------------------
    def _config_extra(self) -> dict[str, str]:
        extra: dict[str, str] = {}
        if self.role() == "primary":
            standby = pg_roles(self.settings)["standby"]
            names = application_name(standby) if standby and standby != self.name else ""
            extra = {"synchronous_commit": "on", "synchronous_standby_names": f"'{names}'"}
        else:
            extra = {"hot_standby_feedback": "on"}
        if self.read_only_gate:
            extra["default_transaction_read_only"] = "on"
        return extra

    def _init_data(self) -> None:
        role = self.role()
        if role == "primary":
            super()._init_data()
            return
        if role == "standby" and (self.data / "standby.signal").exists():
            return
        if role == "standby" and (self.data / "PG_VERSION").exists():
            # A data dir that is not a standby's, while the record says standby: never overwrite it.
            raise ServiceError(
                f"{self.name}: {self.data} holds a cluster that is not a standby, but {pg_roles_file(self.settings)} "
                f"records {pg_roles(self.settings)['primary']!r} as the primary; fix the record (or move the data "
                "away) before starting it")
        self._clone_from(self.peer(), rebuild=role == "fenced")

    def _after_start(self) -> None:
        if self.role() == "primary":
            super()._after_start()
            return
        primary = self.peer()
        wait_for(lambda: self._streaming_from(primary), self.settings.services.start_timeout_s,
                 f"{self.name} streaming from {primary.name}",
                 lambda: None if self.pid() is not None else f"the standby exited; see {self.log}")
        roles = pg_roles(self.settings)
        write_roles(self.settings, standby=self.name, fenced=[n for n in roles["fenced"] if n != self.name])
        primary.apply_config()  # from now on its commits wait for this standby

    def _streaming_from(self, primary: PostgresNode) -> tuple[bool, str]:
        state = primary.replication_state(self.app_name)
        if state is None:
            return False, f"not connected to {primary.name} yet"
        return state["state"] == "streaming", f"state {state['state']}"

    # --- building a standby -------------------------------------------------------------------
    def _clone_from(self, primary: PostgresNode, rebuild: bool) -> None:
        if not primary.running():
            raise ServiceError(f"{self.name}: cannot create the standby: its primary {primary.name} is not running "
                               f"(start it first: lakehouse stack up)")
        if rebuild:
            _say(f"  note: {self.name} is the former primary, fenced at a failover; rebuilding it as the standby "
                 f"of {primary.name} (its old data is discarded)")
        if self.data.exists():
            shutil.rmtree(self.data)
        slot = self.app_name
        with primary.superuser_conn() as conn:  # a leftover from an earlier, interrupted clone
            conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                         "WHERE slot_name = %s AND NOT active", (slot,))
        pg = self.cfg
        self._run(self.bin("pg_basebackup"), "-D", str(self.data),
                  "-d", f"host={self.host} port={primary.pg_port} user={pg.user} application_name={self.app_name}",
                  "-X", "stream", "-R", "-C", "-S", slot, "--checkpoint=fast", "--no-password",
                  env={"PGPASSWORD": pg_password(self.settings)})
        write_roles(self.settings)  # the pair now exists on disk, whatever the configuration says later

    # --- primary-side views -------------------------------------------------------------------
    def replication_state(self, standby_app_name: str) -> dict[str, Any] | None:
        """The row of `pg_stat_replication` for that standby (as superuser: other roles see no details)."""
        try:
            with self.superuser_conn() as conn:
                row = conn.execute(
                    "SELECT state, sync_state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint "
                    "FROM pg_stat_replication WHERE application_name = %s", (standby_app_name,)).fetchone()
        except Exception:
            return None
        if row is None:
            return None
        return {"state": row[0], "sync_state": row[1], "replay_lag_bytes": row[2]}

    def apply_config(self) -> None:
        """Rewrites the settings file for the current role and reloads it, then waits until new sessions see it."""
        self._write_config()
        expected = self._config_extra()
        with self.superuser_conn() as conn:
            conn.execute("SELECT pg_reload_conf()")

        def reloaded() -> tuple[bool, str]:
            with self.superuser_conn() as conn:
                for key, value in expected.items():
                    got = conn.execute("SELECT current_setting(%s)", (key,)).fetchone()
                    if got is None or got[0] != value.strip("'"):
                        return False, f"{key} is {got[0] if got else None!r}"
            return True, "reloaded"

        wait_for(reloaded, 30, f"{self.name} configuration reload", interval_s=0.05)

    # --- health and status --------------------------------------------------------------------
    def health(self) -> Health:
        import psycopg

        role = self.role()
        if role == "fenced":
            return Health(False, f"fenced former primary; `lakehouse stack up` rebuilds it as the standby of "
                                 f"{pg_roles(self.settings)['primary']}")
        try:
            with psycopg.connect(host=self.host, port=self.pg_port, dbname=self.cfg.database, user=self.cfg.user,
                                 password=pg_password(self.settings), connect_timeout=3) as conn:
                row = conn.execute("SELECT pg_is_in_recovery(), current_setting('wal_level'), version()").fetchone()
        except Exception as e:
            return Health(False, str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
        assert row is not None
        in_recovery, wal_level, version = row[0], row[1], row[2].split(" on ")[0]
        if wal_level != "logical":
            return Health(False, f"wal_level is {wal_level}, expected logical")
        if role == "primary":
            if in_recovery:
                return Health(False, "recorded as the primary, but in recovery (a standby)")
            standby = pg_roles(self.settings)["standby"]
            if not standby:
                return Health(True, f"primary, {version}; no standby (commits are not replicated)")
            state = self.replication_state(application_name(standby))
            sync = f"{state['state']}, {state['sync_state']}" if state else "NOT connected: commits wait for it"
            return Health(True, f"primary, {version}; standby {standby}: {sync}")
        if not in_recovery:
            return Health(False, "recorded as the standby, but not in recovery (it accepts writes)")
        primary = self.peer()
        state = primary.replication_state(self.app_name)
        if state is None:
            return Health(False, f"standby (read-only), not streaming from {primary.name}")
        ok = state["state"] == "streaming" and state["sync_state"] == "sync"
        return Health(ok, f"standby of {primary.name} (read-only), {state['state']}, sync_state={state['sync_state']}, "
                          f"replay lag {state['replay_lag_bytes']} bytes")

    def status(self) -> dict[str, Any]:
        doc = super().status()
        doc["role"] = self.role()
        if doc["role"] == "fenced" and doc["pid"] is None:
            doc["detail"] = self.health().detail
        return doc

    def connection(self) -> dict[str, Any]:
        from lakehouse.common.connections import pg_node_ports

        doc = super().connection()
        hosts = ",".join(f"{self.host}:{p}" for p in pg_node_ports(self.settings).values())
        doc.update(role=self.role(), replication_slot=self.app_name,
                   cluster_dsn=f"postgresql://{self.cfg.user}@{hosts}/{self.cfg.database}"
                               "?target_session_attrs=read-write")
        return doc

    def purge(self) -> None:
        super().purge()
        pg_roles_file(self.settings).unlink(missing_ok=True)

    # --- failover steps -----------------------------------------------------------------------
    def fence(self, immediate: bool) -> str:
        """Stops the server so that it cannot acknowledge another write: a fast shutdown (clients are
        disconnected, the standby receives the last WAL) or an immediate one (like a crash)."""
        pid = self.pid()
        if pid is None:
            return "was not running"
        for mode in (["immediate"] if immediate else ["fast", "immediate"]):
            with contextlib.suppress(ServiceError):
                self._run(self.bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")
                return f"stopped (pg_ctl stop -m {mode})"
        if not stop_pid(pid, timeout_s=5):
            raise ServiceError(f"{self.name}: could not stop pid {pid}; it is NOT fenced")
        return "killed (pg_ctl stop failed)"

    def logical_slots(self) -> list[dict[str, Any]]:
        with self.superuser_conn() as conn:
            rows = conn.execute(
                "SELECT slot_name, plugin, database, confirmed_flush_lsn::text, two_phase FROM pg_replication_slots "
                "WHERE slot_type = 'logical' AND NOT temporary ORDER BY slot_name").fetchall()
        return [{"slot_name": r[0], "plugin": r[1], "database": r[2], "confirmed_flush_lsn": r[3], "two_phase": r[4]}
                for r in rows]

    def promote(self, timeout_s: int) -> None:
        with self.superuser_conn() as conn:
            row = conn.execute("SELECT pg_promote(true, %s)", (timeout_s,)).fetchone()
        if not row or not row[0]:
            raise ServiceError(f"{self.name}: not promoted within {timeout_s}s; see {self.log}")
        with self.superuser_conn() as conn:  # the standby settings written by `pg_basebackup -R`
            conn.execute("ALTER SYSTEM RESET primary_conninfo")
            conn.execute("ALTER SYSTEM RESET primary_slot_name")

    def recreate_logical_slots(self, slots: list[dict[str, Any]], old_end_lsn: str | None) -> list[dict[str, Any]]:
        """Creates each logical slot of the old primary on this (new) primary, before clients can write."""
        done = []
        for slot in slots:
            with self.superuser_conn(slot["database"]) as conn:
                conn.execute("SET default_transaction_read_only TO off")
                exists = conn.execute("SELECT confirmed_flush_lsn::text FROM pg_replication_slots "
                                      "WHERE slot_name = %s", (slot["slot_name"],)).fetchone()
                if exists:
                    lsn = exists[0]
                else:
                    row = conn.execute("SELECT lsn::text FROM pg_create_logical_replication_slot(%s, %s, false, %s)",
                                       (slot["slot_name"], slot["plugin"], slot["two_phase"])).fetchone()
                    assert row is not None
                    lsn = row[0]
                gap = None
                if old_end_lsn and slot["confirmed_flush_lsn"]:
                    got = conn.execute("SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)::bigint",
                                       (old_end_lsn, slot["confirmed_flush_lsn"])).fetchone()
                    gap = int(got[0]) if got else None
            done.append({**slot, "created_at_lsn": lsn, "old_timeline_end_lsn": old_end_lsn,
                         "unconfirmed_wal_bytes": gap})
        return done

    def wait_writable(self, timeout_s: float) -> str:
        import psycopg

        def writable() -> tuple[bool, str]:
            try:
                with psycopg.connect(host=self.host, port=self.pg_port, dbname=self.cfg.database, user=self.cfg.user,
                                     password=pg_password(self.settings), connect_timeout=3,
                                     target_session_attrs="read-write") as conn:
                    row = conn.execute("SELECT txid_current()").fetchone()  # assigns a transaction id: a write
                    conn.commit()
            except Exception as e:
                return False, str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return True, f"committed txid {row[0] if row else '?'}"

        return wait_for(writable, timeout_s, f"{self.name} accepting writes", interval_s=0.02)

    def timeline_switch(self) -> tuple[int, str | None]:
        """The current timeline and where the previous one ended: the exact end of the old primary's WAL
        that promotion replayed (from the timeline history file, `<TLI>.history`)."""
        with self.superuser_conn() as conn:
            row = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()
            assert row is not None
            tli = int(row[0][:8], 16)
            got = conn.execute("SELECT pg_read_file(%s, 0, 1048576, true)", (f"pg_wal/{tli:08X}.history",)).fetchone()
        lines = [ln.split() for ln in (got[0] if got and got[0] else "").splitlines() if ln.strip()]
        return tli, lines[-1][1] if lines and len(lines[-1]) > 1 else None


class PostgresReplica(PostgresNode):
    """The second node of the pair, on `services.replica.port`, data under `<state_dir>/postgres-replica/`."""

    name = PG_REPLICA_NODE
    port_key = "services.replica.port"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.pg_port = settings.services.replica.port


def postgres_nodes(settings: Settings) -> list[Postgres]:
    """The PostgreSQL services in start order: the single server, or the pair with the primary first."""
    if not pg_replicated(settings):
        return [Postgres(settings)]
    primary = pg_roles(settings)["primary"]
    nodes: list[Postgres] = [PostgresNode(settings), PostgresReplica(settings)]
    return sorted(nodes, key=lambda n: n.name != primary)


def primary_node(settings: Settings) -> Postgres:
    """The node that currently is the primary (for administrator connections: migrations, DDL)."""
    return postgres_nodes(settings)[0]


def failover(settings: Settings, immediate: bool = False) -> dict[str, Any]:
    """Fences the primary, promotes the standby, recreates the CDC slots there and records the new roles.

    Returns what was done and how long each step took. Zero data loss: with synchronous commit every
    acknowledged transaction is flushed on the standby, and promotion replays everything it received.
    """
    if not pg_replicated(settings):
        raise ServiceError("failover: there is no replica; start one with `lakehouse stack up --with-replica`")
    roles = pg_roles(settings)
    nodes = {n.name: n for n in postgres_nodes(settings) if isinstance(n, PostgresNode)}
    old = nodes[roles["primary"]]
    if not roles["standby"]:
        raise ServiceError(f"failover: {old.name} has no standby to promote; `lakehouse stack up` rebuilds "
                           f"{', '.join(roles['fenced']) or 'the other node'} as its standby")
    new = nodes[roles["standby"]]
    if not new.running():
        raise ServiceError(f"failover: the standby {new.name} is not running; see {new.log}")
    with new.superuser_conn() as conn:
        row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    if not row or not row[0]:
        raise ServiceError(f"failover: {new.name} is not in recovery (not a standby); roles record: "
                           f"{pg_roles_file(settings)}")
    timeout = settings.services.start_timeout_s
    report: dict[str, Any] = {"from": old.name, "to": new.name, "fence_mode": "immediate" if immediate else "fast",
                              "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")}
    t0 = time.monotonic()

    slots: list[dict[str, Any]] | None = None
    if old.running():
        with contextlib.suppress(Exception):
            slots = old.logical_slots()
    report["fenced"] = old.fence(immediate)
    report["fence_s"] = round(time.monotonic() - t0, 3)

    # With CDC slots to carry over, keep the new primary read-only until they exist: then every change
    # of the new timeline is decoded by them (libpq's read-write check refuses the gated server).
    new.read_only_gate = bool(slots)
    if new.read_only_gate:
        new.apply_config()
    t1 = time.monotonic()
    new.promote(timeout)
    write_roles(settings, primary=new.name, standby=None, fenced=[old.name])
    report["promote_s"] = round(time.monotonic() - t1, 3)
    try:
        report["timeline"], report["old_timeline_end_lsn"] = new.timeline_switch()
        report["cdc_slots"] = new.recreate_logical_slots(slots or [], report["old_timeline_end_lsn"])
        report["cdc_slots_known"] = slots is not None
    finally:  # open it to clients even when a slot could not be created
        new.read_only_gate = False
        new.apply_config()  # as the primary, without a standby: commits are acknowledged by this node alone
    report["writable"] = new.wait_writable(timeout)
    report["total_s"] = round(time.monotonic() - t0, 3)
    history = [*pg_roles(settings).get("failovers", []), report][-20:]
    write_roles(settings, failovers=history)
    return report


def format_failover(report: dict[str, Any]) -> str:
    """The failover report for people: what was done, how long it took, what is left to do."""
    old, new = report["from"], report["to"]
    lines = [f"failover {old} -> {new} (timeline {report['timeline']}) in {report['total_s']:.2f}s",
             f"  fenced   {old}: {report['fenced']} after {report['fence_s']:.2f}s",
             f"  promoted {new} in {report['promote_s']:.2f}s; it accepts writes ({report['writable']}); "
             f"the old primary's WAL ended at {report['old_timeline_end_lsn']}",
             f"  clients  the multi-host connection (target_session_attrs=read-write) now tries {new} first; "
             "connected clients reconnect"]
    if not report["cdc_slots_known"]:
        lines.append(f"  cdc      {old} was not reachable: its logical slots are unknown; recreate them on {new} "
                     "(docs/oltp/replication.md)")
    for slot in report["cdc_slots"]:
        gap = slot["unconfirmed_wal_bytes"]
        lines.append(f"  cdc      logical slot {slot['slot_name']} ({slot['plugin']}, database {slot['database']}) "
                     f"recreated on {new} at {slot['created_at_lsn']}, before any client could write there")
        if gap:
            lines.append(f"           its consumer had confirmed up to {slot['confirmed_flush_lsn']}: up to {gap} "
                         "bytes of WAL before the failover may not have been captured; re-snapshot the captured tables")
    lines.append(f"  standby  none: commits are acknowledged by {new} alone until `lakehouse stack up` rebuilds {old} "
                 f"as its standby")
    return "\n".join(lines)
