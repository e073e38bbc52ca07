"""The Debezium PostgreSQL connector on Kafka Connect: publication, connector config, start / status / stop.

- The publication (`cdc.publication`) is created by the administrator: `FOR TABLES IN SCHEMA ref, payments,
  labels` with `publish_via_partition_root = true`, so every current and future table of those schemas is
  published, a partitioned table through its root (one topic per table), and the vault and `public` never.
- The connector (`cdc.connector`) is registered through Connect's REST API with the config built by
  `connector_config` (a pure function of the settings and the password); it connects as the application
  role (LOGIN REPLICATION, a member of payments_app), uses pgoutput and the named slot `cdc.slot`, takes an
  initial snapshot (`cdc.snapshot_mode`) and writes one topic per table, `<cdc.topic_prefix>.<schema>.<table>`,
  keyed by the primary key, as plain JSON (no Connect schema wrapper).
- `status` combines the connector's and tasks' state (REST) with the slot's state in PostgreSQL; `stop`
  deletes the connector and, with `drop_slot`, also its stored offsets, the slot and the publication.

Why each setting: docs/cdc.md.
"""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from psycopg import sql

from lakehouse.common.config import Settings
from lakehouse.common.connections import connect_url, pg_node_ports, pg_password
from lakehouse.stack.process import ServiceError, wait_for
from lakehouse.stack.services import DEBEZIUM_POSTGRES

CAPTURED_SCHEMAS = ("ref", "payments", "labels")        # never vault, never public
# The partitions of the partitioned tables (payments.ensure_month_partitions names them
# <table>_YYYY_MM, plus <table>_default). Their changes are published through the root; the connector
# must not also snapshot them as tables of their own (it would, as it lists every table of a schema).
PARTITIONS_REGEX = r"payments\.(charges|balance_transactions)_(\d{4}_\d{2}|default)"
# Heartbeat: a logical decoding message (no table, no privilege beyond REPLICATION) that the connector
# receives and drops; receiving it moves the connector's position, so the slot advances while no
# published table changes. docs/cdc.md, "Heartbeats".
HEARTBEAT_PREFIX = "lakehouse_cdc_heartbeat"
HEARTBEAT_QUERY = f"SELECT pg_logical_emit_message(false, '{HEARTBEAT_PREFIX}', '')"
JSON_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"
REDACTED = "********"
_SNAPSHOT_MODES = {"never": "no_data"}   # Debezium 3 renamed `never` to `no_data`


class CdcError(ServiceError):
    """The CDC pipeline could not be set up, reached or stopped; the message says what to do."""


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- the connector's configuration ---------------------------------------------------------------
def connector_config(settings: Settings, password: str, pg_port: int | None = None) -> dict[str, str]:
    """The Debezium PostgreSQL connector's configuration (every value a string, as Connect stores it).

    `pg_port` is the port of the current primary (default `services.postgres.port`); `password` is the
    application role's password, or a Connect config-provider reference to it."""
    cdc, pg = settings.cdc, settings.services.postgres
    return {
        "name": cdc.connector,
        "connector.class": DEBEZIUM_POSTGRES,
        "tasks.max": "1",
        # source: the application role over TCP, logical decoding with pgoutput through our publication
        "database.hostname": settings.services.host,
        "database.port": str(pg_port or pg.port),
        "database.user": pg.user,
        "database.password": password,
        "database.dbname": pg.database,
        "plugin.name": "pgoutput",
        "slot.name": cdc.slot,
        "slot.drop.on.stop": "false",
        "publication.name": cdc.publication,
        "publication.autocreate.mode": "disabled",
        "schema.include.list": ",".join(CAPTURED_SCHEMAS),
        "table.exclude.list": PARTITIONS_REGEX,
        "snapshot.mode": _SNAPSHOT_MODES.get(cdc.snapshot_mode, cdc.snapshot_mode),
        "skipped.operations": "none",                  # TRUNCATE is emitted too (op "t")
        "tombstones.on.delete": "true",
        # exact values
        "decimal.handling.mode": "string",             # numeric -> "0.1200" (scale kept)
        "time.precision.mode": "microseconds",         # date: days; time/timestamp: µs; timestamptz: ISO
        "interval.handling.mode": "string",            # ISO-8601 duration
        # heartbeats: the slot advances when only unpublished tables (or other databases) change
        "heartbeat.interval.ms": str(cdc.heartbeat_ms),
        "heartbeat.action.query": HEARTBEAT_QUERY,
        "message.prefix.exclude.list": HEARTBEAT_PREFIX,
        # topics: <prefix>.<schema>.<table>, created by Connect with partitions and retention from conf
        "topic.prefix": cdc.topic_prefix,
        "topic.creation.default.partitions": str(cdc.partitions),
        "topic.creation.default.replication.factor": "1",
        **{f"topic.creation.default.{k}": v for k, v in topic_configs(settings).items()},
        # plain JSON: the key is the primary key, the value Debezium's envelope, no schema wrapper
        "key.converter": JSON_CONVERTER,
        "key.converter.schemas.enable": "false",
        "value.converter": JSON_CONVERTER,
        "value.converter.schemas.enable": "false",
    }


