"""The local stack against its real services: health, idempotent up, a taken port."""

from __future__ import annotations

import json
import socket
import urllib.request

import psycopg
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from lakehouse.common.connections import connect_url, kafka_bootstrap, pg_conninfo
from lakehouse.stack import stack as stack_mod
from lakehouse.stack.services import DEBEZIUM_POSTGRES
from tests.integration.helpers import explain, lakehouse


def test_status_json_shows_four_healthy_services_on_configured_ports(stack, settings) -> None:
    res = lakehouse("stack", "status", "--json")
    assert res.returncode == 0, explain(res)
    doc = json.loads(res.stdout)
    by_name = {s["service"]: s for s in doc["services"]}
    assert sorted(by_name) == ["connect", "kafka", "postgres", "redis"]
    assert all(s["healthy"] for s in by_name.values()), doc
    assert by_name["postgres"]["port"] == settings.services.postgres.port
    assert by_name["kafka"]["ports"] == {"services.kafka.port": settings.services.kafka.port,
                                         "services.kafka.controller_port": settings.services.kafka.controller_port}
    assert by_name["connect"]["port"] == settings.services.connect.port
    assert by_name["redis"]["port"] == settings.services.redis.port
    assert by_name["postgres"]["connection"]["dsn"] == (
        f"postgresql://lakehouse@127.0.0.1:{settings.services.postgres.port}/payments")
    assert by_name["kafka"]["connection"]["bootstrap_servers"] == f"127.0.0.1:{settings.services.kafka.port}"


def test_second_up_changes_nothing(stack, settings) -> None:
    before = {s["service"]: s["pid"] for s in stack_mod.status(settings)}
    res = lakehouse("stack", "up")
    assert res.returncode == 0, explain(res)
    after = {s["service"]: s["pid"] for s in stack_mod.status(settings)}
    assert after == before
    assert res.stderr.count("already running") == 4


def test_postgres_is_logical_and_the_app_role_can_replicate(stack, settings) -> None:
    with psycopg.connect(**pg_conninfo(settings)) as conn:
        wal_level, = conn.execute("SHOW wal_level").fetchone()
        can_replicate, = conn.execute("SELECT rolreplication FROM pg_roles WHERE rolname = current_user").fetchone()
        conn.execute("CREATE TEMP TABLE t (amount_minor bigint)")
        conn.execute("INSERT INTO t VALUES (1050), (250)")
        total, = conn.execute("SELECT sum(amount_minor) FROM t").fetchone()
    assert (wal_level, can_replicate, total) == ("logical", True, 1300)


def test_kafka_round_trips_a_message(stack, settings) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap(settings), acks="all")
    meta = producer.send("it_roundtrip", key=b"k1", value=b'{"amount_minor": 1050}').get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap(settings), consumer_timeout_ms=10000)
    tp = TopicPartition("it_roundtrip", meta.partition)
    consumer.assign([tp])
    consumer.seek(tp, meta.offset)
    got = next(iter(consumer))
    consumer.close()
    assert (got.key, got.value) == (b"k1", b'{"amount_minor": 1050}')


def test_connect_lists_the_debezium_postgres_plugin(stack, settings) -> None:
    with urllib.request.urlopen(f"{connect_url(settings)}/connector-plugins", timeout=10) as resp:
        classes = {p["class"]: p for p in json.load(resp)}
    assert DEBEZIUM_POSTGRES in classes
    assert classes[DEBEZIUM_POSTGRES]["version"].startswith("3.")


def test_redis_answers(stack, settings) -> None:
    client = redis.Redis(host="127.0.0.1", port=settings.services.redis.port)
    client.set("it:key", "1050")
    assert client.get("it:key") == b"1050"


def test_up_fails_naming_a_taken_port(tmp_path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        state = tmp_path / "other-state"
        res = lakehouse("stack", "up", "--only", "redis",
                        env={"LAKEHOUSE__SERVICES__REDIS__PORT": str(port), "LAKEHOUSE__PATHS__STATE_DIR": str(state)})
    assert res.returncode == 1, explain(res)
    assert (f"port {port} (services.redis.port) for redis is already in use by another process" in res.stderr), \
        explain(res)
    assert "LAKEHOUSE__SERVICES__REDIS__PORT" in res.stderr
    assert not (state / "redis" / "redis.pid").exists()
