from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from lakehouse.cli import _json_default, build_parser, format_table, main


def test_format_table_is_exact() -> None:
    out = format_table(["id", "amount"], [[1, Decimal("10.50")], [22, None]])
    assert out.splitlines() == [
        "id | amount",
        "---+-------",
        "1  | 10.50 ",
        "22 | NULL  ",
        "(2 rows)",
    ]


def test_json_keeps_money_exact() -> None:
    doc = json.dumps({"a": Decimal("0.10"), "t": dt.datetime(2026, 1, 2, 3, 4, 5)}, default=_json_default)
    assert doc == '{"a": "0.10", "t": "2026-01-02T03:04:05"}'


def test_parser_knows_the_stable_verbs() -> None:
    parser = build_parser()
    assert parser.parse_args(["stack", "status", "--json"]).json is True
    assert parser.parse_args(["stack", "down", "--purge"]).purge is True
    assert parser.parse_args(["sql", "--json", "select 1"]).statement == "select 1"
    assert parser.parse_args(["run", "selfcheck", "--once"]).once is True


def test_bad_configuration_exits_2_naming_the_key(capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEHOUSE__SERVICES__REDIS__PORT", "not-a-port")
    assert main(["stack", "status"]) == 2
    assert "services.redis.port: expected an integer, got 'not-a-port'" in capsys.readouterr().err


def test_config_prints_the_resolved_settings(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEHOUSE__CDC__PARTITIONS", "5")
    assert main(["--env", "test", "--set", "spark.extra.spark.sql.x=1", "config"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["env"] == "test"
    assert doc["spark"]["extra"] == {"spark.sql.x": "1"}
    assert doc["cdc"]["partitions"] == 5
    assert doc["derived"]["lakehouse_dir"].endswith("/lakehouse")