def redacted(config: dict[str, str]) -> dict[str, str]:
    """The config without the password (for printing)."""
    return {k: (REDACTED if k == "database.password" else v) for k, v in config.items()}


def topic_name(settings: Settings, table: str) -> str:
    """`payments.charges` -> `cdc.payments.charges` (with the default prefix)."""
    return f"{settings.cdc.topic_prefix}.{table}"


def is_partition_name(table: str) -> bool:
    """True for the partitions the connector leaves out (`payments.charges_2026_11`, `…_default`)."""
    return re.fullmatch(PARTITIONS_REGEX, table) is not None


# --- the publication (administrator) -------------------------------------------------------------
def _admin(settings: Settings) -> Any:
    from lakehouse.oltp.db import admin_connect

    try:
        conn = admin_connect(settings)
    except Exception as e:   # psycopg.OperationalError: the server is down or the socket is elsewhere
        raise CdcError(f"PostgreSQL ({settings.services.postgres.database}) is not reachable as the administrator: "
                       f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}; "
                       "start it with `lakehouse stack up`") from None
    conn.autocommit = True
    return conn


def ensure_publication(settings: Settings) -> str:
    """Creates the publication, or brings an existing one back to its definition; returns what was done
    (`created`, `updated`, `unchanged`). Runs as the administrator (a schema-level publication needs a
    superuser, and the tables belong to the migration role)."""
    name = settings.cdc.publication
    schemas = sql.SQL(", ").join(sql.Identifier(s) for s in CAPTURED_SCHEMAS)
    with _admin(settings) as conn:
        missing = [s for s in CAPTURED_SCHEMAS if not conn.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", (s,)).fetchone()]
        if missing:
            raise CdcError(f"database {settings.services.postgres.database!r} has no schema {missing[0]!r}: "
                           "run `lakehouse oltp migrate` first")
        row = conn.execute("SELECT oid, puballtables, pubviaroot, pubinsert AND pubupdate AND pubdelete "
                           "AND pubtruncate FROM pg_publication WHERE pubname = %s", (name,)).fetchone()
        if row is None:
            conn.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLES IN SCHEMA {} "
                                 "WITH (publish_via_partition_root = true)").format(sql.Identifier(name), schemas))
            action = "created"
        else:
            oid, all_tables, via_root, all_ops = row
            if all_tables:
                raise CdcError(f"publication {name!r} is FOR ALL TABLES (it would publish the vault); drop it "
                               f"(`lakehouse cdc stop --drop-slot`) and start again")
            have = {r[0] for r in conn.execute("SELECT n.nspname FROM pg_publication_namespace pn JOIN pg_namespace n "
                                               "ON n.oid = pn.pnnspid WHERE pn.pnpubid = %s", (oid,))}
            tables = conn.execute("SELECT count(*) FROM pg_publication_rel WHERE prpubid = %s", (oid,)).fetchone()
            action = "unchanged"
            if have != set(CAPTURED_SCHEMAS) or (tables and tables[0]):
                conn.execute(sql.SQL("ALTER PUBLICATION {} SET TABLES IN SCHEMA {}").format(sql.Identifier(name),
                                                                                             schemas))
                action = "updated"
            if not via_root or not all_ops:
                conn.execute(sql.SQL("ALTER PUBLICATION {} SET (publish_via_partition_root = true, "
                                     "publish = 'insert, update, delete, truncate')").format(sql.Identifier(name)))
                action = "updated"
        leaked = conn.execute("SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = %s "
                              "AND schemaname <> ALL(%s)", (name, list(CAPTURED_SCHEMAS))).fetchall()
        if leaked:  # cannot happen with the definition above; checked because a vault table must never leak
            raise CdcError(f"publication {name!r} publishes {', '.join(r[0] for r in leaked)}, outside "
                           f"{', '.join(CAPTURED_SCHEMAS)}")
    return action


