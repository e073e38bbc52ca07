"""The replica's pure parts: service list, roles record, multi-host connection settings, CLI verbs.
(The servers themselves are exercised in tests/integration/test_failover.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from lakehouse.cli import _status_table, build_parser
from lakehouse.common.config import Settings, load_settings
from lakehouse.common.connections import pg_conninfo, pg_jdbc_url, pg_node_ports, pg_replicated, pg_roles
from lakehouse.stack.replica import (
    PostgresNode,
    PostgresReplica,
    application_name,
    format_failover,
    with_replica,
    write_roles,
)
from lakehouse.stack.services import Postgres, all_services


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("LAKEHOUSE_PG_PASSWORD", "secret")
    return load_settings("test", environ={"LAKEHOUSE__PATHS__STATE_DIR": str(tmp_path),
                                          "LAKEHOUSE__SERVICES__POSTGRES__PORT": "25432",
                                          "LAKEHOUSE__SERVICES__REPLICA__PORT": "25433"})


def test_without_a_replica_postgres_is_the_single_server_and_clients_use_one_host(settings: Settings) -> None:
    assert not pg_replicated(settings)
    services = all_services(settings)
    assert [s.name for s in services] == ["postgres", "redis", "kafka", "connect"]
    assert type(services[0]) is Postgres
    assert pg_conninfo(settings) == {"host": "127.0.0.1", "port": 25432, "dbname": "payments", "user": "lakehouse",
                                     "password": "secret"}
    assert pg_jdbc_url(settings) == "jdbc:postgresql://127.0.0.1:25432/payments"


def test_with_a_replica_the_pair_starts_primary_first_and_clients_use_both_hosts(settings: Settings) -> None:
    settings = with_replica(settings)
    services = all_services(settings)
    assert [(s.name, type(s)) for s in services[:2]] == [("postgres", PostgresNode),
                                                         ("postgres-replica", PostgresReplica)]
    assert [s.ports() for s in services[:2]] == [{"services.postgres.port": 25432}, {"services.replica.port": 25433}]
    assert services[1].dir.name == "postgres-replica"  # under state_dir, or the postgres home when unreachable
    assert pg_conninfo(settings) == {"host": "127.0.0.1,127.0.0.1", "port": "25432,25433", "dbname": "payments",
                                     "user": "lakehouse", "password": "secret", "target_session_attrs": "read-write"}
    assert pg_jdbc_url(settings) == (
        "jdbc:postgresql://127.0.0.1:25432,127.0.0.1:25433/payments?targetServerType=primary")


def test_after_a_failover_the_record_reorders_nodes_and_hosts(settings: Settings) -> None:
    write_roles(settings, primary="postgres-replica", standby=None, fenced=["postgres"])
    assert pg_replicated(settings)  # created once: part of the stack even with services.replica.enabled false
    assert pg_node_ports(settings) == {"postgres-replica": 25433, "postgres": 25432}
    assert pg_conninfo(settings)["port"] == "25433,25432"
    nodes = all_services(settings)[:2]
    assert [(n.name, n.role()) for n in nodes if isinstance(n, PostgresNode)] == [
        ("postgres-replica", "primary"), ("postgres", "fenced")]
    health = nodes[1].health()
    assert (health.ok, health.detail) == (
        False, "fenced former primary; `lakehouse stack up` rebuilds it as the standby of postgres-replica")
    assert pg_roles(settings)["fenced"] == ["postgres"]


def test_the_primary_names_its_standby_for_synchronous_commit(settings: Settings) -> None:
    settings = with_replica(settings)
    primary, standby = PostgresNode(settings), PostgresReplica(settings)
    assert primary._config_extra() == {"synchronous_commit": "on", "synchronous_standby_names": "''"}
    write_roles(settings, standby="postgres-replica")
    assert primary._config_extra() == {"synchronous_commit": "on",
                                       "synchronous_standby_names": "'lakehouse_postgres_replica'"}
    assert standby._config_extra() == {"hot_standby_feedback": "on"}
    standby.read_only_gate = True
    assert standby._config_extra() == {"hot_standby_feedback": "on", "default_transaction_read_only": "on"}
    assert application_name("postgres-replica") == standby.app_name == "lakehouse_postgres_replica"


def test_cli_verbs_parse() -> None:
    parser = build_parser()
    args = parser.parse_args(["stack", "up", "--with-replica", "--only", "postgres"])
    assert (args.with_replica, args.only) == (True, ["postgres"])
    assert parser.parse_args(["stack", "up"]).with_replica is False
    args = parser.parse_args(["oltp", "failover", "--immediate", "--json"])
    assert (args.oltp_action, args.immediate, args.json) == ("failover", True, True)


def test_status_table_widens_for_the_replica_only() -> None:
    row = {"host": "127.0.0.1", "port": 1, "pid": None, "healthy": False, "detail": "not running"}
    assert _status_table([{**row, "service": "redis"}]).splitlines()[1].startswith("redis     127.0.0.1")
    lines = _status_table([{**row, "service": "redis"}, {**row, "service": "postgres-replica"}]).splitlines()
    assert [ln.index("127.0.0.1") for ln in lines[1:]] == [17, 17]


def test_failover_report_reads_well() -> None:
    text = format_failover({
        "from": "postgres", "to": "postgres-replica", "fence_mode": "fast", "fenced": "stopped (pg_ctl stop -m fast)",
        "fence_s": 0.12, "promote_s": 0.13, "timeline": 2, "old_timeline_end_lsn": "0/3016560",
        "cdc_slots": [{"slot_name": "debezium", "plugin": "pgoutput", "database": "payments",
                       "confirmed_flush_lsn": "0/3000060", "created_at_lsn": "0/30165C8",
                       "unconfirmed_wal_bytes": 91392}],
        "cdc_slots_known": True, "writable": "committed txid 727", "total_s": 0.29})
    lines = text.splitlines()
    assert lines[0] == "failover postgres -> postgres-replica (timeline 2) in 0.29s"
    assert lines[1] == "  fenced   postgres: stopped (pg_ctl stop -m fast) after 0.12s"
    assert "logical slot debezium (pgoutput, database payments) recreated on postgres-replica at 0/30165C8" in text
    assert "up to 91392 bytes of WAL" in text
    assert lines[-1].startswith("  standby  none: commits are acknowledged by postgres-replica alone")
