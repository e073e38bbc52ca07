"""The PostgreSQL hot standby and failover, on real servers: synchronous streaming replication, a
read-only standby, and no acknowledged transaction lost when the primary is fenced and the standby
promoted under concurrent writes; then the old primary rebuilt as the standby and a failback.

The pair runs on its own free ports in its own state dir (not the session `stack`), started through
the command line as users start it: `lakehouse stack up --only postgres --with-replica`.
The tests run in file order and share the pair: each step starts from the state the previous one left.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import psycopg.errors
import pytest

from lakehouse.common.config import Settings, load_settings
from lakehouse.common.connections import pg_conninfo, pg_password, pg_roles
from lakehouse.stack import stack as stack_mod
from lakehouse.stack.replica import PostgresNode, PostgresReplica
from tests.integration.helpers import explain, lakehouse

WRITERS = 4
CDC_SLOT = "failover_cdc_probe"


@dataclass
class Pair:
    env: dict[str, str]
    settings: Settings
    rounds: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ports(self) -> dict[str, int]:
        return {"postgres": self.settings.services.postgres.port,
                "postgres-replica": self.settings.services.replica.port}

    def node(self, name: str) -> PostgresNode:
        return PostgresReplica(self.settings) if name == "postgres-replica" else PostgresNode(self.settings)

    def connect(self, name: str, **kw: Any) -> psycopg.Connection[Any]:
        """The application role on one node (a single host, no failover logic)."""
        s = self.settings
        return psycopg.connect(host="127.0.0.1", port=self.ports[name], dbname=s.services.postgres.database,
                               user=s.services.postgres.user, password=pg_password(s), connect_timeout=5, **kw)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture(scope="module")
def pair(test_env: dict[str, str]):
    state = Path(tempfile.mkdtemp(prefix="lakehouse-failover-", dir="/tmp"))
    state.chmod(0o755)  # PostgreSQL runs as `postgres` when the tests run as root
    primary_port, replica_port = _free_ports(2)
    env = {"LAKEHOUSE__PATHS__STATE_DIR": str(state), "LAKEHOUSE__SERVICES__POSTGRES__PORT": str(primary_port),
           "LAKEHOUSE__SERVICES__REPLICA__PORT": str(replica_port)}
    settings = load_settings("test", environ={**os.environ, **env})
    try:
        res = lakehouse("stack", "up", "--only", "postgres", "--with-replica", env=env)
        assert res.returncode == 0, explain(res)
        yield Pair(env, settings)
    finally:
        stack_mod.down(settings, purge=True)
        shutil.rmtree(state, ignore_errors=True)


def _status(pair: Pair) -> dict[str, dict[str, Any]]:
    res = lakehouse("stack", "status", "--json", env=pair.env)
    return {s["service"]: s for s in json.loads(res.stdout)["services"]}


# --- writers through a failover ---------------------------------------------------------------
@dataclass
class Writer:
    number: int
    acked: dict[int, tuple[int, float]] = field(default_factory=dict)  # id -> (server port, monotonic time)
    attempted: set[int] = field(default_factory=set)
    errors: int = 0
    reconnects: int = 0


def _write(settings: Settings, w: Writer, stop: threading.Event, base: int) -> None:
    """Inserts rows with unique ids, one transaction each; an id is acknowledged once its COMMIT returned."""
    conn: psycopg.Connection[Any] | None = None
    seq = 0
    while not stop.is_set():
        try:
            if conn is None:
                conn = psycopg.connect(**pg_conninfo(settings), connect_timeout=3)  # type: ignore[arg-type]
                w.reconnects += 1
            seq += 1
            row_id = base + w.number * 10_000_000 + seq
            w.attempted.add(row_id)
            row = conn.execute("INSERT INTO failover_probe (id, writer, server_port) "
                               "VALUES (%s, %s, inet_server_port()) RETURNING server_port",
                               (row_id, w.number)).fetchone()
            conn.commit()
            assert row is not None
            w.acked[row_id] = (row[0], time.monotonic())
        except psycopg.Error:
            w.errors += 1
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.01)
    if conn is not None:
        conn.close()


def _run_through_failover(pair: Pair, *failover_args: str, base: int, partition_s: float = 0.0) -> dict[str, Any]:
    """WRITERS concurrent writers; a failover once they have written for a while; they reconnect and go on.

    `partition_s` > 0: first cut the standby off for that long (the primary's WAL sender is stopped with
    SIGSTOP, so nothing more reaches the standby) while the writers go on, then fail over. With
    synchronous commit no COMMIT can be acknowledged in that time; with asynchronous replication every
    row acknowledged then would exist only on the fenced primary, and be lost."""
    old = pg_roles(pair.settings)["primary"]
    new = pg_roles(pair.settings)["standby"]
    old_port, new_port = pair.ports[old], pair.ports[new]
    partitioned_at = float("inf")
    walsender: int | None = None
    stop = threading.Event()
    writers = [Writer(i) for i in range(WRITERS)]
    threads = [threading.Thread(target=_write, args=(pair.settings, w, stop, base), daemon=True) for w in writers]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 60
        while (min(len(w.acked) for w in writers) < 100 and time.monotonic() < deadline):
            time.sleep(0.05)
        before = sum(len(w.acked) for w in writers)
        assert before >= WRITERS * 100, f"the writers acknowledged only {before} rows before the failover"
        if partition_s:
            with pair.node(old).superuser_conn() as conn:
                row = conn.execute("SELECT pid FROM pg_stat_replication WHERE application_name = %s",
                                   (pair.node(new).app_name,)).fetchone()
            assert row is not None
            walsender = int(row[0])
            os.kill(walsender, signal.SIGSTOP)
            partitioned_at = time.monotonic()
            time.sleep(partition_s)
        res = lakehouse("oltp", "failover", "--json", *failover_args, env=pair.env)
        assert res.returncode == 0, explain(res)
        report = json.loads(res.stdout)
        # Every writer must land on the new primary by itself (multi-host conninfo) and go on writing.
        deadline = time.monotonic() + 60
        while (min(sum(1 for p, _ in w.acked.values() if p == new_port) for w in writers) < 100
               and time.monotonic() < deadline):
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        if walsender is not None:  # normally gone with the fenced primary
            with contextlib.suppress(ProcessLookupError):
                os.kill(walsender, signal.SIGCONT)
    acked = {i: port for w in writers for i, (port, _) in w.acked.items()}
    attempted = set().union(*(w.attempted for w in writers))
    with pair.connect(new) as conn:
        present = {r[0] for r in conn.execute("SELECT id FROM failover_probe WHERE id >= %s AND id < %s",
                                              (base, base + 100_000_000)).fetchall()}
    gaps = []
    for w in writers:
        last_old = max(t for p, t in w.acked.values() if p == old_port)
        first_new = min(t for p, t in w.acked.values() if p == new_port)
        gaps.append(first_new - last_old)
    result = {
        "from": old, "to": new, "fence": report["fence_mode"], "writers": WRITERS,
        "acknowledged": len(acked), "acknowledged_before": sum(1 for p in acked.values() if p == old_port),
        "acknowledged_after": sum(1 for p in acked.values() if p == new_port),
        "acknowledged_during_partition": sum(1 for w in writers for p, t in w.acked.values()
                                             if p == old_port and t > partitioned_at),
        "present": len(present), "missing_acknowledged": sorted(set(acked) - present)[:20],
        "in_doubt": len(attempted - set(acked)), "in_doubt_present": len((attempted - set(acked)) & present),
        "unexpected": sorted(present - attempted)[:20], "errors_seen": sum(w.errors for w in writers),
        "failover_s": report["total_s"], "fence_s": report["fence_s"], "promote_s": report["promote_s"],
        "max_write_gap_s": round(max(gaps), 3), "report": report, "acked": acked, "old_port": old_port,
        "new_port": new_port,
    }
    print(f"\nfailover {old} -> {new} ({result['fence']}): " + ", ".join(
        f"{k}={result[k]}" for k in ("writers", "acknowledged", "acknowledged_before", "acknowledged_after",
                                     "acknowledged_during_partition", "present", "in_doubt", "in_doubt_present",
                                     "errors_seen", "failover_s", "fence_s", "promote_s", "max_write_gap_s")))
    return result


# --- the tests -------------------------------------------------------------------------------
def test_stack_up_with_replica_runs_a_synchronous_hot_standby(pair: Pair) -> None:
    by_name = _status(pair)
    assert [n for n in by_name if n.startswith("postgres")] == ["postgres", "postgres-replica"]
    primary, replica = by_name["postgres"], by_name["postgres-replica"]
    assert (primary["role"], primary["healthy"], primary["port"]) == ("primary", True, pair.ports["postgres"])
    assert (replica["role"], replica["healthy"], replica["port"]) == ("standby", True, pair.ports["postgres-replica"])
    assert replica["data_dir"] == str(pair.settings.state_dir / "postgres-replica")
    assert "sync_state=sync" in replica["detail"]
    with pair.node("postgres").superuser_conn() as conn:
        rows = conn.execute("SELECT application_name, state, sync_state, usename FROM pg_stat_replication").fetchall()
        settings = conn.execute("SELECT current_setting('synchronous_standby_names'), "
                                "current_setting('synchronous_commit')").fetchone()
        slots = conn.execute("SELECT slot_name, slot_type, active FROM pg_replication_slots").fetchall()
    assert rows == [("lakehouse_postgres_replica", "streaming", "sync", "lakehouse")]
    assert settings == ("lakehouse_postgres_replica", "on")
    assert slots == [("lakehouse_postgres_replica", "physical", True)]
    with pair.connect("postgres-replica") as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
    info = pg_conninfo(pair.settings)
    assert (info["host"], info["port"], info["target_session_attrs"]) == (
        "127.0.0.1,127.0.0.1", f"{pair.ports['postgres']},{pair.ports['postgres-replica']}", "read-write")


def test_the_standby_is_read_only_and_streams_commits(pair: Pair) -> None:
    with psycopg.connect(**pg_conninfo(pair.settings)) as conn:  # type: ignore[arg-type]
        conn.execute("CREATE TABLE failover_probe (id bigint PRIMARY KEY, writer int NOT NULL, "
                     "server_port int NOT NULL, committed_at timestamptz NOT NULL DEFAULT clock_timestamp())")
        conn.execute("INSERT INTO failover_probe (id, writer, server_port) VALUES (1, -1, inet_server_port())")
    with pair.connect("postgres-replica") as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO failover_probe (id, writer, server_port) VALUES (2, -1, 0)")
        conn.rollback()
        conn.autocommit = True
        deadline = time.monotonic() + 10  # flushed on the standby at COMMIT; visible once replayed
        while conn.execute("SELECT count(*) FROM failover_probe WHERE id = 1").fetchone() != (1,):
            assert time.monotonic() < deadline, "the committed row never became visible on the standby"
            time.sleep(0.05)
    with pytest.raises(psycopg.OperationalError):  # a read-write session never lands on the standby
        psycopg.connect(host="127.0.0.1", port=pair.ports["postgres-replica"], dbname="payments", user="lakehouse",
                        password=pg_password(pair.settings), target_session_attrs="read-write", connect_timeout=5)


def test_no_acknowledged_transaction_is_lost_when_a_partitioned_primary_is_failed_over(pair: Pair) -> None:
    with pair.node("postgres").superuser_conn("payments") as conn:  # a CDC consumer's logical slot
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (CDC_SLOT,))
    result = _run_through_failover(pair, "--immediate", base=1_000_000_000, partition_s=1.0)
    pair.rounds.append(result)
    assert (result["from"], result["to"], result["fence"]) == ("postgres", "postgres-replica", "immediate")
    assert result["missing_acknowledged"] == [], {k: v for k, v in result.items() if k != "acked"}
    assert result["unexpected"] == [], result["unexpected"]
    assert result["present"] == result["acknowledged"] + result["in_doubt_present"]
    assert result["acknowledged_before"] >= WRITERS * 100 and result["acknowledged_after"] >= WRITERS * 100
    # Synchronous commit: once the standby stopped confirming, at most the commits it had already
    # confirmed (one per writer) were acknowledged; every other writer waited in COMMIT.
    assert result["acknowledged_during_partition"] <= WRITERS


def test_the_cdc_slot_resumes_on_the_new_primary_without_a_gap(pair: Pair) -> None:
    result = pair.rounds[-1]
    slots = result["report"]["cdc_slots"]
    assert [(s["slot_name"], s["plugin"], s["database"]) for s in slots] == [(CDC_SLOT, "test_decoding", "payments")]
    with pair.node("postgres-replica").superuser_conn("payments") as conn:
        decoded = [r[0] for r in conn.execute("SELECT data FROM pg_logical_slot_peek_changes(%s, NULL, NULL)",
                                              (CDC_SLOT,)).fetchall()]
        # the slot was created after the end of the old timeline, i.e. on the new one
        assert conn.execute("SELECT %s::pg_lsn <= %s::pg_lsn", (result["report"]["old_timeline_end_lsn"],
                                                                 slots[0]["created_at_lsn"])).fetchone() == (True,)
    insert = re.compile(r"table public\.failover_probe: INSERT: id\[bigint\]:(\d+)")
    ids = {int(m.group(1)) for d in decoded if (m := insert.match(d))}
    acked_new = {i for i, port in result["acked"].items() if port == result["new_port"]}
    acked_old = {i for i, port in result["acked"].items() if port == result["old_port"]}
    assert acked_new <= ids, f"{len(acked_new - ids)} acknowledged writes on the new primary were not decoded"
    assert not ids & acked_old  # the old timeline's changes are not in the recreated slot: see the docs


def test_after_failover_the_promoted_node_accepts_writes_and_the_old_primary_is_fenced(pair: Pair) -> None:
    with pair.connect("postgres-replica") as conn:
        conn.execute("INSERT INTO failover_probe (id, writer, server_port) VALUES (2, -1, inet_server_port())")
        conn.commit()
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
    with pytest.raises(psycopg.OperationalError):
        pair.connect("postgres")
    roles = pg_roles(pair.settings)
    assert (roles["primary"], roles["standby"], roles["fenced"]) == ("postgres-replica", None, ["postgres"])
    assert roles["failovers"][-1]["timeline"] == 2
    by_name = _status(pair)
    assert (by_name["postgres-replica"]["role"], by_name["postgres-replica"]["healthy"]) == ("primary", True)
    assert (by_name["postgres"]["role"], by_name["postgres"]["healthy"], by_name["postgres"]["pid"]) == (
        "fenced", False, None)
    assert pg_conninfo(pair.settings)["port"] == f"{pair.ports['postgres-replica']},{pair.ports['postgres']}"


def test_stack_up_rebuilds_the_old_primary_as_standby_and_a_failback_loses_nothing(pair: Pair) -> None:
    res = lakehouse("stack", "up", "--only", "postgres", env=pair.env)
    assert res.returncode == 0, explain(res)
    assert "rebuilding it as the standby of postgres-replica" in res.stderr
    by_name = _status(pair)
    assert (by_name["postgres"]["role"], by_name["postgres"]["healthy"]) == ("standby", True)
    assert "standby of postgres-replica" in by_name["postgres"]["detail"]
    assert "sync_state=sync" in by_name["postgres"]["detail"]

    result = _run_through_failover(pair, base=2_000_000_000)  # a fast (clean) switchover back
    pair.rounds.append(result)
    assert (result["from"], result["to"], result["fence"]) == ("postgres-replica", "postgres", "fast")
    assert result["missing_acknowledged"] == [], {k: v for k, v in result.items() if k != "acked"}
    assert result["unexpected"] == [], result["unexpected"]
    assert result["present"] == result["acknowledged"] + result["in_doubt_present"]
    with pair.connect("postgres") as conn:  # the first round's acknowledged rows survived both failovers
        present = {r[0] for r in conn.execute("SELECT id FROM failover_probe").fetchall()}
    assert set(pair.rounds[0]["acked"]) <= present
    assert pg_roles(pair.settings)["primary"] == "postgres"