def drop_publication(settings: Settings) -> bool:
    with _admin(settings) as conn:
        if not conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (settings.cdc.publication,)).fetchone():
            return False
        conn.execute(sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(settings.cdc.publication)))
    return True


def preflight(settings: Settings) -> dict[str, Any]:
    """What the connector needs from PostgreSQL, checked before it is registered (each failure names the fix):
    logical decoding on, every migration applied, a REPLICATION role that can read every published table,
    no partition the connector would mistake for a table, partitions with their parent's replica identity."""
    from lakehouse.oltp.migrate import discover

    user = settings.services.postgres.user
    with _admin(settings) as conn:
        wal = conn.execute("SHOW wal_level").fetchone()
        if not wal or wal[0] != "logical":
            raise CdcError(f"wal_level is {wal[0] if wal else '?'}, logical decoding needs `logical`")
        applied = {r[0] for r in conn.execute("SELECT version FROM public.schema_migrations")}
        pending = [m.label for m in discover() if m.version not in applied]
        if pending:
            raise CdcError(f"migrations not applied yet ({', '.join(pending)}): run `lakehouse oltp migrate`")
        role = conn.execute("SELECT rolreplication, rolcanlogin FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
        if not role or not role[0] or not role[1]:
            raise CdcError(f"role {user!r} must exist with LOGIN REPLICATION (`lakehouse stack up` creates it)")
        # what FOR TABLES IN SCHEMA … WITH (publish_via_partition_root) publishes: every table but the partitions
        tables = [r[0] for r in conn.execute(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1",
            (list(CAPTURED_SCHEMAS),))]
        unreadable = [t for t in tables if not conn.execute(
            "SELECT has_table_privilege(%s, %s, 'SELECT')", (user, t)).fetchone()[0]]
        if unreadable:
            raise CdcError(f"role {user!r} cannot SELECT {', '.join(unreadable)} (the snapshot reads them); "
                           "`lakehouse oltp migrate` grants payments_app")
        parts = conn.execute(
            "SELECT n.nspname || '.' || c.relname, c.relreplident, p.relreplident FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p') ORDER BY 1",
            (list(CAPTURED_SCHEMAS),)).fetchall()
    unknown = [name for name, _, _ in parts if not is_partition_name(name)]
    if unknown:
        raise CdcError(f"partitions {', '.join(unknown)} are not covered by the connector's table.exclude.list "
                       f"({PARTITIONS_REGEX}); they would be snapshotted as tables of their own — extend "
                       "PARTITIONS_REGEX in lakehouse/cdc/connector.py")
    drift = [name for name, own, parent in parts if own != parent]
    if drift:
        raise CdcError(f"partitions {', '.join(drift)} do not have their parent's REPLICA IDENTITY (their updates "
                       "would lose the before-image); create partitions with payments.ensure_month_partitions()")
    return {"tables": tables, "partitions": len(parts)}


def topic_configs(settings: Settings) -> dict[str, str]:
    """Topic-level configs of the CDC topics (the same as the connector's topic.creation.default.*)."""
    return {"cleanup.policy": "delete", "retention.ms": str(settings.cdc.retention_hours * 3_600_000)}


def ensure_topics(settings: Settings, tables: list[str]) -> list[str]:
    """Creates the missing topic of each published table (partitions and retention from conf); returns the
    topics created. Connect would create a topic only at its table's first change: created up front, every
    table's topic exists from the start, and a consumer subscribing early cannot auto-create one with the
    broker's defaults instead."""
    from kafka import KafkaAdminClient

    from lakehouse.common.connections import kafka_bootstrap

    try:
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap(settings), client_id="lakehouse-cdc",
                                 request_timeout_ms=15000)
    except Exception as e:   # kafka.errors.NoBrokersAvailable and the like
        raise CdcError(f"Kafka at {kafka_bootstrap(settings)} is not reachable ({e or type(e).__name__}); "
                       "start it with `lakehouse stack up`") from None
    try:
        existing = set(admin.list_topics())
        missing = sorted(topic_name(settings, t) for t in tables if topic_name(settings, t) not in existing)
        if missing:
            admin.create_topics({t: {"num_partitions": settings.cdc.partitions, "replication_factor": 1,
                                     "configs": topic_configs(settings)} for t in missing},
                                wait_for_metadata=True)
    finally:
        admin.close()
    return missing


