"""The Debezium connector's configuration: a pure function of the settings and the password."""

from __future__ import annotations

import pytest

from lakehouse.cdc.connector import (
    HEARTBEAT_QUERY,
    connector_config,
    is_partition_name,
    redacted,
    topic_name,
)
from lakehouse.common.config import load_settings


def test_the_exact_connector_config_from_the_test_settings() -> None:
    settings = load_settings("test", environ={})
    assert connector_config(settings, "s3cret") == {
        "name": "payments-postgres",
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "tasks.max": "1",
        "database.hostname": "127.0.0.1",
        "database.port": "15432",
        "database.user": "lakehouse",
        "database.password": "s3cret",
        "database.dbname": "payments",
        "plugin.name": "pgoutput",
        "slot.name": "lakehouse_cdc",
        "slot.drop.on.stop": "false",
        "publication.name": "lakehouse_cdc",
        "publication.autocreate.mode": "disabled",
        "schema.include.list": "ref,payments,labels",
        "table.exclude.list": r"payments\.(charges|balance_transactions)_(\d{4}_\d{2}|default)",
        "snapshot.mode": "initial",
        "skipped.operations": "none",
        "tombstones.on.delete": "true",
        "decimal.handling.mode": "string",
        "time.precision.mode": "microseconds",
        "interval.handling.mode": "string",
        "heartbeat.interval.ms": "5000",
        "heartbeat.action.query": "SELECT pg_logical_emit_message(false, 'lakehouse_cdc_heartbeat', '')",
        "message.prefix.exclude.list": "lakehouse_cdc_heartbeat",
        "topic.prefix": "cdc",
        "topic.creation.default.partitions": "3",
        "topic.creation.default.replication.factor": "1",
        "topic.creation.default.cleanup.policy": "delete",
        "topic.creation.default.retention.ms": "604800000",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "false",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
    }


def test_the_config_follows_the_settings() -> None:
    settings = load_settings("test", environ={
        "LAKEHOUSE__CDC__CONNECTOR": "c2", "LAKEHOUSE__CDC__TOPIC_PREFIX": "t2", "LAKEHOUSE__CDC__SLOT": "s2",
        "LAKEHOUSE__CDC__PUBLICATION": "p2", "LAKEHOUSE__CDC__SNAPSHOT_MODE": "when_needed",
        "LAKEHOUSE__CDC__HEARTBEAT_MS": "250", "LAKEHOUSE__CDC__PARTITIONS": "7",
        "LAKEHOUSE__CDC__RETENTION_HOURS": "2",
        "LAKEHOUSE__SERVICES__POSTGRES__DATABASE": "other", "LAKEHOUSE__SERVICES__POSTGRES__USER": "app"})
    config = connector_config(settings, "pw", pg_port=25433)   # the current primary, e.g. after a failover
    picked = {k: config[k] for k in ("name", "topic.prefix", "slot.name", "publication.name", "snapshot.mode",
                                     "heartbeat.interval.ms", "topic.creation.default.partitions",
                                     "topic.creation.default.retention.ms", "database.dbname", "database.user",
                                     "database.port")}
    assert picked == {"name": "c2", "topic.prefix": "t2", "slot.name": "s2", "publication.name": "p2",
                      "snapshot.mode": "when_needed", "heartbeat.interval.ms": "250",
                      "topic.creation.default.partitions": "7", "topic.creation.default.retention.ms": "7200000",
                      "database.dbname": "other", "database.user": "app", "database.port": "25433"}
    assert all(isinstance(v, str) for v in config.values())


def test_debezium_3_has_no_snapshot_mode_never() -> None:
    settings = load_settings("test", environ={"LAKEHOUSE__CDC__SNAPSHOT_MODE": "never"})
    assert connector_config(settings, "pw")["snapshot.mode"] == "no_data"


def test_the_password_is_redacted_for_printing() -> None:
    config = redacted(connector_config(load_settings("test", environ={}), "s3cret"))
    assert config["database.password"] == "********"
    assert "s3cret" not in repr(config)


def test_the_heartbeat_is_a_logical_message_the_connector_drops() -> None:
    config = connector_config(load_settings("test", environ={}), "pw")
    assert config["heartbeat.action.query"] == HEARTBEAT_QUERY
    assert f"'{config['message.prefix.exclude.list']}'" in HEARTBEAT_QUERY


@pytest.mark.parametrize(("table", "partition"), [
    ("payments.charges_2026_11", True), ("payments.charges_default", True),
    ("payments.balance_transactions_1999_01", True), ("payments.balance_transactions_default", True),
    ("payments.charges", False), ("payments.balance_transactions", False), ("payments.refunds", False),
    ("payments.charges_2026_1", False), ("ref.charges_2026_11", False), ("payments.charges_2026_11x", False),
])
def test_only_partitions_are_excluded(table: str, partition: bool) -> None:
    assert is_partition_name(table) is partition


def test_one_topic_per_table() -> None:
    settings = load_settings("test", environ={})
    assert topic_name(settings, "payments.charges") == "cdc.payments.charges"
    assert topic_name(settings, "labels.fraud_ground_truth") == "cdc.labels.fraud_ground_truth"


def test_the_cli_knows_the_cdc_verbs() -> None:
    from lakehouse.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["cdc", "start", "--wait"]).wait is True
    assert parser.parse_args(["cdc", "status", "--json"]).json is True
    assert parser.parse_args(["cdc", "stop", "--drop-slot"]).drop_slot is True
    assert parser.parse_args(["cdc", "stop"]).drop_slot is False