# --- Kafka Connect REST ----------------------------------------------------------------------------
def _rest(settings: Settings, method: str, path: str, body: Any = None, timeout_s: float = 30.0,
          retries: int = 10) -> tuple[int, Any]:
    """(HTTP status, parsed JSON body); retries while Connect answers 409 (a rebalance in progress)."""
    url = connect_url(settings) + path
    data = json.dumps(body).encode() if body is not None else None
    for attempt in range(retries + 1):
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                doc = json.loads(raw) if raw else None
            except ValueError:
                doc = {"message": raw.decode(errors="replace")}
            if e.code == 409 and attempt < retries:
                time.sleep(0.5 * (attempt + 1))
                continue
            return e.code, doc
        except (urllib.error.URLError, OSError) as e:
            raise CdcError(f"Kafka Connect at {connect_url(settings)} is not reachable "
                           f"({getattr(e, 'reason', e)}); start it with `lakehouse stack up`") from None
    raise AssertionError("unreachable")


def _message(doc: Any) -> str:
    return str(doc.get("message")) if isinstance(doc, dict) and doc.get("message") else json.dumps(doc)


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def validate(settings: Settings, config: dict[str, str]) -> None:
    """Connect's validation of the config (it also connects to PostgreSQL); raises naming each bad key."""
    code, doc = _rest(settings, "PUT", f"/connector-plugins/{DEBEZIUM_POSTGRES}/config/validate", config)
    if code != 200:
        raise CdcError(f"Kafka Connect could not validate the connector config: HTTP {code}: {_message(doc)}")
    errors = [f"{c['value']['name']}: {'; '.join(c['value']['errors'])}" for c in doc.get("configs", [])
              if c["value"].get("errors")]
    if errors:
        raise CdcError(f"connector {settings.cdc.connector!r} config is invalid:\n  " + "\n  ".join(errors))


def connector_state(settings: Settings) -> dict[str, Any] | None:
    """Connect's `/connectors/<name>/status`, or None when the connector is not registered."""
    code, doc = _rest(settings, "GET", f"/connectors/{_quote(settings.cdc.connector)}/status")
    if code == 404:
        return None
    if code != 200:
        raise CdcError(f"Kafka Connect: status of {settings.cdc.connector!r}: HTTP {code}: {_message(doc)}")
    return doc


def slot_state(settings: Settings) -> dict[str, Any] | None:
    """The slot's row of pg_replication_slots, with the WAL it retains; None when it does not exist."""
    from lakehouse.oltp.db import connect

    with connect(settings, autocommit=True) as conn:
        row = conn.execute(
            "SELECT slot_name, plugin, database, active, active_pid, restart_lsn::text, confirmed_flush_lsn::text,"
            " pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint,"
            " pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint, wal_status,"
            " pg_current_wal_lsn()::text FROM pg_replication_slots WHERE slot_name = %s",
            (settings.cdc.slot,)).fetchone()
    if row is None:
        return None
    keys = ("slot_name", "plugin", "database", "active", "active_pid", "restart_lsn", "confirmed_flush_lsn",
            "retained_wal_bytes", "unconfirmed_wal_bytes", "wal_status", "current_wal_lsn")
    return dict(zip(keys, row, strict=True))


def publication_state(settings: Settings) -> dict[str, Any] | None:
    from lakehouse.oltp.db import connect

    with connect(settings, autocommit=True) as conn:
        row = conn.execute("SELECT oid, pubviaroot FROM pg_publication WHERE pubname = %s",
                           (settings.cdc.publication,)).fetchone()
        if row is None:
            return None
        schemas = [r[0] for r in conn.execute("SELECT n.nspname FROM pg_publication_namespace pn JOIN pg_namespace n "
                                              "ON n.oid = pn.pnnspid WHERE pn.pnpubid = %s ORDER BY 1", (row[0],))]
        tables = conn.execute("SELECT count(*) FROM pg_publication_tables WHERE pubname = %s",
                              (settings.cdc.publication,)).fetchone()
    return {"publication": settings.cdc.publication, "schemas": schemas, "tables": tables[0] if tables else 0,
            "publish_via_partition_root": row[1]}


def _running(state: dict[str, Any] | None) -> bool:
    return bool(state and state["connector"]["state"] == "RUNNING" and state["tasks"]
                and all(t["state"] == "RUNNING" for t in state["tasks"]))


def status(settings: Settings) -> dict[str, Any]:
    """The connector's and its tasks' state, the slot and the publication; `running` is true when the
    connector and every task run. Never raises for a service that is down: it says so."""
    doc: dict[str, Any] = {"connector": settings.cdc.connector, "connect_url": connect_url(settings),
                           "topics": f"{settings.cdc.topic_prefix}.<schema>.<table>"}
    try:
        state = connector_state(settings)
    except CdcError as e:
        state, doc["state"], doc["error"] = None, "UNREACHABLE", str(e)
    else:
        doc["state"] = state["connector"]["state"] if state else "NOT_REGISTERED"
    doc["worker_id"] = state["connector"].get("worker_id") if state else None
    doc["version"] = state["connector"].get("version") if state else None
    doc["connector_trace"] = state["connector"].get("trace") if state else None
    doc["tasks"] = [{"id": t["id"], "state": t["state"], "worker_id": t.get("worker_id"), "trace": t.get("trace")}
                    for t in (state or {}).get("tasks", [])]
    doc["running"] = _running(state)
    try:
        doc["slot"] = slot_state(settings)
        doc["publication"] = publication_state(settings)
    except Exception as e:  # PostgreSQL down or not set up: report it, do not fail the status
        doc["slot"] = doc["publication"] = None
        doc["postgres_error"] = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return doc


def _failure(doc: dict[str, Any], trace_chars: int = 6000) -> str | None:
    """The failure of the connector or a task, with its trace (None when nothing failed)."""
    parts = []
    if doc.get("state") == "FAILED":
        parts.append(f"connector {doc['connector']} FAILED on {doc.get('worker_id')}:\n"
                     f"{(doc.get('connector_trace') or '(no trace)')[:trace_chars]}")
    for t in doc.get("tasks", []):
        if t["state"] == "FAILED":
            trace = (t.get("trace") or "(no trace)")[:trace_chars]
            parts.append(f"task {t['id']} FAILED on {t.get('worker_id')}:\n{trace}")
    return "\n".join(parts) if parts else None


def _bytes(n: int | None) -> str:
    if n is None:
        return "?"
    if abs(n) < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("kB", "MB", "GB"):
        value /= 1024
        if abs(value) < 1024 or unit == "GB":
            break
    return f"{value:.1f} {unit}"


def format_status(doc: dict[str, Any]) -> str:
    """The status for people."""
    version = f" (Debezium {doc['version']})" if doc.get("version") else ""
    lines = [f"connector {doc['connector']}: {doc['state']}{version} at {doc['connect_url']}"
             + (f" on {doc['worker_id']}" if doc.get("worker_id") else "")]
    if doc.get("error"):
        lines.append(f"  {doc['error']}")
    for t in doc["tasks"]:
        lines.append(f"  task {t['id']}: {t['state']}")
    failure = _failure(doc, trace_chars=1500)
    if failure:
        lines += ["  " + ln for ln in failure.splitlines()]
    slot = doc.get("slot")
    if doc.get("postgres_error"):
        lines.append(f"slot: PostgreSQL not reachable: {doc['postgres_error']}")
    elif slot is None:
        lines.append("slot: none (created by the connector when it first starts)")
    else:
        lines.append(f"slot {slot['slot_name']} ({slot['plugin']}, database {slot['database']}): "
                     f"{'active' if slot['active'] else 'INACTIVE'}, confirmed_flush_lsn {slot['confirmed_flush_lsn']}"
                     f" (current {slot['current_wal_lsn']}), retains {_bytes(slot['retained_wal_bytes'])} of WAL, "
                     f"{_bytes(slot['unconfirmed_wal_bytes'])} not yet confirmed")
        if not slot["active"]:
            lines.append("  the slot retains WAL while nothing consumes it: start the connector, or "
                         "`lakehouse cdc stop --drop-slot`")
    pub = doc.get("publication")
    if pub:
        lines.append(f"publication {pub['publication']}: {pub['tables']} tables in schemas {', '.join(pub['schemas'])}"
                     f"{' (through partition roots)' if pub['publish_via_partition_root'] else ''}")
    elif not doc.get("postgres_error"):
        lines.append("publication: none (`lakehouse cdc start` creates it)")
    lines.append(f"topics: {doc['topics']}")
    return "\n".join(lines)


# --- start / wait / stop ---------------------------------------------------------------------------
def primary_port(settings: Settings) -> int:
    """The port of the node that is the primary now (after a failover, the promoted one)."""
    return next(iter(pg_node_ports(settings).values()))


def start(settings: Settings, wait: bool = False, timeout_s: float | None = None,
          progress: Callable[[str], None] | None = _say) -> dict[str, Any]:
    """Creates (or checks) the publication, checks PostgreSQL, registers or updates the connector
    (idempotent: `PUT /connectors/<name>/config`), resumes it when paused or stopped and restarts what
    failed. With `wait`, returns once the connector and its task run and the slot streams."""
    say = progress or (lambda _m: None)
    name = settings.cdc.connector
    checks = preflight(settings)
    config = connector_config(settings, pg_password(settings), pg_port=primary_port(settings))
    action = ensure_publication(settings)
    say(f"cdc: publication {settings.cdc.publication} {action} (tables in schemas {', '.join(CAPTURED_SCHEMAS)})")
    published = publication_state(settings)
    if not published or published["tables"] != len(checks["tables"]):
        raise CdcError(f"publication {settings.cdc.publication!r} publishes {published and published['tables']} "
                       f"tables, expected {len(checks['tables'])}")
    validate(settings, config)
    created = ensure_topics(settings, checks["tables"])
    if created:
        say(f"cdc: created {len(created)} topic(s) ({settings.cdc.partitions} partitions, retention "
            f"{settings.cdc.retention_hours} h): {', '.join(created)}")
    before = connector_state(settings)
    code, doc = _rest(settings, "PUT", f"/connectors/{_quote(name)}/config", config)
    if code not in (200, 201):
        raise CdcError(f"Kafka Connect rejected connector {name!r}: HTTP {code}: {_message(doc)}")
    say(f"cdc: connector {name} {'registered' if code == 201 else 'updated'} at {connect_url(settings)}")
    if before and before["connector"]["state"] in ("PAUSED", "STOPPED"):
        _rest(settings, "PUT", f"/connectors/{_quote(name)}/resume")
        say(f"cdc: connector {name} resumed (it was {before['connector']['state']})")
    if before and _failure({"connector": name, "state": before["connector"]["state"],
                            "tasks": before.get("tasks", [])}):
        _rest(settings, "POST", f"/connectors/{_quote(name)}/restart?includeTasks=true&onlyFailed=true")
        say(f"cdc: restarted the failed parts of {name}")
    result: dict[str, Any] = {"connector": name, "created": code == 201, "publication": action,
                              "published_tables": len(checks["tables"]), "config": redacted(config)}
    if wait:
        result["status"] = wait_running(settings, timeout_s or settings.services.start_timeout_s)
    return result


def wait_running(settings: Settings, timeout_s: float) -> dict[str, Any]:
    """Waits until the connector and every task are RUNNING and the slot is active (the snapshot is done
    and changes stream); prints progress; raises with the task's trace as soon as something FAILED."""
    last: dict[str, Any] = {}

    def check() -> tuple[bool, str]:
        last.clear()
        last.update(status(settings))
        slot = last.get("slot")
        tasks = ", ".join(f"task {t['id']} {t['state']}" for t in last["tasks"]) or "no task yet"
        streaming = bool(slot and slot["active"])
        detail = f"connector {last['state']}, {tasks}, slot {'streaming' if streaming else 'not streaming yet'}"
        return last["running"] and streaming, detail

    def died() -> str | None:
        return _failure(last)

    try:
        wait_for(check, timeout_s, f"cdc connector {settings.cdc.connector}", died, interval_s=0.5)
    except CdcError:
        raise
    except ServiceError as e:
        hint = ("\nfix the cause, then `lakehouse cdc start` restarts what failed" if _failure(last) else "")
        raise CdcError(f"{e}{hint}") from None
    return dict(last)


def _wait_state(settings: Settings, want: str, timeout_s: float) -> None:
    def check() -> tuple[bool, str]:
        state = connector_state(settings)
        got = state["connector"]["state"] if state else "NOT_REGISTERED"
        tasks = state.get("tasks", []) if state else []
        return got == want and not tasks, f"{got}, {len(tasks)} task(s)"
    wait_for(check, timeout_s, f"cdc connector {settings.cdc.connector} {want}", interval_s=0.3)


def stop(settings: Settings, drop_slot: bool = False, timeout_s: float = 60.0,
         progress: Callable[[str], None] | None = _say) -> dict[str, Any]:
    """Deletes the connector. Its offsets (Connect) and its slot (PostgreSQL) stay, so a later `start`
    resumes where it stopped, but the slot retains WAL meanwhile. With `drop_slot`: also resets the
    connector's offsets, drops the slot and the publication, so a later `start` begins afresh with a
    new snapshot."""
    say = progress or (lambda _m: None)
    name = settings.cdc.connector
    report: dict[str, Any] = {"connector": name, "deleted": False, "offsets_reset": False, "slot_dropped": False,
                              "publication_dropped": False}
    state = connector_state(settings)
    if drop_slot:
        if state is None:
            # Offsets outlive a deleted connector; the offsets API needs one registered: register it stopped.
            code, doc = _rest(settings, "POST", "/connectors", {
                "name": name, "config": connector_config(settings, pg_password(settings), primary_port(settings)),
                "initial_state": "STOPPED"})
            if code not in (200, 201):
                raise CdcError(f"Kafka Connect: could not register {name!r} stopped to reset its offsets: "
                               f"HTTP {code}: {_message(doc)}")
        else:
            _rest(settings, "PUT", f"/connectors/{_quote(name)}/stop")
        _wait_state(settings, "STOPPED", timeout_s)
        code, doc = _rest(settings, "DELETE", f"/connectors/{_quote(name)}/offsets")
        if code != 200:
            raise CdcError(f"Kafka Connect: could not reset the offsets of {name!r}: HTTP {code}: {_message(doc)}")
        report["offsets_reset"] = True
        say(f"cdc: offsets of {name} reset")
    if state is not None or drop_slot:
        code, doc = _rest(settings, "DELETE", f"/connectors/{_quote(name)}")
        if code not in (200, 204, 404):
            raise CdcError(f"Kafka Connect: could not delete {name!r}: HTTP {code}: {_message(doc)}")
        report["deleted"] = state is not None
        if state is not None:
            say(f"cdc: connector {name} deleted")
    if not drop_slot:
        _wait_released(settings, timeout_s)
        slot = slot_state(settings)
        report["slot"] = slot
        if slot:
            say(f"cdc: slot {slot['slot_name']} kept (it retains {_bytes(slot['retained_wal_bytes'])} of WAL, growing "
                "until the connector runs again; `lakehouse cdc stop --drop-slot` drops it)")
        return report
    report["slot_dropped"] = drop_slot_when_released(settings, timeout_s)
    if report["slot_dropped"]:
        say(f"cdc: slot {settings.cdc.slot} dropped")
    report["publication_dropped"] = drop_publication(settings)
    if report["publication_dropped"]:
        say(f"cdc: publication {settings.cdc.publication} dropped")
    return report


def _wait_released(settings: Settings, timeout_s: float) -> None:
    """Waits until no process streams from the slot (a stopping task releases it within seconds)."""
    slot = settings.cdc.slot

    def released() -> tuple[bool, str]:
        state = slot_state(settings)
        if state is None or not state["active"]:
            return True, "released"
        return False, f"still streaming to pid {state['active_pid']}"

    try:
        wait_for(released, timeout_s, f"slot {slot} released", interval_s=0.3)
    except ServiceError as e:
        raise CdcError(f"{e}: another consumer uses slot {slot!r}? (pg_stat_replication names it)") from None


def drop_slot_when_released(settings: Settings, timeout_s: float) -> bool:
    """Drops the slot once no process streams from it; False when there is no such slot."""
    slot = settings.cdc.slot
    _wait_released(settings, timeout_s)
    with _admin(settings) as conn:
        row = conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                           "WHERE slot_name = %s AND NOT active", (slot,)).fetchone()
    return row is not None
